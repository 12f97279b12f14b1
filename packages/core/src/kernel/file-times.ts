/**
 * A file's times to the nanosecond (utimensat(2)): Node's utimes take
 * seconds as a double, which loses the nanoseconds a restored file must
 * match (@ckpt/mm compares a mapped file's mtime with the saved one).
 */
import { errno, libc, sysError } from './libc.js';

const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;

/**
 * Set the access and modification times of `path` (of a symbolic link
 * itself, not what it points to), in nanoseconds since the epoch.
 * @throws CkptError naming the path
 */
export function setFileTimes(path: string, atimeNs: bigint, mtimeNs: bigint): void {
  const times = Buffer.alloc(32);
  times.writeBigInt64LE(atimeNs / 1_000_000_000n, 0);
  times.writeBigInt64LE(atimeNs % 1_000_000_000n, 8);
  times.writeBigInt64LE(mtimeNs / 1_000_000_000n, 16);
  times.writeBigInt64LE(mtimeNs % 1_000_000_000n, 24);
  if (libc().utimensat(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW) !== 0) {
    throw sysError('utimensat', errno(), `setting the times of ${path}`);
  }
}
