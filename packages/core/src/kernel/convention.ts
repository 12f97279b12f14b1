/**
 * What the syscall-injection engine needs to know about an architecture.
 * Implemented by the arch packages (e.g. `@ckpt/arch-x86`) and passed in:
 * core never imports an arch package.
 */

/** An architecture's system-call convention, over its NT_PRSTATUS register buffer. */
export interface SyscallConvention {
  /** Architecture name, for messages ("x86_64"). */
  readonly arch: string;
  /** Bytes of the instruction that enters the kernel (x86-64: 0f 05). */
  readonly syscallInsn: Buffer;
  /** Size of the NT_PRSTATUS register set. */
  readonly regsSize: number;
  /** Numbers of the syscalls the injector itself issues. */
  readonly nr: { readonly mmap: number; readonly munmap: number };
  /** Instruction pointer of a register buffer. */
  getIp(regs: Buffer): bigint;
  /** Set the instruction pointer in a register buffer. */
  setIp(regs: Buffer, ip: bigint): void;
  /**
   * Prepare `regs` (a copy of the task's registers) to enter syscall `nr`
   * with `args` when resumed at a syscall instruction. Also neutralises a
   * pending syscall restart and single-step/direction flags of the saved
   * state, so the kernel does not rewrite the injected registers.
   */
  setSyscall(regs: Buffer, nr: number, args: readonly bigint[]): void;
  /** The syscall's return value after it ran (negative errno on failure). */
  getReturn(regs: Buffer): bigint;
  /**
   * Machine code that, run right after an injected syscall instruction,
   * puts back every register the injection changed and continues the task
   * exactly as `saved` would have (syscall restart included). Lets the
   * injector survive the death of the tracer mid-call.
   */
  resumeCode?(saved: Buffer): Buffer;
}
