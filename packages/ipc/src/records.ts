/**
 * The SysV IPC records (linux-cr's 501–505: `ckpt_hdr_ipc`,
 * `ckpt_hdr_ipc_shm`, `ckpt_hdr_ipc_msg`, `ckpt_hdr_ipc_msg_msg`,
 * `ckpt_hdr_ipc_sem`), plus the per-task reference (506).
 */
import {
  array,
  bool,
  bytes,
  defineRecord,
  i32,
  RecordType,
  type RecordValue,
  str,
  struct,
  u32,
  u64,
} from '@ckpt/core';

/** Record type of a task's reference to its namespace's SysV objects (next after IPC_SEM). */
export const IPC_TASK = 506;

/** The ipc_perm fields every object record starts with. */
const perm = {
  /** Its key (0: IPC_PRIVATE, or a segment marked for removal). */
  key: i32(),
  /** Its id at checkpoint, which restart gives it again. */
  id: i32(),
  uid: u32(),
  gid: u32(),
  /** Creator's ids (not restorable: the creator is ckpt restart). */
  cuid: u32(),
  cgid: u32(),
  /** Permission bits and state flags (shm: 0o1000 SHM_DEST, 0o2000 SHM_LOCKED). */
  mode: u32('octal'),
};

/** Which object holds a task's ipc namespace's SysV objects (0: none saved, the host's namespace). */
export const ipcTaskRecord = defineRecord(IPC_TASK, 'ipc_task', "a task's SysV IPC objects", {
  /** Objref of the `sysvipc` object of its ipc namespace; 0 for the host's. */
  objref: u32(),
});

/** The SysV objects of one ipc namespace: how many of each kind follow, in this order. */
export const ipcRecord = defineRecord(RecordType.IPC, 'ipc', 'SysV IPC objects of a namespace', {
  /** Its nsfs inode at checkpoint (for messages). */
  nsInode: u64(),
  nshm: u32(),
  nmsg: u32(),
  nsem: u32(),
});

/**
 * A shared memory segment; its data follows in `nrPages` pages of `pgarr`
 * + `buffer` chunks whose addresses are byte offsets in the segment.
 */
export const ipcShmRecord = defineRecord(RecordType.IPC_SHM, 'ipc_shm', 'SysV shared memory', {
  ...perm,
  /** Size in bytes (shm_segsz). */
  size: u64(),
  /** The segment's objref, by which the VMA records of its attachments name it. */
  objref: u32(),
  nrPages: u32(),
});

/** A message queue; its `qnum` messages follow, oldest first. */
export const ipcMsgRecord = defineRecord(RecordType.IPC_MSG, 'ipc_msg', 'SysV message queue', {
  ...perm,
  /** Its byte limit (msg_qbytes). */
  qbytes: u64(),
  qnum: u32(),
});

/** One queued message. */
export const ipcMsgMsgRecord = defineRecord(RecordType.IPC_MSG_MSG, 'ipc_msg_msg', 'SysV message', {
  mtype: u64(),
  text: bytes(1 << 24),
});

/** A semaphore set with every semaphore's value. */
export const ipcSemRecord = defineRecord(RecordType.IPC_SEM, 'ipc_sem', 'SysV semaphore set', {
  ...perm,
  values: array(u32(), 1 << 16),
});

export type IpcShmRecord = RecordValue<typeof ipcShmRecord>;
export type IpcMsgRecord = RecordValue<typeof ipcMsgRecord>;
export type IpcSemRecord = RecordValue<typeof ipcSemRecord>;

/** Record type of a POSIX message queue (after the SysV ones). */
export const MQUEUE = 507;
/** Record type of an open POSIX message queue. */
export const FILE_MQUEUE = 508;

/**
 * A POSIX message queue (mq_open): its name in its ipc namespace, owner,
 * mode and limits, and, for a queue of a namespace the tree owns (a
 * container's), its messages in the order receivers get them.
 */
export const mqueueRecord = defineRecord(MQUEUE, 'mqueue', 'POSIX message queue', {
  /** "/name" at checkpoint. */
  name: str(256),
  /** Unlinked while open: restart makes it under a name of its own and removes that. */
  deleted: bool(),
  /** In the host's ipc namespace: it outlives the tree here, its messages are not saved. */
  host: bool(),
  uid: u32(),
  gid: u32(),
  mode: u32('octal'),
  maxmsg: u32(),
  msgsize: u32(),
  /** The messages (none for a host queue). */
  messages: array(struct({ priority: u32(), data: bytes(1 << 24) }), 1 << 16),
});

/** Record type of the POSIX message queues of an ipc namespace. */
export const IPC_MQUEUES = 509;

/**
 * Every POSIX message queue of an ipc namespace the tree owns (a
 * container's), by objref of its `mqueue` object (written just before),
 * also those no process has open. Last of the namespace's `sysvipc` object.
 */
export const ipcMqueuesRecord = defineRecord(
  IPC_MQUEUES,
  'ipc_mqueues',
  'POSIX message queues of a namespace',
  {
    queues: array(u32(), 1 << 16),
  },
);

/** An fd on a POSIX message queue (objref of its `mqueue` object) and its flags. */
export const fileMqueueRecord = defineRecord(FILE_MQUEUE, 'file_mqueue', 'open message queue', {
  queue: u32(),
  /** Access mode and O_NONBLOCK. */
  flags: u32('octal'),
});
