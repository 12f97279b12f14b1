/**
 * Record type numbers, in the ranges of linux-cr's `checkpoint_hdr.h`.
 * Each subsystem owns a range; numbers are never reused once published.
 */
export const RecordType = {
  // 1-8: framing and generic payloads
  HEADER: 1,
  HEADER_ARCH: 2,
  CONTAINER: 3,
  BUFFER: 4,
  STRING: 5,
  OBJREF: 6,

  // 101+: tree, task, namespaces, credentials
  TREE: 101,
  TASK: 102,
  TASK_OBJS: 103,
  RESTART_BLOCK: 104,
  THREAD: 105,
  CPU: 106,
  NS: 107,
  UTS_NS: 108,
  IPC_NS: 109,
  PID_NS: 110,
  CAPABILITIES: 111,
  USER_NS: 112,
  CRED: 113,
  GROUPINFO: 114,
  TASK_CREDS: 115,
  RLIMITS: 116,
  TASK_MISC: 117,
  RSEQ: 118,
  SECCOMP: 119,
  SECCOMP_FILTERS: 120,
  SCHED: 121,
  CGROUPS: 122,
  NET_NS: 123,
  MOUNTS: 124,
  MOUNT: 125,
  MOUNT_FILE: 126,
  MOUNT_FILE_DATA: 127,
  CGROUP_NS: 128,

  // 201-299: reserved for arch-dependent records

  // 301+: files
  FILE_TABLE: 301,
  FILE_DESC: 302,
  FILE_NAME: 303,
  FILE: 304,
  PIPE_BUF: 305,

  // 401+: memory
  MM: 401,
  VMA: 402,
  PGARR: 403,
  MM_CONTEXT: 404,

  // 451: fs (cwd, root, umask)
  FS: 451,

  // 501+: SysV IPC
  IPC: 501,
  IPC_SHM: 502,
  IPC_MSG: 503,
  IPC_MSG_MSG: 504,
  IPC_SEM: 505,

  // 601+: signals
  SIGHAND: 601,
  SIGNAL: 602,
  SIGPENDING: 603,
  TIMERS: 604,

  TAIL: 9001,
  ERROR: 9999,
} as const;

/** Range of record types reserved for architecture packages. */
export const ARCH_RECORD_RANGE = { first: 201, last: 299 } as const;

/** Range of record types for third-party plugins. */
export const PLUGIN_RECORD_RANGE = { first: 7001, last: 8999 } as const;

/** Architecture identifiers stored in the image header. */
export const ArchId = {
  X86_64: 1,
  X86_32: 2,
  S390X: 3,
} as const;

/** Printable names of {@link ArchId} values. */
export const ARCH_NAMES: Record<number, string> = {
  [ArchId.X86_64]: 'x86_64',
  [ArchId.X86_32]: 'i386',
  [ArchId.S390X]: 's390x',
};
