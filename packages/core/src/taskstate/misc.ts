/**
 * The `task` phase: per-task values that need nothing else restored first
 * (linux-cr's task record): comm, personality, the parent-death signal,
 * the child-subreaper flag, clear_child_tid, the robust futex list and the
 * timer slack. Each is read and set from inside the task by injected
 * calls, which see exactly what the kernel holds. And three of the
 * process's that /proc shows: whether transparent huge pages are disabled
 * (PR_SET_THP_DISABLE) and every mapping offered to KSM
 * (PR_SET_MEMORY_MERGE), set again by injected prctl before the memory is
 * rebuilt, and oom_score_adj, written again from ckpt's side.
 *
 * Not kept: PR_SET_TSC (x86's rdtsc trap: no /proc file shows it).
 *
 * set_child_tid is not saved: no interface reads or sets it from userspace
 * (CRIU skips it too). The kernel only uses it once, to store the tid when
 * a CLONE_CHILD_SETTID child first runs, which has happened long before a
 * checkpoint.
 */

import { readFileSync, writeFileSync } from 'node:fs';
import type { RestartCtx } from '../context.js';
import { CkptError } from '../errors.js';
import { PR } from '../kernel/prctl.js';
import type { TaskPhase } from '../registry.js';
import type { CheckpointTask, RestartTask } from '../task.js';
import { injectedReads, MISC } from './reads.js';
import { taskMiscRecord } from './records.js';

const PR_SET_TIMERSLACK = 29;
const PR_SET_CHILD_SUBREAPER = 36;
const PR_SET_THP_DISABLE = 41;
const PR_SET_MEMORY_MERGE = 67;

/** The process-wide values /proc shows (see the module comment). */
function processValues(task: CheckpointTask) {
  let memoryMerge = false;
  try {
    memoryMerge = /^ksm_merge_any: yes$/m.test(readFileSync(`/proc/${task.pid}/ksm_stat`, 'utf8'));
  } catch {
    // No KSM in this kernel: nothing merges.
  }
  return {
    thpDisabled: task.status.raw.get('THP_enabled') === '0',
    memoryMerge,
    oomScoreAdj: Number(readFileSync(`/proc/${task.pid}/oom_score_adj`, 'utf8').trim()),
  };
}

/** Set the process-wide values again (for the process, not each thread). */
function restoreProcessValues(
  task: RestartTask,
  rec: { thpDisabled: boolean; memoryMerge: boolean; oomScoreAdj: number },
): void {
  const calls = [
    ...(rec.thpDisabled
      ? [
          {
            name: 'prctl' as const,
            args: [PR_SET_THP_DISABLE, 1, 0, 0, 0],
            what: 'disabling transparent huge pages (PR_SET_THP_DISABLE)',
          },
        ]
      : []),
    ...(rec.memoryMerge
      ? [
          {
            name: 'prctl' as const,
            args: [PR_SET_MEMORY_MERGE, 1, 0, 0, 0],
            what: 'offering every mapping to KSM (PR_SET_MEMORY_MERGE)',
          },
        ]
      : []),
  ];
  // Before the memory phase maps anything: both act on new mappings.
  if (calls.length > 0) task.sys.checkBatch(calls);
  if (rec.oomScoreAdj !== 0) {
    try {
      writeFileSync(`/proc/${task.pid}/oom_score_adj`, String(rec.oomScoreAdj));
    } catch (e) {
      throw new CkptError(
        'ESYS',
        `pid ${task.savedPid}: setting oom_score_adj to ${rec.oomScoreAdj}: ${(e as Error).message}`,
        { pid: task.savedPid },
        { cause: e },
      );
    }
  }
}
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
  restoreThread: (ctx, thread) => restoreMisc(ctx, thread, false),
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
      ...processValues(task),
    });
  },
  restore: (ctx, task) => restoreMisc(ctx, task, true),
};

/** Restore a process's (`process`) or one of its other threads' values. */
function restoreMisc(ctx: RestartCtx, task: RestartTask, process: boolean): void {
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
  if (process) restoreProcessValues(task, rec);
}
