/**
 * The `pidns` phase: the pid counter of a container's pid namespace
 * (kernel.ns_last_pid), so processes the container starts after a restart
 * get pids above the ones it had given, as they would have: restoring
 * every task with clone3's set_tid leaves the counter of the fresh
 * namespace at its start.
 *
 * The sysctl shows the pid namespace of the task that opens it, whatever
 * the proc mount, so it is read and written by injected calls in the
 * container's init (its root task), which is in that namespace. Written
 * for the root of a container image only; a subtree stays in the host's
 * namespace, whose counter is the host's.
 */
import {
  CheckpointFlags,
  type CheckpointTask,
  cString,
  isSyscallError,
  openInTask,
  type RestartTask,
  stage,
  type TaskPhase,
} from '@ckpt/core';
import { pidNsRecord } from './records.js';

const NS_LAST_PID = '/proc/sys/kernel/ns_last_pid';
const AT_FDCWD = -100;
const O_RDONLY = 0;
const O_WRONLY = 1;
const O_CLOEXEC = 0o2000000;

/** ns_last_pid as `task` sees it, or 0 when it cannot open it (no /proc in its mount namespace). */
function readLastPid(task: CheckpointTask): number {
  const [path, buf] = stage(task, [cString(NS_LAST_PID), Buffer.alloc(32)]);
  const [fd, n] = task.sys.batch([
    { name: 'openat', args: [AT_FDCWD, path!, O_RDONLY | O_CLOEXEC] },
    { name: 'read', args: [{ result: 0 }, buf!, 31] },
    { name: 'close', args: [{ result: 0 }] },
  ]);
  if (isSyscallError(fd!) || isSyscallError(n!)) return 0;
  const text = task.mem.read(buf!, Number(n)).toString('latin1').trim();
  return /^\d+$/.test(text) ? Number(text) : 0;
}

function writeLastPid(task: RestartTask, lastPid: number): void {
  const what = `setting ${NS_LAST_PID} to ${lastPid} in the container of pid ${task.savedPid}`;
  const fd = openInTask(task, NS_LAST_PID, O_WRONLY | O_CLOEXEC);
  const text = Buffer.from(String(lastPid));
  const [addr] = stage(task, [text]);
  try {
    task.sys.check('write', [fd, addr!, text.length], what);
  } finally {
    task.sys.post([{ name: 'close', args: [fd] }]);
  }
}

/** Saves and restores a container's pid counter (its root task only). */
export const pidNsPhase: TaskPhase = {
  name: 'pidns',
  // Every task exists by then (the tree is built first), and the root
  // still has ckpt's privileges (the creds phase is 900).
  order: 160,
  checkpoint(ctx, task) {
    if (!ctx.has(CheckpointFlags.CONTAINER) || ctx.pids[0] !== task.pid) return;
    const lastPid = readLastPid(task);
    if (lastPid === 0) {
      ctx.log.warn(
        `pid ${task.pid}: cannot read ${NS_LAST_PID} in its pid namespace (no /proc there?): processes it starts after a restart may get low pids again`,
      );
    }
    ctx.write(pidNsRecord, { lastPid });
  },
  restore(ctx, task) {
    if (!ctx.has(CheckpointFlags.CONTAINER) || ctx.pids[0] !== task.pid) return;
    const { lastPid } = ctx.read(pidNsRecord);
    if (lastPid > 0) writeLastPid(task, lastPid);
  },
};
