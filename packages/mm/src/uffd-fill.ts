/**
 * Large private anonymous regions are filled at restart through a
 * userfaultfd of the task (core's `Userfaultfd`): each page is allocated
 * and copied in one step by UFFDIO_COPY, instead of being faulted in
 * (allocated and zeroed) and then written. The region is mapped fresh,
 * registered, filled and unregistered; afterwards it is ordinary memory,
 * with the same flags and the same pages as the other way.
 *
 * The task's userfaultfd is created inside it (it belongs to the address
 * space of the process that makes it), copied to ckpt with pidfd_getfd and
 * closed in the task at once. Where the kernel refuses one, regions are
 * written the ordinary way.
 */
import {
  CkptError,
  grabFd,
  isSyscallError,
  type RestartTask,
  type SavedVma,
  type TaskMemory,
  USERFAULTFD_FLAGS,
  Userfaultfd,
} from '@ckpt/core';

/** Regions with more pages than this are filled through the userfaultfd. */
export const UFFD_FILL_MIN_PAGES = 1024;

interface TaskUffd {
  /** ckpt's copy of the task's userfaultfd; null where the kernel refused one. */
  uffd: Userfaultfd | null;
  /** Starts of the regions mapped for filling, not yet filled. */
  regions: Set<bigint>;
}

const perTask = new WeakMap<RestartTask, TaskUffd>();

function uffdOf(task: RestartTask): TaskUffd {
  let t = perTask.get(task);
  if (!t) {
    t = { uffd: createIn(task), regions: new Set() };
    perTask.set(task, t);
  }
  return t;
}

function createIn(task: RestartTask): Userfaultfd | null {
  const fd = task.sys.call('userfaultfd', [USERFAULTFD_FLAGS]);
  if (isSyscallError(fd)) return null;
  try {
    return new Userfaultfd(grabFd(task.pid, Number(fd)), task.pid);
  } catch {
    return null;
  } finally {
    task.sys.post([{ name: 'close', args: [fd] }]);
  }
}

/**
 * Whether `vma`, about to be mapped fresh (without MAP_POPULATE: filling
 * needs its pages missing), will be filled through the task's userfaultfd.
 * The caller maps it; {@link fillRegion} then writes its pages.
 */
export function planUffdFill(task: RestartTask, vma: SavedVma): boolean {
  if (vma.nrPages <= UFFD_FILL_MIN_PAGES) return false;
  const t = uffdOf(task);
  if (!t.uffd) return false;
  t.regions.add(vma.start);
  return true;
}

/**
 * If `vma` was planned for filling ({@link planUffdFill}), register it, run
 * `write` with a TaskMemory that fills it, and unregister it; returns
 * false (and does nothing) for any other region.
 */
export function fillRegion(
  task: RestartTask,
  vma: SavedVma,
  write: (mem: TaskMemory) => void,
): boolean {
  const t = perTask.get(task);
  if (!t?.uffd || !t.regions.delete(vma.start)) return false;
  const uffd = t.uffd;
  uffd.register(vma.start, vma.end - vma.start);
  try {
    write({
      write: (addr, data) => uffd.fill(addr, data),
      read: () => notReadable(task),
      readInto: () => notReadable(task),
    });
  } finally {
    uffd.unregister();
  }
  return true;
}

/** Close ckpt's copy of the task's userfaultfd, once its memory is restored. */
export function closeTaskUffd(task: RestartTask): void {
  perTask.get(task)?.uffd?.close();
  perTask.delete(task);
}

function notReadable(task: RestartTask): never {
  throw new CkptError('EUNEXPECTED', `pid ${task.savedPid}: a region being filled is not readable`);
}
