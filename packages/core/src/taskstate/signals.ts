/**
 * The `signals` phase: actions, blocked mask and alternate stack, pending
 * signals, in this order on both sides.
 *
 * While a task is restored it runs injected syscalls; a deliverable signal
 * would interrupt that. Restore therefore blocks every signal first
 * (PTRACE_SETSIGMASK), queues the pending ones, and leaves the saved mask
 * to the engine, which applies it after everything else.
 *
 * A restored task's pending signals are exactly the saved ones (linux-cr's
 * PF_RESTARTING): anything that arrived during the restore is discarded
 * first. That is SIGCHLD from its restored zombie children, which exited
 * while it was blocked; setting an action to SIG_IGN discards the pending
 * instances, and the saved action is installed right after.
 */
import { CkptError } from '../errors.js';
import { setSigmask } from '../kernel/ptrace.js';
import type { TaskPhase } from '../registry.js';
import type { RestartTask } from '../task.js';
import { checkpointSighand, restoreSighand } from './sighand.js';
import { checkpointSigmask, restoreSigmask } from './sigmask.js';
import { checkpointSigpending, restoreSigpending } from './sigpending.js';

/** Masks are saved as one u64. */
const MAX_NSIG = 64;
const ALL_SIGNALS = (1n << 64n) - 1n;

const SIGCHLD = 17;
const KSIGACTION_SIZE = 32;
const SIGSET_SIZE = 8;
const SIG_DFL = 0n;
const SIG_IGN = 1n;

/**
 * Drop pending instances of `sig`: setting SIG_IGN discards them. The
 * action goes back to the default right away, so every action is still at
 * its default when the saved ones are installed (sighand relies on it).
 */
function discardPending(task: RestartTask, sig: number): void {
  const act = Buffer.alloc(KSIGACTION_SIZE);
  const addr = task.sys.scratch(KSIGACTION_SIZE);
  for (const handler of [SIG_IGN, SIG_DFL]) {
    act.writeBigUInt64LE(handler, 0);
    task.mem.write(addr, act);
    task.sys.check('rt_sigaction', [sig, addr, 0, SIGSET_SIZE], `discarding pending signal ${sig}`);
  }
}

/** Saves and restores the signal state of a task. */
export const signalsPhase: TaskPhase = {
  name: 'signals',
  order: 400,
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
    setSigmask(task.pid, ALL_SIGNALS);
    discardPending(task, SIGCHLD);
    restoreSighand(ctx, task);
    restoreSigmask(ctx, task);
    restoreSigpending(ctx, task);
  },
};
