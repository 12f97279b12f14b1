/**
 * The `sched` phase: every thread's scheduling attributes — policy and
 * parameters with the nice value (sched_getattr), CPU affinity and I/O
 * priority — read and set again from ckpt's side (root may change any
 * task's; nothing runs in the task).
 *
 * They are set with the task's last steps (order 860, `whenStopped`): a
 * restored task inherits ckpt restart's attributes until then, so a task
 * saved with nice 19 or bound to one CPU is not slowed while it is being
 * rebuilt, and no background round trip is waited for. An affinity none of
 * whose CPUs exists here is left as inherited, with a warning; other
 * failures (a real-time policy the restarter may not give) fail the
 * restart naming the task.
 */
import type { CheckpointCtx, RestartCtx } from '../context.js';
import { asCkptError } from '../errors.js';
import {
  getAffinity,
  getIoprio,
  getSchedAttr,
  setAffinity,
  setIoprio,
  setSchedAttr,
} from '../kernel/sched.js';
import type { TaskPhase } from '../registry.js';
import type { CheckpointTask, RestartTask } from '../task.js';
import { schedRecord } from './records.js';

/** I/O priority class bits (ioprio >> 13); class 0 follows the nice value. */
const IOPRIO_CLASS_SHIFT = 13;

function save(tid: number) {
  return { ...getSchedAttr(tid), affinity: getAffinity(tid), ioprio: getIoprio(tid) };
}

function restore(ctx: RestartCtx, task: RestartTask): void {
  const rec = ctx.read(schedRecord);
  const log = ctx.log;
  task.sys.whenStopped((tid) => {
    try {
      setSchedAttr(tid, rec);
      if (rec.affinity.length > 0 && !setAffinity(tid, rec.affinity)) {
        log.warn(
          `pid ${task.savedPid}: none of the CPUs it was bound to (mask ${rec.affinity.toString('hex')}) exists here; it runs on any CPU`,
        );
      }
      if (rec.ioprio >> IOPRIO_CLASS_SHIFT !== 0) setIoprio(tid, rec.ioprio);
    } catch (e) {
      throw asCkptError(
        e,
        `restoring the scheduling attributes of pid ${task.savedPid}`,
        task.savedPid,
      );
    }
  });
}

function checkpoint(ctx: CheckpointCtx, task: CheckpointTask): void {
  ctx.write(schedRecord, save(task.pid));
}

/** Saves and restores every thread's scheduling policy, nice value, CPU affinity and I/O priority. */
export const schedPhase: TaskPhase = {
  name: 'sched',
  order: 860,
  checkpoint,
  checkpointThread: (ctx, thread) => checkpoint(ctx, thread),
  restore,
  restoreThread: (ctx, thread) => restore(ctx, thread),
};
