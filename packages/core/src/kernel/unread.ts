/** How much a task's fd has waiting to be read, asked without reading it. */
import { closeSync } from 'node:fs';
import { grabFd } from './pidfd.js';
import { readableBytes } from './tty.js';

/**
 * Bytes waiting to be read on fd `fd` of `pid` (FIONREAD on a copy of it:
 * pipes, sockets, inotify instances…), or undefined when it cannot tell.
 */
export function unreadBytes(pid: number, fd: number): number | undefined {
  let mine: number;
  try {
    mine = grabFd(pid, fd);
  } catch {
    return undefined;
  }
  try {
    return readableBytes(mine);
  } catch {
    return undefined;
  } finally {
    closeSync(mine);
  }
}
