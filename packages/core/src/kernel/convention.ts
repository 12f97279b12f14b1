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
  /**
   * One syscall (set up in the registers, run from the stub's start) then
   * the marker signal, as in {@link batchCode}, writing no memory (it runs
   * from read-only code), then `tail` (the resume code). `end`: offset
   * right after the marker's syscall; `result`: the call's result, from the
   * registers at the marker's stop.
   */
  markerStub?: {
    code(marker: Marker, tail: Buffer): Buffer;
    end: number;
    result(regs: Buffer): bigint;
  };
  /**
   * Whether the task stopped inside a syscall that parked its blocked mask
   * for the kernel to put back when it returns (sigsuspend, ppoll,
   * pselect, epoll_pwait, io_pgetevents): until it first runs, the mask
   * ptrace shows is the temporary one.
   */
  parksSigmask?(regs: Buffer): boolean;
  /**
   * Machine code, placed at `at`, that runs a table of syscalls one after
   * another and then stops for the tracer by sending the task
   * `marker.signal` (tgkill to `marker.tgid`, `marker.pid`: the task's own
   * ids as it sees them): one round trip for many calls. The word at `cursor` holds the
   * address of the first entry; an entry is {@link BATCH_ENTRY_SIZE} bytes,
   * ten words: go (zero ends the table), the syscall number (replaced by
   * the result), six arguments, and two addresses the result is also
   * written to. After the signal comes `tail` when given (the resume code,
   * see {@link resumeCode}), else a faulting instruction. The code must change no flags and only the registers the
   * resume code restores.
   */
  batchCode?(at: bigint, cursor: bigint, marker: Marker, tail?: Buffer): Buffer;
}

/**
 * The signal that ends a batch of injected calls, and whom it is sent to:
 * `tgkill(tgid, pid, signal)`, the task's thread-group id and its own id
 * (the same for a single-threaded process; a thread of a multi-threaded
 * one must name its group, or tgkill fails).
 */
export interface Marker {
  readonly tgid: number;
  readonly pid: number;
  readonly signal: number;
}

/** Size of one entry of a syscall batch table (see `SyscallConvention.batchCode`). */
export const BATCH_ENTRY_SIZE = 80;
