/**
 * Giving a restored task a file another process holds, as the same open
 * file description (one offset, one set of flags): pidfd_getfd run inside
 * the task. ckpt copies the fd into itself first and the task takes it
 * from ckpt, through the pidfd for ckpt every restored task inherits from
 * the stub: that reaches holders the task cannot name (a task in a nested
 * pid namespace copying from one outside it), and costs the task one
 * injected call.
 */
import { closeSync } from 'node:fs';
import { grabFd } from '../kernel/pidfd.js';
import type { RestartTask } from '../task.js';

/** Copy fd `ckptFd` of this ckpt process into `task`; returns the task's new fd. */
export function copyFdFromCkpt(task: RestartTask, ckptFd: number, what: string): number {
  return Number(task.sys.check('pidfd_getfd', [task.ckptPidfd, ckptFd, 0], what));
}

/**
 * Copy fd `holderFd` of process `holderPid` (as ckpt sees it) into `task`;
 * returns the task's new fd. Always through ckpt (which can reach any
 * holder): one call injected into the task, where pidfd_open of the
 * holder, pidfd_getfd and closing the pidfd in the task would take three.
 */
export function copyFdFromProcess(
  task: RestartTask,
  holderPid: number,
  holderFd: number,
  what: string,
): number {
  const mine = grabFd(holderPid, holderFd);
  try {
    return copyFdFromCkpt(task, mine, what);
  } finally {
    closeSync(mine);
  }
}
