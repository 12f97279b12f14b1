/**
 * The kernel's syscall-restart rules on x86-64, for tasks checkpointed
 * while inside an interrupted system call.
 *
 * A task stopped by ptrace in the middle of a blocking syscall has left the
 * syscall with a restart code in rax and the syscall number in orig_rax;
 * rip is just past the `syscall` instruction. When such a task resumes
 * without a handler to run, the kernel fixes the registers up itself
 * (arch_do_signal_or_restart): rax = orig_rax and rip -= 2 to re-execute
 * the syscall, or rax = __NR_restart_syscall for -ERESTART_RESTARTBLOCK,
 * which continues from a per-task restart block held in the kernel.
 *
 * A restored task is a different kernel task: its registers must be
 * rewritten here, with orig_rax = -1 so that the kernel does not apply the
 * fixup a second time, and restart_syscall is useless there (the restart
 * block is lost). The only syscalls that return -ERESTART_RESTARTBLOCK are
 * the sleeps (nanosleep, clock_nanosleep), futex waits with a timeout and
 * poll/ppoll (with or without a timeout):
 * - clock_nanosleep with TIMER_ABSTIME: re-executing it is exact;
 * - nanosleep / relative clock_nanosleep with a `rem` pointer: the kernel
 *   wrote the remaining time into *rem when the freeze interrupted it (and
 *   the memory saved it), so re-executing with the request pointed at `rem`
 *   sleeps exactly the rest, counted from the restart (linux-cr's relative
 *   model of restart blocks);
 * - poll without a timeout, and ppoll (the kernel wrote the time left back
 *   into its timespec): re-executing it is exact;
 * - anything else, including sleeps without `rem`: the call returns -EINTR,
 *   as if a signal had interrupted it. POSIX allows EINTR for all of these,
 *   and it is what CRIU does.
 */
import type { UserRegs } from './regs.js';
import { NR } from './syscall.js';

/** Restart codes a syscall leaves in rax (include/linux/errno.h), negated. */
export const ERESTARTSYS = 512;
export const ERESTARTNOINTR = 513;
export const ERESTARTNOHAND = 514;
export const ERESTART_RESTARTBLOCK = 516;
const EINTR = 4;
const TIMER_ABSTIME = 1n;

/** How a saved task relates to an interrupted syscall. */
export type RestartKind = { kind: 'none' } | { kind: 'restart'; code: number; nr: number };

/** Is the task stopped inside an interrupted syscall, and with which restart code? */
export function syscallRestartState(regs: UserRegs): RestartKind {
  const nr = BigInt.asIntN(64, regs.orig_rax);
  const ret = -BigInt.asIntN(64, regs.rax);
  if (nr < 0n) return { kind: 'none' };
  const code = Number(ret);
  if (
    code === ERESTARTSYS ||
    code === ERESTARTNOINTR ||
    code === ERESTARTNOHAND ||
    code === ERESTART_RESTARTBLOCK
  ) {
    return { kind: 'restart', code, nr: Number(nr) };
  }
  return { kind: 'none' };
}

/** What {@link resumeRegs} decided. */
export type RestartAction = 'none' | 'reexecute' | 'restart-syscall' | 'eintr';

/** Options of {@link resumeRegs}. */
export interface ResumeOptions {
  /**
   * The registers go back into the same kernel task they came from (e.g. a
   * checkpoint that leaves the tree running): -ERESTART_RESTARTBLOCK may
   * then use restart_syscall. Default false (a restored task).
   */
  sameTask?: boolean;
}

/**
 * The registers a task saved inside an interrupted syscall must be resumed
 * with, following the kernel's rules (see the module comment), and what
 * was done. Registers of a task that is not in a syscall come back as they
 * are. The result always has orig_rax = -1 when it was changed.
 */
export function resumeRegs(
  regs: UserRegs,
  options: ResumeOptions = {},
): { regs: UserRegs; action: RestartAction } {
  const state = syscallRestartState(regs);
  if (state.kind === 'none') return { regs: { ...regs }, action: 'none' };
  const reexecute = (args: Partial<UserRegs> = {}): { regs: UserRegs; action: RestartAction } => ({
    regs: {
      ...regs,
      ...args,
      rax: regs.orig_rax,
      rip: regs.rip - 2n,
      orig_rax: 0xffff_ffff_ffff_ffffn,
    },
    action: 'reexecute',
  });
  if (state.code !== ERESTART_RESTARTBLOCK) return reexecute();
  if (options.sameTask) {
    return {
      regs: {
        ...regs,
        rax: BigInt(NR.restart_syscall),
        rip: regs.rip - 2n,
        orig_rax: 0xffff_ffff_ffff_ffffn,
      },
      action: 'restart-syscall',
    };
  }
  const sleep = resumeSleep(state.nr, regs) ?? resumeWait(state.nr, regs);
  if (sleep) return reexecute(sleep);
  return {
    regs: { ...regs, rax: BigInt.asUintN(64, BigInt(-EINTR)), orig_rax: 0xffff_ffff_ffff_ffffn },
    action: 'eintr',
  };
}

const NR_POLL = 7;
const NR_PPOLL = 271;

/**
 * poll and ppoll always leave -ERESTART_RESTARTBLOCK, timeout or not. They
 * resume exactly when re-executed if they have no timeout, and ppoll also
 * with one: the kernel wrote the time left back into its timespec.
 */
function resumeWait(nr: number, regs: UserRegs): Partial<UserRegs> | undefined {
  // poll(fds, nfds, timeout_ms): a negative timeout waits forever.
  if (nr === NR_POLL) return BigInt.asIntN(32, regs.rdx) < 0n ? {} : undefined;
  // ppoll(fds, nfds, tsp, sigmask, sigsetsize)
  if (nr === NR_PPOLL) return {};
  return undefined;
}

/**
 * For an interrupted relative sleep that can resume exactly, the argument
 * registers that make its re-execution sleep the remaining time; undefined
 * when it cannot (no `rem`, or not a sleep).
 */
function resumeSleep(nr: number, regs: UserRegs): Partial<UserRegs> | undefined {
  // nanosleep(req, rem)
  if (nr === NR.nanosleep) return regs.rsi === 0n ? undefined : { rdi: regs.rsi };
  if (nr === NR.clock_nanosleep) {
    // clock_nanosleep(clock, flags, req, rem); an absolute one is exact as it is.
    if ((regs.rsi & TIMER_ABSTIME) !== 0n) return {};
    return regs.r10 === 0n ? undefined : { rdx: regs.r10 };
  }
  return undefined;
}
