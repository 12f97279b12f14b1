/** The namespace subsystem's records (107–110, as linux-cr's). */
import {
  array,
  bool,
  bytes,
  defineRecord,
  i32,
  RecordType,
  str,
  struct,
  u32,
  u64,
} from '@ckpt/core';

/** __NEW_UTS_LEN + 1: the size of each field of struct new_utsname. */
export const UTS_FIELD_LEN = 65;

/** The namespaces of one task, by objref (linux-cr's `ckpt_hdr_ns`, after the task record). */
export const taskNsRecord = defineRecord(RecordType.NS, 'ns', "a task's namespaces", {
  /** Objref of its uts namespace. */
  uts: u32(),
  /** Objref of its ipc namespace. */
  ipc: u32(),
  /** Objref of its network namespace. */
  net: u32(),
  /** Objref of its cgroup namespace. */
  cgroup: u32(),
});

/** A uts namespace: every field of uname(2) as seen inside it. */
export const utsNsRecord = defineRecord(RecordType.UTS_NS, 'uts_ns', 'uts namespace', {
  /** It was ckpt's own namespace (the host's, for a subtree): restart leaves restart's own as it is. */
  host: bool(),
  sysname: str(UTS_FIELD_LEN),
  nodename: str(UTS_FIELD_LEN),
  release: str(UTS_FIELD_LEN),
  version: str(UTS_FIELD_LEN),
  machine: str(UTS_FIELD_LEN),
  domainname: str(UTS_FIELD_LEN),
});

/**
 * An ipc namespace's settings (linux-cr's `ckpt_hdr_ipc`, plus the ids and
 * POSIX message queue limits): its sysctls, as read inside it. Its SysV
 * objects are records of @ckpt/ipc.
 */
export const ipcNsRecord = defineRecord(RecordType.IPC_NS, 'ipc_ns', 'ipc namespace sysctls', {
  /** It was ckpt's own namespace (the host's, for a subtree): restart leaves restart's own as it is. */
  host: bool(),
  /** kernel.shmmax */
  shmmax: u64(),
  /** kernel.shmall */
  shmall: u64(),
  /** kernel.shmmni */
  shmmni: i32(),
  /** kernel.shm_rmid_forced */
  shmRmidForced: i32(),
  /** kernel.msgmax */
  msgmax: i32(),
  /** kernel.msgmnb */
  msgmnb: i32(),
  /** kernel.msgmni */
  msgmni: i32(),
  /** kernel.sem, 1st value */
  semmsl: i32(),
  /** kernel.sem, 2nd value */
  semmns: i32(),
  /** kernel.sem, 3rd value */
  semopm: i32(),
  /** kernel.sem, 4th value */
  semmni: i32(),
  /** kernel.msg_next_id (-1: not set) */
  msgNextId: i32(),
  /** kernel.sem_next_id (-1: not set) */
  semNextId: i32(),
  /** kernel.shm_next_id (-1: not set) */
  shmNextId: i32(),
  /** fs.mqueue.queues_max */
  mqQueuesMax: i32(),
  /** fs.mqueue.msg_max */
  mqMsgMax: i32(),
  /** fs.mqueue.msgsize_max */
  mqMsgsizeMax: i32(),
  /** fs.mqueue.msg_default */
  mqMsgDefault: i32(),
  /** fs.mqueue.msgsize_default */
  mqMsgsizeDefault: i32(),
  /** Sysctls this kernel lacked at checkpoint (e.g. `kernel.msg_next_id`); their fields are 0. */
  missing: array(str(64), 32),
});

/** A container's pid namespace: its pid counter (kernel.ns_last_pid; 0: unknown). */
export const pidNsRecord = defineRecord(RecordType.PID_NS, 'pid_ns', 'pid namespace counter', {
  lastPid: u32(),
});

/**
 * A network namespace. Only one of the tree's own with nothing but its
 * loopback interface is saved (anything more is refused at checkpoint).
 */
export const netNsRecord = defineRecord(RecordType.NET_NS, 'net_ns', 'network namespace', {
  /** It was ckpt's own namespace: restart puts the task in restart's, which it leaves as it is. */
  host: bool(),
  /** `lo` was up (with its addresses, 127.0.0.1/8 and ::1, which the kernel gives it). */
  loopbackUp: bool(),
});

/** How restart makes a container's mount again (`mount` record's `kind`). */
export const MountKind = {
  /** A tmpfs: mounted anew, then filled with its saved files (`mount_file` records). */
  TMPFS: 1,
  /** A bind mount of `source`, a path as the container saw it (the host's, or a mount before it). */
  BIND: 2,
  /** A new instance of a filesystem with no files of its own to save (proc, sysfs, mqueue). */
  NEW: 3,
} as const;

/**
 * The mounts a container made in its mount namespace (those restart's
 * copy of its own lacks), written with its root task: `count` `mount`
 * records follow, in the order they were mounted.
 */
export const mountsRecord = defineRecord(RecordType.MOUNTS, 'mounts', "a container's own mounts", {
  count: u32(),
});

/** One mount a container made. */
export const mountRecord = defineRecord(RecordType.MOUNT, 'mount', "a container's mount", {
  /** MountKind: TMPFS, BIND or NEW. */
  kind: u32(),
  /** Where it is mounted, as the container sees it. */
  point: str(4096),
  fstype: str(64),
  /** The mount source: "tmpfs", "none", or for a bind mount the path it binds. */
  source: str(4096),
  /** The filesystem's options, as mount(2)'s data ("size=1024k,mode=755"); empty for a bind mount. */
  data: str(4096),
  /** Per-mount flags (MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, atime flags). */
  flags: u32('hex'),
  /** The filesystem itself is read-only (a tmpfs mounted `ro`: filled first, then made so). */
  readOnly: bool(),
  /** What is mounted is a directory (a bind mount may mount a file on a file). */
  dir: bool(),
  /** `mount_file` records that follow: a tmpfs's files, its root first. */
  files: u32(),
  /** Bytes the files have allocated: about the data of their `mount_file_data` records (for progress). */
  dataBytes: u64(),
});

/**
 * A file of a container's tmpfs: its path under the mount point, type and
 * permissions, owner, times, and for a regular file `chunks`
 * `mount_file_data` records of its data (holes are not saved). Sockets are
 * not saved (a listener binds its own again).
 */
export const mountFileRecord = defineRecord(
  RecordType.MOUNT_FILE,
  'mount_file',
  'a file on a tmpfs',
  {
    /** Relative to the mount point; "" for its root directory. */
    path: str(4096),
    /** st_mode: the type (S_IFDIR, S_IFREG, S_IFLNK, S_IFIFO, S_IFCHR, S_IFBLK) and permission bits. */
    mode: u32('octal'),
    uid: u32(),
    gid: u32(),
    /** A device node's device number (st_rdev). */
    rdev: u64('hex'),
    atimeNs: u64(),
    mtimeNs: u64(),
    size: u64(),
    chunks: u32(),
    /** A symbolic link's target. */
    target: str(4096),
    /** Another name of an earlier file (a hard link): its 1-based index among the mount's files; 0 if none. */
    linkTo: u32(),
  },
);

/** Part of a tmpfs file's data: at most 4 MiB at `offset`. */
export const mountFileDataRecord = defineRecord(
  RecordType.MOUNT_FILE_DATA,
  'mount_file_data',
  'tmpfs file data',
  {
    offset: u64('hex'),
    data: bytes(4 << 20),
  },
);

/**
 * A cgroup namespace: the cgroup it is rooted at in each hierarchy (where
 * the task that made it was then), as ckpt's cgroup namespace names them.
 */
export const cgroupNsRecord = defineRecord(RecordType.CGROUP_NS, 'cgroup_ns', 'cgroup namespace', {
  /** It was ckpt's own namespace: restart leaves the task in restart's. */
  host: bool(),
  roots: array(
    struct({
      /** Hierarchy id at checkpoint; 0 is the cgroup2 (unified) one. */
      hierarchy: u32(),
      /** The v1 hierarchy's controllers; empty for cgroup2. */
      controllers: str(256),
      /** The namespace's root cgroup in that hierarchy. */
      path: str(4096),
    }),
    64,
  ),
});
