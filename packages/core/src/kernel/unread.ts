/** How much a task's fd has waiting to be read, asked without reading it. */
import { closeSync } from 'node:fs';
import { libc } from './libc.js';
import { grabFd } from './pidfd.js';

const FIONREAD = 0x541b;

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
    const n = Buffer.alloc(4);
    return libc().ioctlBuf(mine, FIONREAD, n) === 0 ? n.readInt32LE(0) : undefined;
  } finally {
    closeSync(mine);
  }
}
