/**
 * The `signals` phase: actions, blocked mask and alternate stack, pending
 * signals, in this order on both sides.
 *
 * While a task is restored it runs injected syscalls; a deliverable signal
 * would interrupt that. Restore therefore blocks every signal first
 * (PTRACE_SETSIGMASK), queues the pending ones, and leaves the saved mask
 * to the engine, which applies it after everything else.
 */
import { CkptError } from '../errors.js';
import { setSigmask } from '../kernel/ptrace.js';
import type { TaskPhase } from '../registry.js';
import { checkpointSighand, restoreSighand } from './sighand.js';
import { checkpointSigmask, restoreSigmask } from './sigmask.js';
import { checkpointSigpending, restoreSigpending } from './sigpending.js';

/** Masks are saved as one u64. */
const MAX_NSIG = 64;
const ALL_SIGNALS = (1n << 64n) - 1n;

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
    restoreSighand(ctx, task);
    restoreSigmask(ctx, task);
    restoreSigpending(ctx, task);
  },
};
