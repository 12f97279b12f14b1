/**
 * Pending signals: the thread's queue and the process-wide one, each
 * siginfo as the kernel holds it, oldest first.
 *
 * PTRACE_PEEKSIGINFO reads the queues without dequeuing, so a checkpoint
 * that leaves the task running takes nothing away from it. A signal can be
 * pending with no queue entry (the kernel could not allocate one, e.g. past
 * RLIMIT_SIGPENDING); for those the siginfo is what the kernel itself
 * delivers then: si_code SI_USER, no sender.
 *
 * Restart queues them again from inside the task with rt_tgsigqueueinfo
 * (thread) and rt_sigqueueinfo (process): a task may queue any siginfo to
 * itself. Every signal is blocked by then, so none is delivered during the
 * restore, and a blocked signal is queued even when its action is SIG_IGN,
 * as it was at checkpoint.
 */
import type { CheckpointCtx, RestartCtx } from '../context.js';
import { stage } from '../engine/task-io.js';
import { CkptError } from '../errors.js';
import { peekSiginfo, SIGINFO_SIZE } from '../kernel/ptrace.js';
import { readStatus } from '../proc/status.js';
import type { CheckpointTask, RestartTask } from '../task.js';
import { sigpendingRecord } from './records.js';

const SIGKILL = 9;
const SIGSTOP = 19;
const SI_USER = 0;

/** `queue` plus a synthesized siginfo for every signal in `pendingBits` that has no entry in it. */
function completeQueue(queue: Buffer[], pendingBits: bigint, nsig: number): Buffer[] {
  let covered = 0n;
  for (const info of queue) covered |= 1n << BigInt(info.readInt32LE(0) - 1);
  const out = [...queue];
  for (let sig = 1; sig <= nsig; sig++) {
    if ((pendingBits & ~covered & (1n << BigInt(sig - 1))) === 0n) continue;
    const info = Buffer.alloc(SIGINFO_SIZE);
    info.writeInt32LE(sig, 0); // si_signo; si_errno 0
    info.writeInt32LE(SI_USER, 8); // si_code
    out.push(info);
  }
  return out;
}

/**
 * Write the sigpending record: the task's own queue and, unless `threadOnly`
 * (another thread of a process whose leader's record has it), the
 * process-wide one. Refuses a pending SIGKILL or SIGSTOP (the task is dying
 * or stopping).
 */
export function checkpointSigpending(
  ctx: CheckpointCtx,
  task: CheckpointTask,
  threadOnly = false,
): void {
  // Read now, not at freeze: a signal sent during the checkpoint is pending too.
  const status = readStatus(task.pid);
  const nsig = task.arch.nsig;
  const thread = completeQueue(peekSiginfo(task.pid, false), status.sigPnd, nsig);
  const shared = threadOnly ? [] : completeQueue(peekSiginfo(task.pid, true), status.shdPnd, nsig);
  for (const info of [...thread, ...shared]) {
    const sig = info.readInt32LE(0);
    if (sig === SIGKILL || sig === SIGSTOP) {
      throw new CkptError(
        'EAGAIN',
        `pid ${task.pid} has a pending ${sig === SIGKILL ? 'SIGKILL (it is exiting)' : 'SIGSTOP (it is stopping)'}; checkpoint it again later`,
        { pid: task.pid },
      );
    }
  }
  ctx.write(sigpendingRecord, { thread, shared });
}

/** Queued signals staged per batch: 64 siginfo, 8 KiB of the scratch area. */
const QUEUE_BATCH = 64;

/** A pending signal to queue again: its siginfo, and whether it was the thread's own. */
export interface PendingSignal {
  info: Buffer;
  toThread: boolean;
}

/** Read the sigpending record: the signals to queue again, in order. */
export function readSigpending(ctx: RestartCtx, task: RestartTask): PendingSignal[] {
  const { thread, shared } = ctx.read(sigpendingRecord);
  const all = [
    ...thread.map((info) => ({ info, toThread: true })),
    ...shared.map((info) => ({ info, toThread: false })),
  ];
  for (const { info } of all) {
    const sig = info.readInt32LE(0);
    if (sig < 1 || sig > task.arch.nsig || sig === SIGKILL || sig === SIGSTOP) {
      throw new CkptError(
        'EBADREC',
        `pid ${task.savedPid}: pending signal ${sig} cannot be queued`,
        {
          pid: task.savedPid,
          recordType: sigpendingRecord.type,
        },
      );
    }
  }
  return all;
}

/**
 * Queue `pending` again, in order, from the task `tgid` (a process's leader,
 * its own pid): the thread-directed ones to its thread `tid` (itself by
 * default). Only the leader may queue a siginfo of its choice to one of
 * its threads: the kernel lets a task claim to be a kill(2) sender (si_code
 * SI_USER and the like) only towards its own thread group, named by its
 * own id.
 */
export function queueSigpending(
  task: RestartTask,
  tgid: bigint,
  pending: readonly PendingSignal[],
  tid: bigint = tgid,
): void {
  for (let i = 0; i < pending.length; i += QUEUE_BATCH) {
    const part = pending.slice(i, i + QUEUE_BATCH);
    const addrs = stage(
      task,
      part.map((p) => p.info),
    );
    task.sys.checkBatch(
      part.map(({ info, toThread }, j) => {
        const sig = info.readInt32LE(0);
        const what = `queueing pending signal ${sig} (${toThread ? 'thread' : 'process'})`;
        return toThread
          ? { name: 'rt_tgsigqueueinfo' as const, args: [tgid, tid, sig, addrs[j]!], what }
          : { name: 'rt_sigqueueinfo' as const, args: [tgid, sig, addrs[j]!], what };
      }),
    );
  }
}
