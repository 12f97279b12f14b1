/**
 * Small helpers for subsystems that run syscalls inside a task and need to
 * pass it strings or structs through the task's scratch area.
 */
import { CkptError } from '../errors.js';
import { isSyscallError } from '../kernel/inject.js';
import { errnoText } from '../kernel/libc.js';
import { readStatus } from '../proc/index.js';
import type { TaskMemory, TaskSyscalls } from '../task.js';

const AT_FDCWD = -100;

/** What the helpers need of a task (both checkpoint and restart tasks have it). */
export interface TaskAccess {
  readonly pid: number;
  readonly sys: TaskSyscalls;
  readonly mem: TaskMemory;
}

/**
 * Copy `parts` into the task's scratch area, each 8-byte aligned, and
 * return their addresses in order.
 */
export function stage(task: TaskAccess, parts: readonly Buffer[]): bigint[] {
  let size = 0;
  const offsets = parts.map((p) => {
    const at = size;
    size += (p.length + 7) & ~7;
    return at;
  });
  const base = task.sys.scratch(Math.max(size, 8));
  const all = Buffer.alloc(size);
  parts.forEach((p, i) => {
    p.copy(all, offsets[i]);
  });
  if (size > 0) task.mem.write(base, all);
  return offsets.map((o) => base + BigInt(o));
}

/** A NUL-terminated C string. */
export function cString(s: string): Buffer {
  return Buffer.concat([Buffer.from(s, 'utf8'), Buffer.alloc(1)]);
}

/**
 * Open `path` inside the task (relative paths against its cwd) and return
 * the new fd; a failure names the pid and path.
 */
export function openInTask(task: TaskAccess, path: string, flags: number, mode = 0): number {
  const [addr] = stage(task, [cString(path)]);
  const r = task.sys.call('openat', [AT_FDCWD, addr!, flags, mode]);
  if (isSyscallError(r)) {
    throw new CkptError(
      'ESYS',
      `cannot open ${path} in pid ${task.pid}: ${errnoText(Number(-r))}`,
      {
        pid: task.pid,
        path,
        syscall: 'openat',
        errno: Number(-r),
      },
    );
  }
  return Number(r);
}

/** Close `fd` inside the task, ignoring errors. */
export function closeInTask(task: TaskAccess, fd: number): void {
  task.sys.call('close', [fd]);
}

/**
 * The pid by which the task `pid` is seen in the pid namespace of a task
 * with `levels` pid levels (its NSpid length), or undefined when it is
 * not visible there (it lives in an outer namespace).
 */
export function pidAtLevel(pid: number, levels: number): number | undefined {
  const ns = readStatus(pid).nsPid;
  return ns.length >= levels ? ns[levels - 1] : undefined;
}

/**
 * The pid by which `task` sees process `pid` (given as ckpt sees it): what
 * to pass to syscalls injected into the task, or to its own /proc.
 * @throws CkptError EINVAL when `pid` is not visible in the task's pid namespace
 */
export function pidSeenBy(task: TaskAccess & { savedPid?: number }, pid: number): number {
  const seen = pidAtLevel(pid, readStatus(task.pid).nsPid.length);
  if (seen === undefined) {
    throw new CkptError(
      'EINVAL',
      `pid ${pid} is not visible in the pid namespace of pid ${task.pid} (NSpid ${readStatus(pid).nsPid.join(' ')})`,
      { pid: task.savedPid ?? task.pid },
    );
  }
  return seen;
}
