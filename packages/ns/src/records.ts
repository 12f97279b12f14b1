/** The namespace subsystem's records (107–110, as linux-cr's). */
import { array, bool, defineRecord, i32, RecordType, str, u32, u64 } from '@ckpt/core';

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
