/**
 * What phases and handlers see of a task and of the objects they handle.
 * The engine implements these interfaces over ptrace; subsystems use only
 * them, never ptrace directly, so the engine can batch and undo its work.
 */
import type { ArchSupport, SyscallName } from './arch.js';
import type { OpenFile, ProcStat, ProcStatus, SmapsEntry } from './proc/index.js';

/** System calls run inside a stopped task (syscall injection). */
export interface TaskSyscalls {
  /** Run `name(args)` in the task; returns the raw result (negative errno on failure). */
  call(name: SyscallName, args?: readonly (bigint | number)[]): bigint;
  /** Like {@link call}, but a failure throws an ESYS `CkptError` naming `what` and the pid. */
  check(name: SyscallName, args: readonly (bigint | number)[], what: string): bigint;
  /**
   * Address of a writable scratch area of at least `size` bytes inside the
   * task, to pass structs and strings to injected calls. Valid until the
   * next call of `scratch` with a larger size.
   */
  scratch(size: number): bigint;
}

/** Another task's memory, reachable at any address (ptrace-level access). */
export interface TaskMemory {
  read(addr: bigint, length: number): Buffer;
  /** Read into `into` (its whole length). */
  readInto(addr: bigint, into: Buffer): void;
  /** Write, even into read-only pages. */
  write(addr: bigint, data: Buffer): void;
}

/** A task being checkpointed (frozen under ptrace). */
export interface CheckpointTask {
  /** Pid in the checkpointer's pid namespace. */
  readonly pid: number;
  /** Scratch space shared between this task's phases, keyed by phase name. */
  readonly data: Map<string, unknown>;
  readonly arch: ArchSupport;
  /** General registers (NT_PRSTATUS) as they were when the task was frozen. */
  readonly regs: Buffer;
  readonly stat: ProcStat;
  readonly status: ProcStatus;
  readonly sys: TaskSyscalls;
  readonly mem: TaskMemory;
  /**
   * Address ranges ckpt itself created in the task (the injection scratch
   * area): not part of the task's state, skipped when saving memory.
   */
  readonly ownMappings: readonly { start: bigint; end: bigint }[];
}

/** A task being restored. */
export interface RestartTask {
  /** Pid of the task as recreated, in the restarter's pid namespace. */
  readonly pid: number;
  /** Pid the task had at checkpoint. */
  readonly savedPid: number;
  /** Scratch space shared between this task's phases, keyed by phase name. */
  readonly data: Map<string, unknown>;
  readonly arch: ArchSupport;
  readonly sys: TaskSyscalls;
  readonly mem: TaskMemory;
  /**
   * The pages ckpt uses to run syscalls in the task. The address space
   * restore must leave them alone; the engine removes them last.
   */
  readonly restorer: { start: bigint; end: bigint };
  /**
   * An fd, in the task, of a pidfd for the ckpt process itself (inherited
   * from the restore stub), so that the task can copy any fd ckpt holds
   * with pidfd_getfd, whatever pid namespace it is in (see
   * `copyFdFromCkpt`). The engine closes it last; a subsystem that needs
   * this fd number moves it and updates the field.
   */
  ckptPidfd: number;
  /**
   * Clone flags of what the task shares with its parent (`CLONE_FILES`,
   * `CLONE_FS`): it was created sharing them, and the parent, restored
   * first, has set them up; a phase leaves a shared structure alone.
   */
  readonly sharesWithParent: number;
  /**
   * Move the restorer pages out of `ranges` (the address space about to be
   * rebuilt) if they overlap; the memory subsystem calls this first.
   */
  keepRestorerClear(ranges: readonly { start: bigint; end: bigint }[]): void;
  /**
   * General registers the task resumes with, set by the arch's CPU phase;
   * the engine loads them after everything else.
   */
  finalRegs: Buffer | undefined;
  /**
   * Blocked-signal mask the task resumes with, set by the signals phase.
   * Every signal stays blocked while the task is restored (a delivered
   * signal would break syscall injection); the engine applies this last.
   */
  finalSigmask: bigint | undefined;
}

/** An open file descriptor of a checkpointed task, as /proc shows it. */
export interface FileInfo extends OpenFile {
  /** The task that holds the fd. */
  readonly pid: number;
}

/** A memory region of a checkpointed task, as /proc/PID/smaps shows it. */
export type VmaInfo = SmapsEntry;

/** A memory region as the image describes it (the memory subsystem's VMA record). */
export interface SavedVma {
  start: bigint;
  end: bigint;
  /** PROT_* bits. */
  prot: number;
  /** MAP_* bits (MAP_SHARED or MAP_PRIVATE, MAP_GROWSDOWN, …). */
  flags: number;
  /** Offset in the mapped file. */
  pgoff: bigint;
  /** madvise state (`MadvBits` of @ckpt/mm: dontfork, dontdump, …). */
  madv: number;
  /** Mapped file, if any. */
  path: string;
  /** Id of the `VmaHandler` that restores it. */
  kind: number;
  /** Pages of contents that follow in the image. */
  nrPages: number;
}
