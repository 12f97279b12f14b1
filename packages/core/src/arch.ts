/**
 * What core needs from an architecture package. An arch plugin provides one
 * `ArchSupport` (see `CkptPlugin.arch`); the engine picks the one matching
 * the machine it runs on, and refuses images of another arch up front.
 */
import type { SyscallConvention } from './kernel/convention.js';

/**
 * The system calls subsystems run inside tasks, by name; each arch maps
 * them to its numbers.
 */
export type SyscallName =
  | 'read'
  | 'write'
  | 'close'
  | 'close_range'
  | 'lseek'
  | 'brk'
  | 'mmap'
  | 'mprotect'
  | 'munmap'
  | 'mremap'
  | 'madvise'
  | 'mlock'
  | 'mlock2'
  | 'mseal'
  | 'shmat'
  | 'openat'
  | 'mq_open'
  | 'dup3'
  | 'fcntl'
  | 'ioctl'
  | 'chdir'
  | 'fchdir'
  | 'chroot'
  | 'umask'
  | 'getpid'
  | 'kill'
  | 'setpgid'
  | 'getpgid'
  | 'setsid'
  | 'getsid'
  | 'setgroups'
  | 'setresuid'
  | 'setresgid'
  | 'setfsuid'
  | 'setfsgid'
  | 'capget'
  | 'capset'
  | 'prctl'
  | 'arch_prctl'
  | 'personality'
  | 'rt_sigaction'
  | 'rt_sigprocmask'
  | 'sigaltstack'
  | 'rt_sigqueueinfo'
  | 'rt_tgsigqueueinfo'
  | 'set_tid_address'
  | 'set_robust_list'
  | 'get_robust_list'
  | 'prlimit64'
  | 'pidfd_open'
  | 'pidfd_getfd'
  | 'pipe2'
  | 'clone3'
  | 'wait4'
  | 'setns'
  | 'unshare'
  | 'exit_group'
  | 'uname'
  | 'sethostname'
  | 'setdomainname'
  | 'mount'
  | 'rseq'
  | 'eventfd2'
  | 'epoll_create1'
  | 'epoll_ctl'
  | 'signalfd4'
  | 'inotify_init1'
  | 'inotify_add_watch'
  | 'inotify_rm_watch'
  | 'timerfd_create'
  | 'timerfd_settime'
  | 'socket'
  | 'bind'
  | 'connect'
  | 'listen'
  | 'accept4'
  | 'setsockopt'
  | 'socketpair'
  | 'userfaultfd'
  | 'flock'
  | 'getitimer'
  | 'setitimer'
  | 'timer_create'
  | 'timer_settime'
  | 'timer_gettime'
  | 'seccomp';

/** Arch header values of an image. */
export interface ArchHeader {
  /** Arch-defined feature mask (XCR0 on x86). */
  features: bigint;
  /** Arch-defined size of the extended register area. */
  xstateSize: number;
  data: Buffer;
}

/**
 * A tiny static executable that only waits (a `pause()` loop). Restart
 * spawns it and clones every restored task out of it, so each new task
 * starts from a known, minimal address space.
 */
export interface StubProgram {
  /** The ELF file image. */
  elf: Buffer;
  /** Address of a syscall instruction inside it. */
  syscallAddr: bigint;
  /** A writable area inside it for syscall arguments. */
  scratchAddr: bigint;
  scratchSize: number;
  /**
   * Offset in `elf` of a 32-bit little-endian field the engine sets to its
   * own pid before it writes the file: a stub that dies with its parent
   * (PR_SET_PDEATHSIG) checks there that its parent did not die before.
   */
  parentPidOffset?: number;
}

/** An architecture as the engine sees it. */
export interface ArchSupport {
  /** `ArchId` value stored in image headers. */
  readonly archId: number;
  /** `os.machine()` name, e.g. `x86_64`. */
  readonly machine: string;
  /** Number of signals (`_NSIG`), saved in the header. */
  readonly nsig: number;
  readonly convention: SyscallConvention;
  readonly syscalls: Readonly<Record<SyscallName, number>>;
  /** The arch header of an image taken on this machine; `pid` is any task ckpt holds stopped. */
  headerArch(pid: number): ArchHeader;
  /**
   * Throw a clear error when this machine cannot restore an image with
   * arch header `h`; `pid` is any task ckpt holds stopped (for CPU probes).
   */
  checkHeaderArch(h: ArchHeader, pid: number): void;
  readonly stub: StubProgram;
  /**
   * Human lines for one of this arch's CPU records (`ckpt info --regs`):
   * registers by name. Undefined for records it does not describe.
   */
  formatCpu?(recordType: number, value: unknown): string[] | undefined;
}
