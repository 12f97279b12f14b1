/**
 * SysV IPC from ckpt's own thread: listing the objects of the ipc namespace
 * the calling thread is in (/proc/sysvipc reads the reader's namespace),
 * attaching segments, peeking at queued messages without taking them
 * (MSG_COPY), reading and setting semaphore values, and creating objects
 * with a chosen id (the namespace's `*_next_id` sysctl, the userspace form of
 * the seed's "allocation of a desired ipc identifier").
 *
 * Callers move the thread into the task's ipc namespace first (see
 * `inNamespace`). The struct layouts are those of the 64-bit ABIs
 * (asm-generic `ipc64_perm`, `msqid64_ds`), which x86-64 uses.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { CkptError } from '../errors.js';
import { errno, libc, sysError } from './libc.js';

/** The three kinds of SysV IPC object, as /proc/sysvipc and the sysctls name them. */
export type SysvIpcKind = 'shm' | 'msg' | 'sem';

/** Permissions of an object (`struct ipc64_perm`). */
export interface IpcPerm {
  /** Its key (0: IPC_PRIVATE, or a segment marked for removal). */
  key: number;
  /** Its id (index and sequence number). */
  id: number;
  uid: number;
  gid: number;
  /** Creator's ids: set by the kernel at creation, never by IPC_SET. */
  cuid: number;
  cgid: number;
  /** Permission bits, with the kind's state flags (SHM_DEST, SHM_LOCKED) above them. */
  mode: number;
}

/** One object as /proc/sysvipc lists it: its permissions and every column by name. */
export interface SysvIpcEntry extends IpcPerm {
  columns: Record<string, string>;
}

/** `shmctl` flags in a segment's mode. */
export const SHM_DEST = 0o1000;
export const SHM_LOCKED = 0o2000;
const SHM_RDONLY = 0o10000;
const IPC_CREAT = 0o1000;
const IPC_EXCL = 0o2000;
const IPC_NOWAIT = 0o4000;
const MSG_COPY = 0o40000;
const IPC_RMID = 0;
const IPC_SET = 1;
const IPC_STAT = 2;
const SHM_LOCK = 11;
const GETALL = 13;
const SETALL = 17;
const ENOMSG = 42;

const ID_COLUMN: Record<SysvIpcKind, string> = { shm: 'shmid', msg: 'msqid', sem: 'semid' };

/**
 * The objects of `kind` in the calling thread's ipc namespace, from
 * /proc/sysvipc/KIND (see {@link parseSysvIpc}).
 */
export function listSysvIpc(kind: SysvIpcKind): SysvIpcEntry[] {
  const file = `/proc/sysvipc/${kind}`;
  return parseSysvIpc(readFileSync(file, 'utf8'), kind, file);
}

/**
 * Parses the text of /proc/sysvipc/KIND: a header line naming the columns
 * (which vary between kernels), then one line per object; `perms` is octal.
 * @throws CkptError EINVAL naming `file` and the column that is not a number
 */
export function parseSysvIpc(
  text: string,
  kind: SysvIpcKind,
  file = `/proc/sysvipc/${kind}`,
): SysvIpcEntry[] {
  const lines = text.split('\n');
  const names = (lines[0] ?? '').trim().split(/\s+/);
  const out: SysvIpcEntry[] = [];
  for (const line of lines.slice(1)) {
    if (line.trim() === '') continue;
    const values = line.trim().split(/\s+/);
    const columns: Record<string, string> = {};
    names.forEach((n, i) => {
      columns[n] = values[i] ?? '';
    });
    const num = (name: string) => {
      const v = Number(columns[name]);
      if (columns[name] === undefined || columns[name] === '' || !Number.isInteger(v)) {
        throw new CkptError(
          'EINVAL',
          `${file}: column ${name} of '${line.trim()}' is not a number`,
        );
      }
      return v;
    };
    const mode = Number.parseInt(columns.perms ?? '', 8);
    if (Number.isNaN(mode)) {
      throw new CkptError('EINVAL', `${file}: column perms of '${line.trim()}' is not octal`);
    }
    out.push({
      key: num('key'),
      id: num(ID_COLUMN[kind]),
      uid: num('uid'),
      gid: num('gid'),
      cuid: num('cuid'),
      cgid: num('cgid'),
      mode,
      columns,
    });
  }
  return out;
}

/** Offsets in `struct ipc64_perm` (48 bytes) and `struct msqid64_ds`. */
const PERM = { uid: 4, gid: 8, mode: 20 } as const;
const MSQID_DS_SIZE = 120;
const MSG_QBYTES = 88;
const MSG_QNUM = 80;
/** The largest of shmid64_ds (112), msqid64_ds (120) and semid64_ds (104). */
const IPC_DS_SIZE = 128;

function check(r: number | bigint, syscall: string, what: string): number {
  if (Number(r) === -1) throw sysError(syscall, errno(), what);
  return Number(r);
}

/**
 * Make the next object of `kind` created in the calling thread's namespace
 * get `id` (kernel.KIND_next_id; CONFIG_CHECKPOINT_RESTORE).
 */
export function setNextIpcId(kind: SysvIpcKind, id: number): void {
  const file = `/proc/sys/kernel/${kind}_next_id`;
  try {
    writeFileSync(file, String(id));
  } catch (e) {
    throw new CkptError(
      'ENOTSUP',
      `cannot choose the id of a SysV ${kind} object (${file}: ${(e as Error).message}); the kernel needs CONFIG_CHECKPOINT_RESTORE`,
      {},
      { cause: e },
    );
  }
}

/** Check that the object made for `want` got its id (another may have taken it). */
function expectId(kind: SysvIpcKind, got: number, want: IpcPerm): number {
  if (got !== want.id) {
    throw new CkptError(
      'EBUSY',
      `SysV ${kind} object with key ${want.key} was created with id ${got} instead of ${want.id}`,
    );
  }
  return got;
}

/** Set the owner and permission bits of an object (and a queue's size limit). */
export function setIpcPerm(kind: SysvIpcKind, perm: IpcPerm, qbytes?: bigint): void {
  const ds = Buffer.alloc(IPC_DS_SIZE);
  if (kind === 'msg') check(libc().msgctl(perm.id, IPC_STAT, ds), 'msgctl', statWhat(kind, perm));
  ds.writeUInt32LE(perm.uid >>> 0, PERM.uid);
  ds.writeUInt32LE(perm.gid >>> 0, PERM.gid);
  ds.writeUInt32LE(perm.mode & 0o777, PERM.mode);
  if (qbytes !== undefined) ds.writeBigUInt64LE(qbytes, MSG_QBYTES);
  const what = `setting owner ${perm.uid}:${perm.gid} and mode ${(perm.mode & 0o777).toString(8)} of SysV ${kind} ${perm.id}${qbytes === undefined ? '' : ` (queue size ${qbytes})`}`;
  if (kind === 'shm') check(libc().shmctl(perm.id, IPC_SET, ds), 'shmctl', what);
  else if (kind === 'msg') check(libc().msgctl(perm.id, IPC_SET, ds), 'msgctl', what);
  else check(libc().semctl(perm.id, 0, IPC_SET, ds), 'semctl', what);
}

/** Remove an object (a segment still attached goes when its last user detaches). */
export function removeIpc(kind: SysvIpcKind, id: number): void {
  const what = `removing SysV ${kind} ${id}`;
  if (kind === 'shm') check(libc().shmctl(id, IPC_RMID, null), 'shmctl', what);
  else if (kind === 'msg') check(libc().msgctl(id, IPC_RMID, null), 'msgctl', what);
  else check(libc().semctl(id, 0, IPC_RMID, null), 'semctl', what);
}

const statWhat = (kind: SysvIpcKind, p: { id: number }) => `reading SysV ${kind} ${p.id}`;

// ── Shared memory ──────────────────────────────────────────────────────────

/** Attach segment `id` to ckpt's own address space; returns its address. */
export function shmAttach(id: number, readOnly: boolean): bigint {
  const addr = BigInt(libc().shmat(id, 0, readOnly ? SHM_RDONLY : 0));
  // shmat returns (void *)-1 on failure.
  if (addr === 0xffffffffffffffffn || addr === -1n) {
    throw sysError('shmat', errno(), `attaching SysV shared memory segment ${id} to ckpt`);
  }
  return addr;
}

/** Detach a segment ckpt attached. */
export function shmDetach(addr: bigint): void {
  check(libc().shmdt(addr), 'shmdt', `detaching SysV shared memory at 0x${addr.toString(16)}`);
}

/** Create segment `perm` (its id chosen first with {@link setNextIpcId}) of `size` bytes. */
export function shmCreate(perm: IpcPerm, size: bigint): number {
  setNextIpcId('shm', perm.id);
  const id = libc().shmget(perm.key, size, IPC_CREAT | IPC_EXCL | 0o600);
  return expectId(
    'shm',
    check(id, 'shmget', `creating SysV shared memory ${perm.id} (key ${perm.key})`),
    perm,
  );
}

/** Lock a segment in memory (SHM_LOCK). */
export function shmLock(id: number): void {
  check(libc().shmctl(id, SHM_LOCK, null), 'shmctl', `locking SysV shared memory ${id}`);
}

// ── Message queues ─────────────────────────────────────────────────────────

/** A queued message. */
export interface SysvMessage {
  mtype: bigint;
  text: Buffer;
}

/** The state of a queue that /proc/sysvipc/msg does not show. */
export function msgQueueState(id: number): { qbytes: bigint; qnum: number } {
  const ds = Buffer.alloc(MSQID_DS_SIZE);
  check(libc().msgctl(id, IPC_STAT, ds), 'msgctl', `reading SysV message queue ${id}`);
  return { qbytes: ds.readBigUInt64LE(MSG_QBYTES), qnum: Number(ds.readBigUInt64LE(MSG_QNUM)) };
}

/**
 * Every message of queue `id`, in order, copied without being taken
 * (msgrcv MSG_COPY). `maxBytes` bounds one message's text.
 */
export function msgPeekAll(id: number, qnum: number, maxBytes: number): SysvMessage[] {
  const buf = Buffer.alloc(8 + maxBytes);
  const out: SysvMessage[] = [];
  for (let i = 0; i < qnum; i++) {
    const n = Number(libc().msgrcv(id, buf, maxBytes, i, IPC_NOWAIT | MSG_COPY));
    if (n === -1) {
      const err = errno();
      if (err === ENOMSG) break; // the queue is shorter than it said
      throw sysError('msgrcv', err, `copying message ${i} of SysV message queue ${id}`);
    }
    out.push({ mtype: buf.readBigInt64LE(0), text: Buffer.from(buf.subarray(8, 8 + n)) });
  }
  return out;
}

/** Create queue `perm` (its id chosen first). */
export function msgCreate(perm: IpcPerm): number {
  setNextIpcId('msg', perm.id);
  const id = libc().msgget(perm.key, IPC_CREAT | IPC_EXCL | 0o600);
  return expectId(
    'msg',
    check(id, 'msgget', `creating SysV message queue ${perm.id} (key ${perm.key})`),
    perm,
  );
}

/** Create a private queue with whatever id the kernel gives (for probes). */
export function msgCreatePrivate(): number {
  return check(
    libc().msgget(0, IPC_CREAT | 0o600),
    'msgget',
    'creating a private SysV message queue',
  );
}

/** Append a message to queue `id` (never blocks). */
export function msgSend(id: number, msg: SysvMessage): void {
  const buf = Buffer.alloc(8 + msg.text.length);
  buf.writeBigInt64LE(msg.mtype, 0);
  msg.text.copy(buf, 8);
  check(
    libc().msgsnd(id, buf, msg.text.length, IPC_NOWAIT),
    'msgsnd',
    `queueing a message of ${msg.text.length} bytes (type ${msg.mtype}) on SysV message queue ${id}`,
  );
}

// ── Semaphores ─────────────────────────────────────────────────────────────

/** The values of the `nsems` semaphores of set `id`. */
export function semValues(id: number, nsems: number): number[] {
  const arr = Buffer.alloc(Math.max(2, nsems * 2));
  check(libc().semctl(id, 0, GETALL, arr), 'semctl', `reading SysV semaphore set ${id}`);
  return Array.from({ length: nsems }, (_, i) => arr.readUInt16LE(i * 2));
}

/** Create set `perm` of `values.length` semaphores (its id chosen first) and set their values. */
export function semCreate(perm: IpcPerm, values: readonly number[]): number {
  setNextIpcId('sem', perm.id);
  const what = `creating SysV semaphore set ${perm.id} (key ${perm.key})`;
  const id = expectId(
    'sem',
    check(libc().semget(perm.key, values.length, IPC_CREAT | IPC_EXCL | 0o600), 'semget', what),
    perm,
  );
  const arr = Buffer.alloc(Math.max(2, values.length * 2));
  values.forEach((v, i) => {
    arr.writeUInt16LE(v, i * 2);
  });
  check(libc().semctl(id, 0, SETALL, arr), 'semctl', `setting the values of ${what.slice(9)}`);
  return id;
}
