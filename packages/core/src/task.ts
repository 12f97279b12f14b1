/**
 * What phases and handlers see of a task and of the objects they handle.
 * These shapes grow as subsystems land; each field documents its source.
 */

/** A task being checkpointed (frozen under ptrace). */
export interface CheckpointTask {
  /** Pid in the checkpointer's pid namespace. */
  readonly pid: number;
  /** Scratch space shared between this task's phases, keyed by phase name. */
  readonly data: Map<string, unknown>;
}

/** A task being restored. */
export interface RestartTask {
  /** Pid of the task as recreated, in the restarter's pid namespace. */
  readonly pid: number;
  /** Pid the task had at checkpoint. */
  readonly savedPid: number;
  /** Scratch space shared between this task's phases, keyed by phase name. */
  readonly data: Map<string, unknown>;
}

/** An open file descriptor of a checkpointed task, as /proc shows it. */
export interface FileInfo {
  readonly pid: number;
  readonly fd: number;
  /** readlink of /proc/PID/fd/FD: a path, `pipe:[ino]`, `anon_inode:[eventfd]`, … */
  readonly target: string;
  /** `flags` of /proc/PID/fdinfo/FD (open flags, O_CLOEXEC included). */
  readonly flags: number;
  /** File position. */
  readonly pos: bigint;
  /** st_mode of the open file (type and permission bits). */
  readonly mode: number;
  readonly dev: bigint;
  readonly ino: bigint;
}

/** A memory region of a checkpointed task, as /proc/PID/maps and smaps show it. */
export interface VmaInfo {
  readonly start: bigint;
  readonly end: bigint;
  /** `rwxp` / `rw-s` as in maps. */
  readonly perms: string;
  readonly offset: bigint;
  readonly inode: bigint;
  /** Mapped path or pseudo-name (`[heap]`, `[vdso]`), empty for anonymous memory. */
  readonly path: string;
  /** Two-letter VmFlags of smaps (`gd`, `sh`, …). */
  readonly vmFlags: ReadonlySet<string>;
}
