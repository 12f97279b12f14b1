/**
 * What phases and handlers see of a task and of the objects they handle.
 * The engine implements these interfaces over ptrace; subsystems use only
 * them, never ptrace directly, so the engine can batch and undo its work.
 */
import type { ArchSupport, SyscallName } from './arch.js';
import type { MapsEntry, OpenFile, ProcStat, ProcStatus, SmapsFlagsEntry } from './proc/index.js';

/** An argument of a batched call that is the result of an earlier call of the batch (its index). */
export interface ResultOf {
  readonly result: number;
}

/** An argument of a posted call: the address its data part i gets when it runs, plus `offset`. */
export interface DataOf {
  readonly data: number;
  readonly offset?: number;
}

/** One call of a batch: `name(args)`. */
export interface SyscallRequest {
  readonly name: SyscallName;
  /**
   * Values, or `{ result: i }`: the result of call i of the same batch (an
   * earlier one); in posted calls also `{ data: i }` (see `post`).
   */
  readonly args: readonly (bigint | number | ResultOf | DataOf)[];
  /**
   * Addresses in the scratch area where the result is also written (8
   * bytes) before the next call runs, e.g. an fd into a struct a later call
   * reads. A result goes to at most two places: these and the arguments
   * that take it.
   */
  readonly resultTo?: readonly bigint[];
}

/** What goes with posted calls (see `TaskSyscalls.post`). */
export interface PostOptions {
  /** Copied into the task when the calls run; `{ data: i }` is the address of part i. */
  readonly data?: readonly Buffer[];
  /**
   * Gets the calls' results once they ran, and with `readBack` the data
   * parts as the calls left them (what they wrote there).
   */
  readonly done?: (results: readonly bigint[], data: readonly Buffer[]) => void;
  /** Read the data parts back after the calls ran, for `done` (calls that fill structs). */
  readonly readBack?: boolean;
}

/** System calls run inside a stopped task (syscall injection). */
export interface TaskSyscalls {
  /** Run `name(args)` in the task; returns the raw result (negative errno on failure). */
  call(name: SyscallName, args?: readonly (bigint | number)[]): bigint;
  /** Like {@link call}, but a failure throws an ESYS `CkptError` naming `what` and the pid. */
  check(name: SyscallName, args: readonly (bigint | number)[], what: string): bigint;
  /**
   * Run several calls in order with as few round trips into the task as
   * possible (one per few dozen calls, where the arch allows); returns the
   * raw results. Every call runs, even after one failed: check the
   * results in order. A call can take an earlier call's result as an
   * argument (open, then map and close what it opened, in one round trip);
   * it then runs with whatever that call returned, an error included.
   */
  batch(calls: readonly SyscallRequest[]): bigint[];
  /**
   * Like {@link batch}, but the first failed call throws an ESYS
   * `CkptError` naming its `what` (after all of them ran).
   */
  checkBatch(calls: readonly (SyscallRequest & { readonly what: string })[]): bigint[];
  /**
   * Queue calls whose results nothing needs right away: they run with the
   * task's next injected call (in its round trip), or when injection ends.
   * `options.data` is copied into the task when they run, `{ data: i }`
   * in an argument is its address; `options.done` gets their results (and
   * may throw, from the call that ran them). Nothing outside the task's own
   * injected calls sees their effect before they run.
   */
  post(calls: readonly SyscallRequest[], options?: PostOptions): void;
  /**
   * Like {@link post}, but the first failed call throws (when they run)
   * the ESYS `CkptError` {@link checkBatch} would have.
   */
  postChecked(
    calls: readonly (SyscallRequest & { readonly what: string })[],
    options?: PostOptions,
  ): void;
  /**
   * Address of a writable scratch area of at least `size` bytes inside the
   * task, to pass structs and strings to injected calls. Valid until the
   * next call of `scratch` with a larger size.
   */
  scratch(size: number): bigint;
  /**
   * Run the posted calls and `calls` in the background: the task is resumed
   * into them now and `done` gets their results later, when anything next
   * needs the task stopped (any other method here but {@link post}, its
   * memory or pid through the task object, or {@link settle}). ckpt does
   * other work meanwhile, e.g. restores the next task. `done` may throw;
   * it throws from whatever settled it.
   */
  launch(calls: readonly SyscallRequest[], done: (results: bigint[]) => void): void;
  /** Wait for what {@link launch} started, if anything, and run its `done`. */
  settle(): void;
  /**
   * Run `fn` with the task's pid once the task is stopped: now, or when a
   * launched round trip is settled (before the task runs anything else).
   * For ptrace-level steps (registers, the signal mask) that need not
   * happen sooner; asking the task object for its pid would settle at once.
   */
  whenStopped(fn: (pid: number) => void): void;
}

/** Another task's memory, reachable at any address (ptrace-level access). */
export interface TaskMemory {
  read(addr: bigint, length: number): Buffer;
  /** Read into `into` (its whole length). */
  readInto(addr: bigint, into: Buffer): void;
  /**
   * Read `ranges`, in order, into `into` (their total length), with as few
   * system calls as the memory allows; optional (readInto per range else).
   */
  readRangesInto?(ranges: readonly { addr: bigint; length: number }[], into: Buffer): void;
  /** Write, even into read-only pages. */
  write(addr: bigint, data: Buffer): void;
  /**
   * Write each of `writes` (even into read-only pages), with as few system
   * calls as the memory allows; optional (`write` per entry else).
   */
  writeEach?(writes: readonly { addr: bigint; data: Buffer }[]): void;
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
  /** /proc/PID/maps as read when the task was frozen, before ckpt mapped anything in it. */
  readonly maps: readonly MapsEntry[];
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

/** A memory region of a checkpointed task, with its flags from /proc/PID/smaps. */
export type VmaInfo = SmapsFlagsEntry;

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
  /** madvise and mlock state (the `madv` bits of @ckpt/mm's vma record). */
  madv: number;
  /** Mapped file, if any. */
  path: string;
  /** Id of the `VmaHandler` that restores it. */
  kind: number;
  /** Pages of contents that follow in the image. */
  nrPages: number;
}
