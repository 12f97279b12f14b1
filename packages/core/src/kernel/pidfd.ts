/**
 * pidfds: stable handles on processes, and a way to duplicate another
 * process's file descriptor into ours (pidfd_getfd needs ptrace access).
 */
import { closeSync } from 'node:fs';
import { errno, libc, sysError } from './libc.js';

/** Open a pidfd for `pid` (pidfd_open). Close it with `closeSync`. */
export function pidfdOpen(pid: number): number {
  const fd = libc().pidfdOpen(pid, 0);
  if (fd === -1) throw sysError('pidfd_open', errno(), `opening a pidfd for pid ${pid}`, { pid });
  return fd;
}

/**
 * Duplicate file descriptor `targetFd` of the process behind `pidfd` into
 * this process (pidfd_getfd). The new fd is close-on-exec.
 */
export function pidfdGetfd(pidfd: number, targetFd: number, pid?: number): number {
  const fd = libc().pidfdGetfd(pidfd, targetFd, 0);
  if (fd === -1) {
    const who = pid === undefined ? `the process of pidfd ${pidfd}` : `pid ${pid}`;
    throw sysError('pidfd_getfd', errno(), `copying fd ${targetFd} of ${who}`, {
      fd: targetFd,
      ...(pid === undefined ? {} : { pid }),
    });
  }
  return fd;
}

/**
 * Run `fn` on a copy of fd `targetFd` of `pid` (see {@link grabFd}), closed
 * after: for asking a task's file something (ioctl, getsockopt, fcntl)
 * without running anything in the task.
 */
export function withFdCopy<T>(pid: number, targetFd: number, fn: (fd: number) => T): T {
  const mine = grabFd(pid, targetFd);
  try {
    return fn(mine);
  } finally {
    closeSync(mine);
  }
}

/** Copy fd `targetFd` of `pid` into this process (pidfd_open + pidfd_getfd). */
export function grabFd(pid: number, targetFd: number): number {
  const pidfd = pidfdOpen(pid);
  try {
    return pidfdGetfd(pidfd, targetFd, pid);
  } finally {
    closeSync(pidfd);
  }
}
