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

/** Write the sigpending record. Refuses a pending SIGKILL or SIGSTOP (the task is dying or stopping). */
export function checkpointSigpending(ctx: CheckpointCtx, task: CheckpointTask): void {
  // Read now, not at freeze: a signal sent during the checkpoint is pending too.
  const status = readStatus(task.pid);
  const nsig = task.arch.nsig;
  const thread = completeQueue(peekSiginfo(task.pid, false), status.sigPnd, nsig);
  const shared = completeQueue(peekSiginfo(task.pid, true), status.shdPnd, nsig);
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

/** Read the sigpending record and queue every signal again, in order. */
export function restoreSigpending(ctx: RestartCtx, task: RestartTask): void {
  const { thread, shared } = ctx.read(sigpendingRecord);
  // The task's own pid in its pid namespace; single-threaded, so its tid too.
  const tgid = task.sys.check('getpid', [], 'reading its own pid');
  const addr = task.sys.scratch(SIGINFO_SIZE);
  const queue = (info: Buffer, toThread: boolean) => {
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
    task.mem.write(addr, info);
    const what = `queueing pending signal ${sig} (${toThread ? 'thread' : 'process'})`;
    if (toThread) task.sys.check('rt_tgsigqueueinfo', [tgid, tgid, sig, addr], what);
    else task.sys.check('rt_sigqueueinfo', [tgid, sig, addr], what);
  };
  for (const info of thread) queue(info, true);
  for (const info of shared) queue(info, false);
}
