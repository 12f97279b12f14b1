/** How much a task's fd has waiting to be read, asked without reading it. */
import { withFdCopy } from './pidfd.js';
import { readableBytes } from './tty.js';

/**
 * Bytes waiting to be read on fd `fd` of `pid` (FIONREAD on a copy of it:
 * pipes, sockets, inotify instances…), or undefined when it cannot tell.
 */
export function unreadBytes(pid: number, fd: number): number | undefined {
  try {
    return withFdCopy(pid, fd, readableBytes);
  } catch {
    return undefined;
  }
}
