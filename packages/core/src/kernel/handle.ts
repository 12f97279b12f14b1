/**
 * Reaching a file by its handle (name_to_handle_at's opaque id, which
 * fdinfo prints for inotify and fanotify marks): the path it has now.
 */
import { closeSync, openSync, readFileSync, readlinkSync } from 'node:fs';
import { CkptError } from '../errors.js';
import { unescapeMountinfo } from '../proc/mountinfo.js';
import { errno, libc, sysError } from './libc.js';

const O_PATH = 0o10000000;

/**
 * The path (as ckpt sees it) of the file of `pid`'s filesystem `major`:`minor`
 * whose handle is `handle` (`type`, bytes): opened by handle through one of
 * the task's mounts of that filesystem (root only: CAP_DAC_READ_SEARCH).
 * Undefined when the file has no name any more.
 * @throws CkptError naming the device when no mount of it is visible to the task
 */
export function pathOfHandle(
  pid: number,
  dev: { major: number; minor: number },
  type: number,
  handle: Buffer,
): string | undefined {
  const devName = `${dev.major}:${dev.minor}`;
  const mount = readFileSync(`/proc/${pid}/mountinfo`, 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .find((f) => f[2] === devName);
  if (!mount) {
    throw new CkptError(
      'ENOENT',
      `pid ${pid}: no mount of device ${devName} is visible to it, to find a watched file on`,
      { pid },
    );
  }
  // Not O_PATH: open_by_handle_at does not take one as its mount fd.
  const mountFd = openSync(`/proc/${pid}/root${unescapeMountinfo(mount[4]!)}`, 'r');
  try {
    const fh = Buffer.alloc(8 + handle.length);
    fh.writeUInt32LE(handle.length, 0);
    fh.writeInt32LE(type, 4);
    handle.copy(fh, 8);
    const fd = libc().openByHandleAt(mountFd, fh, O_PATH);
    if (fd < 0) {
      throw sysError('open_by_handle_at', errno(), `pid ${pid}: opening a watched file by handle`, {
        pid,
      });
    }
    try {
      const path = readlinkSync(`/proc/self/fd/${fd}`);
      return path.endsWith(' (deleted)') ? undefined : path;
    } finally {
      closeSync(fd);
    }
  } finally {
    closeSync(mountFd);
  }
}

const EINVAL = 22;
const ESTALE = 116;

/**
 * Whether this process may open files by handle here: a handle that names
 * no file must be refused as stale or invalid, not for lack of privilege
 * (EPERM: CAP_DAC_READ_SEARCH) or support.
 * @throws CkptError naming the errno otherwise
 */
export function probeOpenByHandle(): void {
  const mountFd = openSync('/', 'r');
  try {
    const fh = Buffer.alloc(16);
    fh.writeUInt32LE(8, 0); // handle_bytes
    fh.writeInt32LE(1, 4); // handle_type: FILEID_INO32_GEN
    const fd = libc().openByHandleAt(mountFd, fh, O_PATH);
    if (fd >= 0) {
      closeSync(fd);
      return;
    }
    const e = errno();
    if (e !== ESTALE && e !== EINVAL) {
      throw sysError('open_by_handle_at', e, 'opening a file by handle');
    }
  } finally {
    closeSync(mountFd);
  }
}
