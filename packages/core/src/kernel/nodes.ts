/** Special files: FIFOs and device nodes (mknod(2)), which Node cannot make. */
import { errno, libc, sysError } from './libc.js';

/**
 * Make the special file `path` with `mode` (its type bits, S_IFIFO,
 * S_IFCHR or S_IFBLK, and its permissions, less the umask) and, for a
 * device, the device number `rdev` (as stat's st_rdev encodes it).
 * @throws CkptError naming the path
 */
export function makeNode(path: string, mode: number, rdev = 0n): void {
  if (libc().mknod(path, mode, rdev) !== 0) {
    throw sysError('mknod', errno(), `making ${path} (mode 0${mode.toString(8)})`);
  }
}
