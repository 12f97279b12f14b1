/**
 * The blocked mask and the alternate signal stack (the `signal` record).
 *
 * The blocked mask comes from PTRACE_GETSIGMASK. A task frozen inside
 * sigsuspend, ppoll, pselect or epoll_pwait runs with a temporary mask
 * and its own one parked in the kernel's saved_sigmask; the kernel puts
 * it back when the stopped task resumes without a signal to handle, which
 * the first injected syscall does. The mask is therefore read after the
 * injected reads of this and earlier phases, and is the task's own; the
 * restored task re-executes the interrupted call, which sets the temporary
 * mask again.
 *
 * The alternate stack's SS_ONSTACK flag is not state of its own: the kernel
 * derives it from the stack pointer. It is dropped on restore, and the
 * restored registers put the task back on the alternate stack if it was.
 * sigaltstack(2) fails with EPERM only while the caller's stack pointer is
 * inside the alternate stack it already has; the new task has none before
 * this call (a clone of the restore stub, whose stack pointer it still
 * uses until the final registers are loaded), so setting it cannot fail
 * that way.
 */
import type { CheckpointCtx, RestartCtx } from '../context.js';
import { getSigmask } from '../kernel/ptrace.js';
import type { CheckpointTask } from '../task.js';
import { injectedReads } from './reads.js';
import { signalRecord } from './records.js';

/** `stack_t` on x86-64: ss_sp u64, ss_flags i32, padding, ss_size u64. */
const STACK_T_SIZE = 24;
const SS_DISABLE = 2;
const SS_AUTODISARM = 1 << 31;

/** Write the signal record: blocked mask and sigaltstack. */
export function checkpointSigmask(ctx: CheckpointCtx, task: CheckpointTask): void {
  const buf = injectedReads.get(task).altstack;
  ctx.write(signalRecord, {
    blocked: getSigmask(task.pid),
    altstackSp: buf.readBigUInt64LE(0),
    altstackFlags: buf.readUInt32LE(8),
    altstackSize: buf.readBigUInt64LE(16),
  });
}

/**
 * Read the signal record: the `stack_t` to set the alternate stack with
 * (sigaltstack(2), and what to call that step), and the blocked mask, which
 * the engine applies last (see `RestartTask.finalSigmask`).
 */
export function readSigmask(ctx: RestartCtx): { stack: Buffer; what: string; blocked: bigint } {
  const rec = ctx.read(signalRecord);
  const disabled = (rec.altstackFlags & SS_DISABLE) !== 0;
  const ss = Buffer.alloc(STACK_T_SIZE);
  ss.writeBigUInt64LE(disabled ? 0n : rec.altstackSp, 0);
  ss.writeUInt32LE(((rec.altstackFlags & SS_AUTODISARM) | (disabled ? SS_DISABLE : 0)) >>> 0, 8);
  ss.writeBigUInt64LE(disabled ? 0n : rec.altstackSize, 16);
  const what = disabled
    ? 'disabling the alternate signal stack'
    : `setting the alternate signal stack 0x${rec.altstackSp.toString(16)} (${rec.altstackSize} bytes)`;
  return { stack: ss, what, blocked: rec.blocked };
}
