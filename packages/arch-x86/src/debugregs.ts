/**
 * x86 debug registers (hardware breakpoints and watchpoints) of a tracee,
 * through PTRACE_PEEKUSER/POKEUSER on `struct user`'s u_debugreg array.
 */
import { peekUser, pokeUser } from '@ckpt/core';

/** offsetof(struct user, u_debugreg) on x86-64. */
export const U_DEBUGREG_OFFSET = 848;

/** DR0-DR3 (addresses), DR6 (status) and DR7 (control). */
export interface DebugRegs {
  dr0: bigint;
  dr1: bigint;
  dr2: bigint;
  dr3: bigint;
  dr6: bigint;
  dr7: bigint;
}

const INDEX: Record<keyof DebugRegs, number> = { dr0: 0, dr1: 1, dr2: 2, dr3: 3, dr6: 6, dr7: 7 };

function offset(name: keyof DebugRegs): number {
  return U_DEBUGREG_OFFSET + 8 * INDEX[name];
}

/** Read the debug registers of stopped tracee `pid`. */
export function readDebugRegs(pid: number): DebugRegs {
  return {
    dr0: peekUser(pid, offset('dr0')),
    dr1: peekUser(pid, offset('dr1')),
    dr2: peekUser(pid, offset('dr2')),
    dr3: peekUser(pid, offset('dr3')),
    dr6: peekUser(pid, offset('dr6')),
    dr7: peekUser(pid, offset('dr7')),
  };
}

/** DR6 as ptrace reads it when no debug exception is recorded (its reserved bits). */
export const DR6_DEFAULT = 0xffff0ff0n;

/** True when `regs` are what a new task has: no breakpoint, no status. */
export function isDefaultDebugRegs(regs: DebugRegs): boolean {
  return (
    regs.dr0 === 0n &&
    regs.dr1 === 0n &&
    regs.dr2 === 0n &&
    regs.dr3 === 0n &&
    regs.dr6 === DR6_DEFAULT &&
    regs.dr7 === 0n
  );
}

/**
 * Write the debug registers of stopped tracee `pid`. DR7 goes last and is
 * cleared first: the kernel validates each breakpoint as DR7 enables it,
 * so the addresses must be in place before. `fresh`: the task was just
 * created (the kernel gives a new task no breakpoints), so default
 * registers need no write: each POKEUSER of a debug register re-registers
 * a hardware breakpoint in the kernel, ~50 µs apiece here.
 */
export function writeDebugRegs(pid: number, regs: DebugRegs, fresh = false): void {
  if (fresh && isDefaultDebugRegs(regs)) return;
  pokeUser(pid, offset('dr7'), 0n);
  for (const name of ['dr0', 'dr1', 'dr2', 'dr3', 'dr6'] as const) {
    pokeUser(pid, offset(name), regs[name]);
  }
  pokeUser(pid, offset('dr7'), regs.dr7);
}
