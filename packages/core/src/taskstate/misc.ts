/**
 * The `task` phase: per-task values that need nothing else restored first
 * (linux-cr's task record): comm, personality, the parent-death signal,
 * clear_child_tid, the robust futex list and the timer slack. Each is read
 * and set from inside the task by injected calls, which see exactly what
 * the kernel holds.
 *
 * set_child_tid is not saved: no interface reads or sets it from userspace
 * (CRIU skips it too). The kernel only uses it once, to store the tid when
 * a CLONE_CHILD_SETTID child first runs, which has happened long before a
 * checkpoint.
 */

import { stage } from '../engine/task-io.js';
import { CkptError } from '../errors.js';
import { PR } from '../kernel/prctl.js';
import { readPersonality, readTimerslackNs } from '../proc/task.js';
import type { TaskPhase } from '../registry.js';
import { taskMiscRecord } from './records.js';

const PR_GET_PDEATHSIG = 2;
const PR_SET_TIMERSLACK = 29;
const COMM_SIZE = 16;

/** Scratch layout of the checkpoint reads. */
const AT = {
  comm: 0,
  tidAddress: 16,
  robustHead: 24,
  robustLen: 32,
  pdeath: 40,
  size: 48,
} as const;

/** Saves and restores comm, personality, pdeath signal, tid address, robust list and timer slack. */
export const taskMiscPhase: TaskPhase = {
  name: 'task',
  order: 100,
  checkpoint(ctx, task) {
    const base = task.sys.scratch(AT.size);
    const at = (off: number) => base + BigInt(off);
    task.sys.check('prctl', [PR.GET_NAME, at(AT.comm)], 'reading the name (PR_GET_NAME)');
    task.sys.check('prctl', [PR_GET_PDEATHSIG, at(AT.pdeath)], 'reading the parent-death signal');
    task.sys.check(
      'prctl',
      [PR.GET_TID_ADDRESS, at(AT.tidAddress)],
      'reading clear_child_tid (PR_GET_TID_ADDRESS)',
    );
    task.sys.check(
      'get_robust_list',
      [0, at(AT.robustHead), at(AT.robustLen)],
      'reading the robust futex list',
    );
    const buf = task.mem.read(base, AT.size);
    const name = buf.subarray(AT.comm, AT.comm + COMM_SIZE);
    const nul = name.indexOf(0);
    ctx.write(taskMiscRecord, {
      comm: Buffer.from(name.subarray(0, nul < 0 ? COMM_SIZE - 1 : nul)),
      personality: readPersonality(task.pid),
      pdeathSignal: buf.readInt32LE(AT.pdeath),
      clearChildTid: buf.readBigUInt64LE(AT.tidAddress),
      robustList: buf.readBigUInt64LE(AT.robustHead),
      robustListLen: buf.readBigUInt64LE(AT.robustLen),
      timerslackNs: readTimerslackNs(task.pid),
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
    const [comm] = stage(task, [
      Buffer.concat([rec.comm, Buffer.alloc(COMM_SIZE - rec.comm.length)]),
    ]);
    task.sys.check('prctl', [PR.SET_NAME, comm!], 'setting the name (PR_SET_NAME)');
    task.sys.check(
      'personality',
      [rec.personality],
      `setting personality 0x${rec.personality.toString(16)}`,
    );
    // The restored task's parent is ckpt itself until the tree is rebuilt;
    // with `restart -d` it is orphaned when ckpt exits and gets this signal,
    // as it would have when its original parent died.
    task.sys.check(
      'prctl',
      [PR.SET_PDEATHSIG, rec.pdeathSignal],
      'setting the parent-death signal',
    );
    // Neither call checks the address: the memory is restored later.
    task.sys.check('set_tid_address', [rec.clearChildTid], 'setting clear_child_tid');
    task.sys.check(
      'set_robust_list',
      [rec.robustList, rec.robustListLen],
      'setting the robust futex list',
    );
    // Only the current slack can be set; 0 (a realtime task's) resets it to
    // the default, which the restored task inherits from ckpt.
    task.sys.check('prctl', [PR_SET_TIMERSLACK, rec.timerslackNs], 'setting the timer slack');
  },
};
