/**
 * The `signals` phase: actions, blocked mask and alternate stack, pending
 * signals, in this order on both sides.
 *
 * While a task is restored it runs injected syscalls; a deliverable signal
 * would interrupt that. Restore therefore blocks every signal first
 * (PTRACE_SETSIGMASK, before the task's next injected calls), queues the
 * pending ones, and leaves the saved mask to the engine, which applies it
 * after everything else.
 *
 * A restored task's pending signals are exactly the saved ones (linux-cr's
 * PF_RESTARTING): anything that arrived during the restore is discarded
 * first. That is SIGCHLD from its restored zombie children, which exited
 * while it was blocked; setting an action to SIG_IGN discards the pending
 * instances, and the saved action is installed right after.
 */

import { stage } from '../engine/task-io.js';
import { CkptError } from '../errors.js';
import { setSigmask } from '../kernel/ptrace.js';
import { readStatus } from '../proc/status.js';
import type { TaskPhase } from '../registry.js';
import { injectedReads } from './reads.js';
import { sigpendingRecord } from './records.js';
import { checkpointSighand, readSighand } from './sighand.js';
import { checkpointSigmask, readSigmask } from './sigmask.js';
import { checkpointSigpending, queueSigpending, readSigpending } from './sigpending.js';

/** Masks are saved as one u64. */
const MAX_NSIG = 64;
const ALL_SIGNALS = (1n << 64n) - 1n;

const SIGCHLD = 17;
const KSIGACTION_SIZE = 32;
const SIGSET_SIZE = 8;
const SIG_DFL = 0n;
const SIG_IGN = 1n;

/** A `struct kernel_sigaction` with just a handler. */
function handlerOnly(handler: bigint): Buffer {
  const act = Buffer.alloc(KSIGACTION_SIZE);
  act.writeBigUInt64LE(handler, 0);
  return act;
}

/**
 * Saves and restores the signal state of a process; of each of its other
 * threads, the blocked mask, alternate stack and thread-directed pending
 * signals (actions and the process-wide queue are the process's).
 */
export const signalsPhase: TaskPhase = {
  name: 'signals',
  order: 400,
  prepare: (_ctx, task) => injectedReads.post(task),
  prepareThread: (_ctx, thread) => injectedReads.post(thread),
  checkpointThread(ctx, thread) {
    checkpointSigmask(ctx, thread);
    checkpointSigpending(ctx, thread, true);
  },
  restoreThread(ctx, thread, task) {
    thread.sys.whenStopped((pid) => setSigmask(pid, ALL_SIGNALS));
    const { stack, what, blocked } = readSigmask(ctx);
    const pending = readSigpending(ctx, thread);
    if (pending.some((p) => !p.toThread)) {
      throw new CkptError(
        'EBADREC',
        `thread ${thread.savedPid} of pid ${task.savedPid}: process-wide pending signals in a thread's record`,
        { pid: task.savedPid, recordType: sigpendingRecord.type },
      );
    }
    thread.finalSigmask = blocked;
    thread.sys.postChecked([{ name: 'sigaltstack', args: [{ data: 0 }, 0], what }], {
      data: [stack],
    });
    if (pending.length === 0) return;
    // Queued by the leader (see queueSigpending), to the thread's id as
    // the process sees it.
    const st = readStatus(thread.pid);
    queueSigpending(
      task,
      BigInt(st.nsTgid.at(-1) ?? st.tgid),
      pending,
      BigInt(st.nsPid.at(-1) ?? st.pid),
    );
  },
  checkpoint(ctx, task) {
    if (task.arch.nsig > MAX_NSIG) {
      throw new CkptError(
        'ENOTSUP',
        `pid ${task.pid}: ${task.arch.nsig} signals do not fit ckpt's 64-bit signal masks`,
        {
          pid: task.pid,
        },
      );
    }
    checkpointSighand(ctx, task);
    checkpointSigmask(ctx, task);
    checkpointSigpending(ctx, task);
  },
  restore(ctx, task) {
    // Once the task is stopped: the memory phase's round trip may still be
    // running (see TaskSyscalls.launch); nothing else runs in it before.
    task.sys.whenStopped((pid) => setSigmask(pid, ALL_SIGNALS));
    const actions = readSighand(ctx, task);
    const { stack, what, blocked } = readSigmask(ctx);
    const pending = readSigpending(ctx, task);
    task.finalSigmask = blocked;
    // Drop pending SIGCHLD (setting SIG_IGN discards them; the action goes
    // back to the default right away, so every action is at its default
    // when the saved ones are installed), install the saved actions, set
    // the alternate stack: structs are data[0..], calls refer to them.
    const data = [handlerOnly(SIG_IGN), handlerOnly(SIG_DFL), stack, ...actions.map((a) => a.act)];
    const calls = (at: (i: number) => bigint | { data: number }) => {
      const discard = `discarding pending signal ${SIGCHLD}`;
      return [
        { name: 'rt_sigaction' as const, args: [SIGCHLD, at(0), 0, SIGSET_SIZE], what: discard },
        { name: 'rt_sigaction' as const, args: [SIGCHLD, at(1), 0, SIGSET_SIZE], what: discard },
        ...actions.map((a, i) => ({
          name: 'rt_sigaction' as const,
          args: [a.sig, at(3 + i), 0, SIGSET_SIZE],
          what: `setting the action of signal ${a.sig}`,
        })),
        { name: 'sigaltstack' as const, args: [at(2), 0], what },
      ];
    };
    if (pending.length === 0) {
      // Nothing to queue after them: posted, they run with the task's next
      // injected calls.
      task.sys.postChecked(
        calls((i) => ({ data: i })),
        { data },
      );
      return;
    }
    // Then the pending signals, queued by the task itself (its own pid in
    // its pid namespace; single-threaded, so its tid too).
    const addrs = stage(task, data);
    const results = task.sys.checkBatch([
      ...calls((i) => addrs[i]!),
      { name: 'getpid', args: [], what: 'reading its own pid' },
    ]);
    queueSigpending(task, results[results.length - 1]!, pending);
  },
};
