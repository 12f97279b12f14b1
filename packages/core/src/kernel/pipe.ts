/**
 * Pipes in ckpt's own process: pipe2, tee (duplicate a pipe's buffered
 * data without consuming it) and the pipe-size fcntls. Used to read the
 * data buffered in a checkpointed pipe while leaving it in place.
 */
import { errno, libc, sysError } from './libc.js';

/** fcntl commands for a pipe's capacity. */
export const F_SETPIPE_SZ = 1031;
export const F_GETPIPE_SZ = 1032;
/** tee/splice flag: do not block. */
export const SPLICE_F_NONBLOCK = 2;

/** A new pipe of this process: [read end, write end]. */
export function pipe2(flags = 0): [number, number] {
  const fds = [0, 0];
  if (libc().pipe2(fds, flags) === -1) throw sysError('pipe2', errno(), 'creating a pipe');
  return [fds[0]!, fds[1]!];
}

/**
 * Duplicate up to `len` bytes buffered in pipe `fdIn` (a read end) into
 * pipe `fdOut` (a write end) without consuming them (tee(2)). Returns the
 * byte count; 0 when the pipe is empty.
 */
export function tee(fdIn: number, fdOut: number, len: number, flags = SPLICE_F_NONBLOCK): number {
  const n = Number(libc().tee(fdIn, fdOut, len, flags));
  if (n === -1) {
    const err = errno();
    if (err === 11) return 0; // EAGAIN: nothing buffered
    throw sysError('tee', err, `duplicating the data of pipe fd ${fdIn}`);
  }
  return n;
}

/** fcntl(fd, cmd, arg) with an integer argument. */
export function fcntl(fd: number, cmd: number, arg = 0): number {
  const r = libc().fcntl(fd, cmd, arg);
  if (r === -1) throw sysError('fcntl', errno(), `fcntl(${fd}, ${cmd}, ${arg})`);
  return r;
}
