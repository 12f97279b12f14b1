/**
 * POSIX message queues (mq_overview(7)) from ckpt's side: attributes,
 * reading every message of a queue and putting it back, creating and
 * removing queues. Calls act in the calling thread's ipc namespace (run
 * them inside `inNamespaceOf(pid, 'ipc', …)` for a task's).
 */
import { closeSync, readdirSync, readFileSync, statfsSync, statSync } from 'node:fs';
import { errno, libc, sysError } from './libc.js';

const O_RDONLY = 0;
const O_WRONLY = 1;
const O_CREAT = 0o100;
const O_EXCL = 0o200;
const O_CLOEXEC = 0o2000000;
const ETIMEDOUT = 110;
const EEXIST = 17;
const EAGAIN = 11;
const ENOENT = 2;
/** sizeof(struct mq_attr): four longs and four reserved. */
const ATTR_SIZE = 64;

/** statfs f_type of the mqueue filesystem. */
const MQUEUE_MAGIC = 0x19800202;

/** Whether fd `fd` of `pid` is a POSIX message queue (mq_open's fds live on the mqueue filesystem). */
export function isMessageQueueFd(pid: number, fd: number): boolean {
  try {
    return statfsSync(`/proc/${pid}/fd/${fd}`).type === MQUEUE_MAGIC;
  } catch {
    return false; // gone meanwhile: whatever comes next says so
  }
}

/** struct mq_attr, less mq_flags (which belongs to an open description). */
export interface MqAttr {
  maxmsg: number;
  msgsize: number;
  /** Messages queued now. */
  curmsgs: number;
}

/** One queued message. */
export interface MqMessage {
  priority: number;
  data: Buffer;
}

/** The attributes of the queue open at `fd`. */
export function mqAttr(fd: number): MqAttr {
  const a = Buffer.alloc(ATTR_SIZE);
  if (libc().mqGetattr(fd, a) < 0) throw sysError('mq_getattr', errno(), 'reading a message queue');
  return {
    maxmsg: Number(a.readBigInt64LE(8)),
    msgsize: Number(a.readBigInt64LE(16)),
    curmsgs: Number(a.readBigInt64LE(24)),
  };
}

/** A timeout already past: receive and send never wait. */
const NOW = Buffer.alloc(16);

/**
 * Take every message out of the queue open for reading at `fd`, in the
 * order receivers would get them (highest priority first, then oldest).
 */
export function mqTakeAll(fd: number, msgsize: number): MqMessage[] {
  const out: MqMessage[] = [];
  const buf = Buffer.alloc(msgsize);
  const prio = Buffer.alloc(4);
  for (;;) {
    const n = Number(libc().mqTimedreceive(fd, buf, msgsize, prio, NOW));
    if (n < 0) {
      const err = errno();
      // Empty: a blocking description times out, a non-blocking one says EAGAIN.
      if (err === ETIMEDOUT || err === EAGAIN) return out;
      throw sysError('mq_timedreceive', err, 'reading the messages of a queue');
    }
    out.push({ priority: prio.readUInt32LE(0), data: Buffer.from(buf.subarray(0, n)) });
  }
}

/** Queue `messages` at `fd` (open for writing), in order: taken with {@link mqTakeAll}, they come back in the same order. */
export function mqPutAll(fd: number, messages: readonly MqMessage[]): void {
  for (const m of messages) {
    if (libc().mqTimedsend(fd, m.data, m.data.length, m.priority, NOW) < 0) {
      throw sysError('mq_timedsend', errno(), 'putting a message back in its queue');
    }
  }
}

/** Open queue `name` ("/name") for reading, or writing; undefined if there is none. */
export function mqOpenExisting(name: string, write = false): number | undefined {
  const fd = libc().mqOpen(name, (write ? O_WRONLY : O_RDONLY) | O_CLOEXEC, 0, null);
  if (fd >= 0) return fd;
  const err = errno();
  if (err === ENOENT) return undefined;
  throw sysError('mq_open', err, `opening message queue ${name}`);
}

/**
 * Create queue `name` with `attr` and `mode`, open for writing (the caller
 * closes it); undefined if a queue of that name exists already.
 */
export function mqCreate(name: string, attr: MqAttr, mode: number): number | undefined {
  const a = Buffer.alloc(ATTR_SIZE);
  a.writeBigInt64LE(BigInt(attr.maxmsg), 8);
  a.writeBigInt64LE(BigInt(attr.msgsize), 16);
  const fd = libc().mqOpen(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode, a);
  if (fd >= 0) return fd;
  const err = errno();
  if (err === EEXIST) return undefined;
  throw sysError(
    'mq_open',
    err,
    `creating message queue ${name} (${attr.maxmsg} messages of ${attr.msgsize} bytes)`,
  );
}

/** Remove queue `name` (it lives on while open). */
export function mqUnlink(name: string): void {
  if (libc().mqUnlink(name) < 0)
    throw sysError('mq_unlink', errno(), `removing message queue ${name}`);
}

/** Run `fn` on `fd`, then close it. */
export function withMq<T>(fd: number, fn: (fd: number) => T): T {
  try {
    return fn(fd);
  } finally {
    closeSync(fd);
  }
}

const SYS_FSOPEN = 430;
const SYS_FSCONFIG = 431;
const SYS_FSMOUNT = 432;
const FSOPEN_CLOEXEC = 1;
const FSCONFIG_CMD_CREATE = 6;
const FSMOUNT_CLOEXEC = 1;

/** A queue of an ipc namespace, as its mqueue filesystem shows it. */
export interface ListedQueue {
  /** "/name", as mq_open takes it. */
  name: string;
  /** Device and inode: the identity an fd on it shows (stat). */
  dev: number;
  ino: number;
  /** The process registered for notification (mq_notify), 0 if none. */
  notifyPid: number;
}

/** The NOTIFY_PID of a queue file's text ("QSIZE:… NOTIFY:… SIGNO:… NOTIFY_PID:…"). */
export function mqNotifyPid(text: string): number {
  return Number(/NOTIFY_PID:\s*(\d+)/.exec(text)?.[1] ?? 0);
}

function check(ret: number | bigint, call: string, what: string): number {
  const n = Number(ret);
  if (n < 0) throw sysError(call, errno(), what);
  return n;
}

/**
 * Every POSIX message queue of the calling thread's ipc namespace, also
 * those no process has open. They are read from a mount of the
 * namespace's mqueue filesystem made for the call and never attached
 * anywhere (fsopen/fsmount), so no mount namespace sees it.
 */
export function mqList(): ListedQueue[] {
  const lib = libc();
  const what = 'listing the message queues of an ipc namespace';
  const fs = check(lib.fsopen(SYS_FSOPEN, 'mqueue', FSOPEN_CLOEXEC), 'fsopen', what);
  try {
    check(lib.fsconfig(SYS_FSCONFIG, fs, FSCONFIG_CMD_CREATE, null, null, 0), 'fsconfig', what);
    const mnt = check(lib.fsmount(SYS_FSMOUNT, fs, FSMOUNT_CLOEXEC, 0), 'fsmount', what);
    try {
      const root = `/proc/self/fd/${mnt}`;
      return readdirSync(root).map((n) => {
        const st = statSync(`${root}/${n}`);
        const text = readFileSync(`${root}/${n}`, 'latin1');
        return { name: `/${n}`, dev: st.dev, ino: st.ino, notifyPid: mqNotifyPid(text) };
      });
    } finally {
      closeSync(mnt);
    }
  } finally {
    closeSync(fs);
  }
}
