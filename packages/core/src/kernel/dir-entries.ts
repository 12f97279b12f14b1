/**
 * A directory's entries read without changing its access time: Node's
 * readdir opens the directory plainly, and reading it then updates the
 * atime (relatime does when the atime is not newer than the mtime), which a
 * checkpoint that leaves the tree running must not do.
 */
import { closeSync, constants, openSync } from 'node:fs';
import { errno, libc, sysError } from './libc.js';

const O_DIRECTORY = 0o200000;

/**
 * The names in directory `path` (not "." and ".."), read through a file
 * opened with O_NOATIME (the caller owns the directory or is root).
 * @throws CkptError naming the path
 */
export function readDirQuietly(path: string): string[] {
  const fd = openSync(path, constants.O_RDONLY | O_DIRECTORY | constants.O_NOATIME);
  try {
    const names: string[] = [];
    const buf = Buffer.alloc(64 << 10);
    for (;;) {
      const n = Number(libc().getdents64(fd, buf, buf.length));
      if (n < 0) throw sysError('getdents64', errno(), `reading directory ${path}`, { fd });
      if (n === 0) return names;
      // struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
      for (let at = 0; at < n; ) {
        const reclen = buf.readUInt16LE(at + 16);
        const nameEnd = buf.indexOf(0, at + 19);
        const name = buf.toString(
          'utf8',
          at + 19,
          nameEnd < 0 || nameEnd > at + reclen ? at + reclen : nameEnd,
        );
        if (name !== '.' && name !== '..') names.push(name);
        at += reclen;
      }
    }
  } finally {
    closeSync(fd);
  }
}
