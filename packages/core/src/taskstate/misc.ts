/**
 * The `task` phase: per-task values that need nothing else restored first
 * (linux-cr's task record): comm, personality, the parent-death signal,
 * the child-subreaper flag, clear_child_tid, the robust futex list and the
 * timer slack. Each is read and set from inside the task by injected
 * calls, which see exactly what the kernel holds.
 *
 * set_child_tid is not saved: no interface reads or sets it from userspace
 * (CRIU skips it too). The kernel only uses it once, to store the tid when
 * a CLONE_CHILD_SETTID child first runs, which has happened long before a
 * checkpoint.
 */

import { CkptError } from '../errors.js';
import { PR } from '../kernel/prctl.js';
import type { TaskPhase } from '../registry.js';
import { injectedReads, MISC } from './reads.js';
import { taskMiscRecord } from './records.js';

const PR_SET_TIMERSLACK = 29;
const PR_SET_CHILD_SUBREAPER = 36;
const COMM_SIZE = 16;

/**
 * Saves and restores comm, personality, pdeath signal, child subreaper, tid
 * address, robust list and timer slack, of the process's leader and of each
 * of its other threads (all but the child-subreaper flag are per thread; a
 * thread's reads the process's and sets it to the same).
 */
export const taskMiscPhase: TaskPhase = {
  name: 'task',
  order: 100,
  prepare: (_ctx, task) => injectedReads.post(task),
  prepareThread: (_ctx, thread) => injectedReads.post(thread),
  checkpointThread: (ctx, thread) => taskMiscPhase.checkpoint(ctx, thread),
  restoreThread: (ctx, thread) => taskMiscPhase.restore(ctx, thread),
  checkpoint(ctx, task) {
    const reads = injectedReads.get(task);
    const buf = reads.misc;
    const name = buf.subarray(MISC.comm, MISC.comm + COMM_SIZE);
    const nul = name.indexOf(0);
    ctx.write(taskMiscRecord, {
      comm: Buffer.from(name.subarray(0, nul < 0 ? COMM_SIZE - 1 : nul)),
      personality: reads.personality,
      pdeathSignal: buf.readInt32LE(MISC.pdeath),
      childSubreaper: buf.readInt32LE(MISC.childSubreaper) !== 0,
      clearChildTid: buf.readBigUInt64LE(MISC.tidAddress),
      robustList: buf.readBigUInt64LE(MISC.robustHead),
      robustListLen: buf.readBigUInt64LE(MISC.robustLen),
      timerslackNs: reads.timerslackNs,
    });
  },
  restore(ctx, task) {
    const rec = ctx.read(taskMiscRecord);
    if (rec.pdeathSignal > task.arch.nsig) {
      throw new CkptError(
        'EBADREC',
        `pid ${task.savedPid}: parent-death signal ${rec.pdeathSignal} is not a signal`,
        {
          pid: task.savedPid,
          recordType: taskMiscRecord.type,
        },
      );
    }
    // The root's parent was outside the tree; restored, its parent is ckpt
    // restart, which exits (-d) while the original parent may live on: the
    // signal would kill the task at once, so it is not set again.
    const root = ctx.active === 0;
    const pdeathSignal = root ? 0 : rec.pdeathSignal;
    if (root && rec.pdeathSignal !== 0) {
      ctx.log.warn(
        `pid ${task.savedPid}: its parent-death signal (${rec.pdeathSignal}) is not set again: its parent was outside the checkpointed tree`,
      );
    }
    // Posted: these run with the task's next injected calls (none of the
    // later phases depends on them before).
    task.sys.postChecked(
      [
        { name: 'prctl', args: [PR.SET_NAME, { data: 0 }], what: 'setting the name (PR_SET_NAME)' },
        {
          name: 'personality',
          args: [rec.personality],
          what: `setting personality 0x${rec.personality.toString(16)}`,
        },
        {
          name: 'prctl',
          args: [PR.SET_PDEATHSIG, pdeathSignal],
          what: 'setting the parent-death signal',
        },
        {
          name: 'prctl',
          args: [PR_SET_CHILD_SUBREAPER, rec.childSubreaper ? 1 : 0],
          what: 'setting the child-subreaper flag',
        },
        // Neither call checks the address: the memory is restored later.
        { name: 'set_tid_address', args: [rec.clearChildTid], what: 'setting clear_child_tid' },
        {
          name: 'set_robust_list',
          args: [rec.robustList, rec.robustListLen],
          what: 'setting the robust futex list',
        },
        // Only the current slack can be set; 0 (a realtime task's) resets it to
        // the default, which the restored task inherits from ckpt.
        {
          name: 'prctl',
          args: [PR_SET_TIMERSLACK, rec.timerslackNs],
          what: 'setting the timer slack',
        },
      ],
      { data: [Buffer.concat([rec.comm, Buffer.alloc(COMM_SIZE - rec.comm.length)])] },
    );
  },
};
