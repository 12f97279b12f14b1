/**
 * @ckpt/arch-x86 — x86-64 task state: registers, xstate, debug registers,
 * the syscall convention for injection, and the syscall-restart rules.
 *
 * @packageDocumentation
 */
export * from './arch.js';
export * from './cpu.js';
export * from './debugregs.js';
export * from './plugin.js';
export * from './regs.js';
export * from './restart.js';
export * from './resume.js';
export * from './stub.js';
export * from './syscall.js';
export * from './xstate.js';
