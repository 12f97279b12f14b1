/**
 * Records of the task state core owns: the miscellaneous per-task values
 * (117), resource limits (116), rseq (118), seccomp (119, 120), scheduling
 * (121), cgroups (122), the signal
 * state (601–603) and timers (604), as
 * linux-cr's `ckpt_hdr_task_*`, `ckpt_hdr_sighand`, `ckpt_hdr_signal`.
 */
import { defineRecord } from '../codec/record.js';
import { array, bool, bytes, fixed, i32, str, struct, u32, u64 } from '../codec/schema.js';
import { RecordType } from '../codec/types.js';
import { SIGINFO_SIZE } from '../kernel/ptrace.js';

/** Names of the RLIMIT_* resources, by number (include/uapi/asm-generic/resource.h). */
export const RLIMIT_NAMES = [
  'RLIMIT_CPU',
  'RLIMIT_FSIZE',
  'RLIMIT_DATA',
  'RLIMIT_STACK',
  'RLIMIT_CORE',
  'RLIMIT_RSS',
  'RLIMIT_NPROC',
  'RLIMIT_NOFILE',
  'RLIMIT_MEMLOCK',
  'RLIMIT_AS',
  'RLIMIT_LOCKS',
  'RLIMIT_SIGPENDING',
  'RLIMIT_MSGQUEUE',
  'RLIMIT_NICE',
  'RLIMIT_RTPRIO',
  'RLIMIT_RTTIME',
] as const;

/** Per-task values restored by injected prctl & co. at the start of restart. */
export const taskMiscRecord = defineRecord(
  RecordType.TASK_MISC,
  'task_misc',
  'comm, personality, pdeath signal, child subreaper, clear_child_tid, robust list, timer slack, THP and KSM modes, OOM score adjustment',
  {
    /** The name as the kernel holds it (PR_GET_NAME): raw bytes, not necessarily UTF-8. */
    comm: bytes(15),
    personality: u32('hex'),
    /** PR_SET_PDEATHSIG signal, 0 for none. */
    pdeathSignal: u32(),
    /** PR_SET_CHILD_SUBREAPER: orphaned descendants are reparented to this task. */
    childSubreaper: bool(),
    /** set_tid_address(2) pointer. */
    clearChildTid: u64('hex'),
    /** set_robust_list(2) head and length. */
    robustList: u64('hex'),
    robustListLen: u64(),
    timerslackNs: u64(),
    /** PR_SET_THP_DISABLE: no transparent huge pages (the process's; /proc/PID/status THP_enabled 0). */
    thpDisabled: bool(),
    /** PR_SET_MEMORY_MERGE: every mapping offered to KSM (/proc/PID/ksm_stat ksm_merge_any). */
    memoryMerge: bool(),
    /** /proc/PID/oom_score_adj (-1000..1000). */
    oomScoreAdj: i32(),
  },
);

/** One `struct kernel_sigaction` as rt_sigaction(2) exchanges it on x86-64. */
export const sigactionEntry = struct({
  handler: u64('hex'),
  flags: u64('hex'),
  restorer: u64('hex'),
  /** Bit n-1 = signal n. */
  mask: u64('hex'),
});

/** Every signal's action; entry i is signal i+1 (1..nsig, SIGKILL and SIGSTOP included). */
export const sighandRecord = defineRecord(
  RecordType.SIGHAND,
  'sighand',
  'signal actions, signals 1..nsig',
  {
    actions: array(sigactionEntry, 1024),
  },
);

/** The blocked mask and the alternate signal stack. */
export const signalRecord = defineRecord(
  RecordType.SIGNAL,
  'signal',
  'blocked signals, alternate signal stack',
  {
    /** Bit n-1 = signal n. */
    blocked: u64('hex'),
    altstackSp: u64('hex'),
    /** ss_flags as sigaltstack(2) reported them (SS_DISABLE, SS_ONSTACK, SS_AUTODISARM). */
    altstackFlags: u32('hex'),
    altstackSize: u64(),
  },
);

/** Queued signals, oldest first, as raw 128-byte siginfo. */
export const sigpendingRecord = defineRecord(
  RecordType.SIGPENDING,
  'sigpending',
  'pending signals (raw siginfo)',
  {
    /** The thread's own queue. */
    thread: array(fixed(SIGINFO_SIZE), 1 << 18),
    /** The process-wide queue. */
    shared: array(fixed(SIGINFO_SIZE), 1 << 18),
  },
);

/** Soft and hard limit of every RLIMIT_*, in resource-number order. */
export const rlimitsRecord = defineRecord(
  RecordType.RLIMITS,
  'rlimits',
  'resource limits (RLIMIT_CPU..RLIMIT_RTTIME)',
  {
    limits: array(struct({ cur: u64(), max: u64() }), 64),
  },
);

/** The restartable-sequences registration (rseq(2)); `size` 0 for none. */
export const rseqRecord = defineRecord(
  RecordType.RSEQ,
  'rseq',
  'restartable-sequences registration',
  {
    /** Address of the `struct rseq`. */
    abi: u64('hex'),
    size: u32(),
    /** Signature before the abort handlers. */
    signature: u32('hex'),
  },
);

/** A timer's time left until it fires next (0: disarmed) and its period, in ns. */
const timerTimes = { valueNs: u64(), intervalNs: u64() };

/**
 * The process's timers: the three interval timers (setitimer(2): real,
 * virtual, prof; alarm(2) is the real one) and every POSIX timer
 * (timer_create(2)) with the id it had, relative to the checkpoint.
 */
export const timersRecord = defineRecord(RecordType.TIMERS, 'timers', 'interval and POSIX timers', {
  /** ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF. */
  itimers: array(struct(timerTimes), 3),
  posix: array(
    struct({
      id: u32(),
      clockid: u32(),
      /** sigev_notify: SIGEV_SIGNAL 0, SIGEV_NONE 1, SIGEV_THREAD_ID 4 (with SIGEV_SIGNAL). */
      notify: u32(),
      signo: u32(),
      /** sigev_value. */
      value: u64('hex'),
      /** The thread signalled (SIGEV_THREAD_ID), by its thread id at checkpoint. */
      tid: u32(),
      ...timerTimes,
    }),
    1 << 16,
  ),
});

/** A thread's seccomp mode, and its filters (an objref) in filter mode. */
export const seccompRecord = defineRecord(
  RecordType.SECCOMP,
  'seccomp',
  'seccomp mode and filters',
  {
    /** SECCOMP_MODE_DISABLED 0, SECCOMP_MODE_STRICT 1, SECCOMP_MODE_FILTER 2. */
    mode: u32(),
    /** The `seccomp_filters` object of the thread's filters (filter mode), else 0. */
    filters: u32(),
    /**
     * How many of the chain's oldest filters every thread of the process
     * shares: the leader installs them once with SECCOMP_FILTER_FLAG_TSYNC,
     * so the threads share them again (as a later TSYNC by the program
     * requires); each thread installs the rest itself. The same in every
     * thread's record.
     */
    shared: u32(),
  },
);

/** Most filters a chain can hold: the kernel's 32768 instructions in all, with 4 per filter of overhead. */
export const MAX_SECCOMP_FILTERS = 8192;

/** A chain of seccomp filters (the `seccomp_filters` object), oldest first, as installed. */
export const seccompFiltersRecord = defineRecord(
  RecordType.SECCOMP_FILTERS,
  'seccomp_filters',
  'seccomp filters, oldest first (classic BPF)',
  {
    filters: array(
      struct({
        /** SECCOMP_FILTER_FLAG_* the kernel reports (LOG). */
        flags: u32('hex'),
        /** `struct sock_filter` instructions, 8 bytes each (BPF_MAXINSNS 4096). */
        prog: bytes(4096 * 8),
      }),
      MAX_SECCOMP_FILTERS,
    ),
  },
);

/** A thread's scheduling attributes (sched_getattr, sched_getaffinity, ioprio_get). */
export const schedRecord = defineRecord(
  RecordType.SCHED,
  'sched',
  'scheduling policy, nice value, CPU affinity, I/O priority',
  {
    /** SCHED_OTHER 0, FIFO 1, RR 2, BATCH 3, IDLE 5, DEADLINE 6. */
    policy: u32(),
    /** SCHED_FLAG_RESET_ON_FORK, the one flag that is state. */
    flags: u64('hex'),
    nice: i32(),
    /** Real-time priority (SCHED_FIFO, SCHED_RR). */
    priority: u32(),
    /** SCHED_DEADLINE runtime, deadline and period, in ns. */
    runtime: u64(),
    deadline: u64(),
    period: u64(),
    /** CPU mask, bit n = CPU n, as sched_getaffinity gives it. */
    affinity: bytes(1024),
    /** ioprio_get: class << 13 | level; class 0 (none) follows the nice value. */
    ioprio: u32('hex'),
  },
);

/** A process's cgroups, as /proc/PID/cgroup lists them (one per hierarchy). */
export const cgroupsRecord = defineRecord(
  RecordType.CGROUPS,
  'cgroups',
  "the process's cgroup in each hierarchy",
  {
    entries: array(
      struct({
        /** Hierarchy id; 0 is the cgroup2 (unified) one. */
        hierarchy: u32(),
        /** The v1 hierarchy's controllers ("cpu,cpuacct", "name=systemd"); empty for cgroup2. */
        controllers: str(256),
        /** Path from the hierarchy's root, as ckpt's cgroup namespace sees it. */
        path: str(4096),
      }),
      64,
    ),
  },
);
