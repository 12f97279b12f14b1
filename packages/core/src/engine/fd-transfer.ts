/**
 * Giving a restored task a file another process holds, as the same open
 * file description (one offset, one set of flags): pidfd_getfd run inside
 * the task. The task needs a pidfd of the holder, and pidfd_open can only
 * name a process visible in the task's pid namespace; so when the holder
 * is not (a task in a nested pid namespace copying from one outside it),
 * ckpt copies the fd into itself first, and the task takes it from ckpt
 * through the pidfd for ckpt every restored task inherits from the stub.
 */
import { closeSync } from 'node:fs';
import { grabFd } from '../kernel/pidfd.js';
import { readStatus } from '../proc/index.js';
import type { RestartTask } from '../task.js';
import { pidAtLevel } from './container.js';
import { closeInTask } from './task-io.js';

/** Copy fd `ckptFd` of this ckpt process into `task`; returns the task's new fd. */
export function copyFdFromCkpt(task: RestartTask, ckptFd: number, what: string): number {
  return Number(task.sys.check('pidfd_getfd', [task.ckptPidfd, ckptFd, 0], what));
}

/**
 * Copy fd `holderFd` of process `holderPid` (as ckpt sees it) into `task`;
 * returns the task's new fd.
 */
export function copyFdFromProcess(
  task: RestartTask,
  holderPid: number,
  holderFd: number,
  what: string,
): number {
  // The holder's pid in the task's own pid namespace, if it is visible there.
  const seen = pidAtLevel(holderPid, readStatus(task.pid).nsPid.length);
  if (seen === undefined) {
    const mine = grabFd(holderPid, holderFd);
    try {
      return copyFdFromCkpt(task, mine, what);
    } finally {
      closeSync(mine);
    }
  }
  const pidfd = Number(task.sys.check('pidfd_open', [seen, 0], what));
  try {
    return Number(task.sys.check('pidfd_getfd', [pidfd, holderFd, 0], what));
  } finally {
    closeInTask(task, pidfd);
  }
}
