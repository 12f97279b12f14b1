/**
 * kcmp(2): do two processes share a kernel object? This is how ckpt keys
 * shared files, address spaces, fd tables, fs info, signal handlers, io
 * contexts and SysV semaphore undo lists in the objhash.
 */
import { CkptError } from '../errors.js';
import { errno, libc, sysError } from './libc.js';

/** kcmp types (linux/kcmp.h). */
export const KCMP = {
  FILE: 0,
  VM: 1,
  FILES: 2,
  FS: 3,
  SIGHAND: 4,
  IO: 5,
  SYSVSEM: 6,
} as const;

/** One of the {@link KCMP} values. */
export type KcmpType = (typeof KCMP)[keyof typeof KCMP];

const NAMES = [
  'KCMP_FILE',
  'KCMP_VM',
  'KCMP_FILES',
  'KCMP_FS',
  'KCMP_SIGHAND',
  'KCMP_IO',
  'KCMP_SYSVSEM',
];

/**
 * Compare a kernel object of `pid1` with one of `pid2`. Returns 0 if it is
 * the same object, -1 or 1 otherwise (a stable order of the kernel's
 * pointers, usable for sorting). `idx1`/`idx2` are fds for KCMP_FILE.
 */
export function kcmp(pid1: number, pid2: number, type: KcmpType, idx1 = 0, idx2 = 0): -1 | 0 | 1 {
  const c = libc();
  if (!c.kcmp) throw new CkptError('ENOSYS', `kcmp is not wired up for ${process.arch}`);
  const r = Number(c.kcmp(c.kcmpNr, pid1, pid2, type, idx1, idx2));
  if (r === -1) {
    const what =
      type === KCMP.FILE
        ? ` of fd ${idx1} of pid ${pid1} and fd ${idx2} of pid ${pid2}`
        : ` of pids ${pid1} and ${pid2}`;
    throw sysError(NAMES[type] ?? 'kcmp', errno(), `comparing ${NAMES[type] ?? type}${what}`, {
      pid: pid1,
    });
  }
  // The kernel returns 0 equal, 1 less, 2 greater.
  return r === 0 ? 0 : r === 1 ? -1 : 1;
}

/** True if fd `fd1` of `pid1` and fd `fd2` of `pid2` are the same open file. */
export function sameFile(pid1: number, fd1: number, pid2: number, fd2: number): boolean {
  return kcmp(pid1, pid2, KCMP.FILE, fd1, fd2) === 0;
}

/** An fd of a process: where an open file description is held. */
export interface FdRef {
  pid: number;
  fd: number;
}

/**
 * Distinct open file descriptions, kept in kcmp's order (the kernel orders
 * `struct file` pointers, the same for every pair of processes), so that
 * finding one costs O(log n) kcmp calls instead of one per description:
 * thousands of separate opens of one file (or of /dev/null) stay fast.
 */
export class DescriptionIndex<T extends FdRef> {
  private readonly items: T[] = [];

  /** Every description, one holder each, in kcmp order. */
  get all(): readonly T[] {
    return this.items;
  }

  /** The holder of the open file description of fd `fd` of `pid`, if one is here. */
  find(pid: number, fd: number): T | undefined {
    const at = this.search(pid, fd);
    return at.found ? this.items[at.index] : undefined;
  }

  /** Add `item` unless its description is here already; returns the holder kept. */
  add(item: T): T {
    const at = this.search(item.pid, item.fd);
    if (at.found) return this.items[at.index]!;
    this.items.splice(at.index, 0, item);
    return item;
  }

  private search(pid: number, fd: number): { found: boolean; index: number } {
    let lo = 0;
    let hi = this.items.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const m = this.items[mid]!;
      const c = kcmp(pid, m.pid, KCMP.FILE, fd, m.fd);
      if (c === 0) return { found: true, index: mid };
      if (c < 0) hi = mid;
      else lo = mid + 1;
    }
    return { found: false, index: lo };
  }
}
