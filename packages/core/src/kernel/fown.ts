/**
 * The owner of an open file description (fcntl F_GETOWN_EX, F_GETSIG):
 * who gets SIGIO/SIGURG for it, and which signal. Read through ckpt's own
 * copy of the fd (see `withFdCopy`): the owner belongs to the open file
 * description, not the fd.
 */
import { errno, libc, sysError } from './libc.js';

const F_GETSIG = 11;
const F_GETOWN_EX = 16;

/** `type` of a `struct f_owner_ex`. */
export const F_OWNER_TID = 0;
export const F_OWNER_PID = 1;
export const F_OWNER_PGRP = 2;

/** An open file's owner and signal; pid 0 and sig 0 when unset. */
export interface FileOwner {
  /** F_OWNER_TID, F_OWNER_PID or F_OWNER_PGRP. */
  type: number;
  /** The thread, process or process group, as ckpt's pid namespace numbers it. */
  pid: number;
  /** F_SETSIG's signal (0: SIGIO). */
  sig: number;
}

/** The owner and signal of the open file behind fd `fd` of this process. */
export function fileOwner(fd: number): FileOwner {
  const ex = Buffer.alloc(8);
  if (libc().fcntlBuf(fd, F_GETOWN_EX, ex) === -1) {
    throw sysError('fcntl', errno(), `reading the owner of fd ${fd} (F_GETOWN_EX)`);
  }
  const sig = libc().fcntl(fd, F_GETSIG, 0);
  if (sig === -1) throw sysError('fcntl', errno(), `reading the signal of fd ${fd} (F_GETSIG)`);
  return { type: ex.readInt32LE(0), pid: ex.readInt32LE(4), sig };
}
