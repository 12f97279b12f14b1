/**
 * Sending signals, with errors that name the target.
 */
import { errno, libc, sysError } from './libc.js';

/** Send `sig` to process `pid` (kill(2)). */
export function sendSignal(pid: number, sig: number): void {
  if (libc().kill(pid, sig) === -1) {
    throw sysError('kill', errno(), `sending signal ${sig} to pid ${pid}`, { pid });
  }
}

/** Send `sig` to thread `tid` of thread group `tgid` (tgkill(2)). */
export function sendThreadSignal(tgid: number, tid: number, sig: number): void {
  if (libc().tgkill(tgid, tid, sig) === -1) {
    throw sysError('tgkill', errno(), `sending signal ${sig} to thread ${tid} of pid ${tgid}`, {
      pid: tgid,
    });
  }
}

/** True if a process with this pid exists (kill(pid, 0); EPERM counts as existing). */
export function processExists(pid: number): boolean {
  return libc().kill(pid, 0) === 0 || errno() === 1;
}
