/**
 * A thread's scheduling attributes, read and set from ckpt's side (no
 * injection: root may change any task's): policy, nice value and priority
 * with sched_getattr/sched_setattr, CPU affinity, and I/O priority.
 */
import { errno, libc, sysError } from './libc.js';

/** `struct sched_attr` as far as SCHED_ATTR_SIZE_VER1 (with the utilization clamps). */
const SCHED_ATTR_SIZE = 56;
/** The one flag kept: the others (utilization clamps, keep-*) are requests, not state. */
export const SCHED_FLAG_RESET_ON_FORK = 1n;
/** Room for 8192 CPUs. */
const AFFINITY_BYTES = 1024;
const IOPRIO_WHO_PROCESS = 1;

/** What sched_getattr reports of a thread. */
export interface SchedAttr {
  /** SCHED_OTHER 0, FIFO 1, RR 2, BATCH 3, IDLE 5, DEADLINE 6. */
  policy: number;
  flags: bigint;
  nice: number;
  /** Real-time priority (FIFO, RR). */
  priority: number;
  /** SCHED_DEADLINE parameters, in ns. */
  runtime: bigint;
  deadline: bigint;
  period: bigint;
}

/** The scheduling policy and parameters of thread `tid`. */
export function getSchedAttr(tid: number): SchedAttr {
  const buf = Buffer.alloc(SCHED_ATTR_SIZE);
  const r = libc().schedAttr(libc().schedGetattrNr, tid, buf, SCHED_ATTR_SIZE, 0);
  if (Number(r) < 0) {
    throw sysError('sched_getattr', errno(), `reading the scheduling policy of ${tid}`, {
      pid: tid,
    });
  }
  return {
    policy: buf.readUInt32LE(4),
    flags: buf.readBigUInt64LE(8),
    nice: buf.readInt32LE(16),
    priority: buf.readUInt32LE(20),
    runtime: buf.readBigUInt64LE(24),
    deadline: buf.readBigUInt64LE(32),
    period: buf.readBigUInt64LE(40),
  };
}

/** Give thread `tid` the policy and parameters `a` (only RESET_ON_FORK of its flags). */
export function setSchedAttr(tid: number, a: SchedAttr): void {
  const buf = Buffer.alloc(SCHED_ATTR_SIZE);
  buf.writeUInt32LE(SCHED_ATTR_SIZE, 0);
  buf.writeUInt32LE(a.policy, 4);
  buf.writeBigUInt64LE(a.flags & SCHED_FLAG_RESET_ON_FORK, 8);
  buf.writeInt32LE(a.nice, 16);
  buf.writeUInt32LE(a.priority, 20);
  buf.writeBigUInt64LE(a.runtime, 24);
  buf.writeBigUInt64LE(a.deadline, 32);
  buf.writeBigUInt64LE(a.period, 40);
  const r = libc().schedAttr(libc().schedSetattrNr, tid, buf, 0, 0);
  if (Number(r) < 0) {
    throw sysError('sched_setattr', errno(), `setting the scheduling policy of ${tid}`, {
      pid: tid,
    });
  }
}

/** The CPU affinity mask of thread `tid` (bit n = CPU n), as long as the kernel's. */
export function getAffinity(tid: number): Buffer {
  const mask = Buffer.alloc(AFFINITY_BYTES);
  const r = libc().schedGetaffinity(tid, AFFINITY_BYTES, mask);
  if (r < 0) {
    throw sysError('sched_getaffinity', errno(), `reading the CPU affinity of ${tid}`, {
      pid: tid,
    });
  }
  // glibc returns 0; the kernel's byte count is not passed on: trim the zero tail.
  let end = mask.length;
  while (end > 8 && mask[end - 1] === 0) end--;
  return Buffer.from(mask.subarray(0, Math.ceil(end / 8) * 8));
}

/**
 * Set thread `tid`'s CPU affinity. Returns false when none of the CPUs in
 * `mask` can run it here (EINVAL): the caller decides what to say.
 */
export function setAffinity(tid: number, mask: Buffer): boolean {
  if (libc().schedSetaffinity(tid, mask.length, mask) === 0) return true;
  const err = errno();
  if (err === 22) return false;
  throw sysError('sched_setaffinity', err, `setting the CPU affinity of ${tid}`, { pid: tid });
}

/** The I/O priority of thread `tid` (ioprio_get: class << 13 | level). */
export function getIoprio(tid: number): number {
  const r = Number(libc().ioprio(libc().ioprioGetNr, IOPRIO_WHO_PROCESS, tid, 0));
  if (r < 0)
    throw sysError('ioprio_get', errno(), `reading the I/O priority of ${tid}`, { pid: tid });
  return r;
}

/** Set thread `tid`'s I/O priority. */
export function setIoprio(tid: number, ioprio: number): void {
  const r = Number(libc().ioprio(libc().ioprioSetNr, IOPRIO_WHO_PROCESS, tid, ioprio));
  if (r < 0)
    throw sysError('ioprio_set', errno(), `setting the I/O priority of ${tid}`, { pid: tid });
}
