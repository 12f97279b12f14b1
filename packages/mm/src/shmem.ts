/**
 * Shared anonymous memory (the seed's "dump/restore anonymous- and
 * file-mapped shared memory"): MAP_SHARED|MAP_ANONYMOUS is a shmem inode
 * ("/dev/zero (deleted)" in maps) that every task inheriting the mapping
 * shares. It is a `shmem` object in the objhash, keyed by its device and
 * inode: its contents are saved once, at the first region that maps it,
 * indexed by offset in the object (a task may map only part of it, at any
 * address); every region's VMA record names it by objref.
 *
 * Checkpoint reads the contents from ckpt itself, through an fd on the
 * object (/proc/PID/map_files/START-END of the first region), only where
 * the object holds data (SEEK_DATA/SEEK_HOLE): pages that no task wrote
 * are holes and come back as zeros. The tree is frozen, and nothing in it
 * changes.
 *
 * Restart: the object's records come right before the VMA record of its
 * first region, while that task's address space is rebuilt. The object is
 * created there as a temporary MAP_SHARED|MAP_ANONYMOUS mapping of its whole
 * size (so the kernel names it /dev/zero, as before) and filled by ckpt
 * through an fd on it. Every region, that first one included, is then
 * mapped from inside its task by opening /proc/PID/map_files/START-END of
 * a task that maps the object already (the `holder`; root may open any
 * task's map_files) and mmap(MAP_SHARED|MAP_FIXED) of that fd at the saved
 * offset. The temporary mapping goes once the first region maps the object.
 */
import { closeSync, fstatSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import {
  type CheckpointCtx,
  type CheckpointTask,
  CkptError,
  closeInTask,
  dataRanges,
  type MapsEntry,
  mapFilesPath,
  mapsFilePath,
  type ObjectOps,
  openInTask,
  PAGE_SIZE,
  pidSeenBy,
  type RestartCtx,
  type RestartTask,
  readMaps,
  type SavedVma,
  type TaskMemory,
  type VmaInfo,
} from '@ckpt/core';
import { countPages, dumpPages, type PageRun, restorePages } from './pages.js';
import { shmemRecord, type VmaRecord } from './records.js';

const PAGE = BigInt(PAGE_SIZE);
const PROT_NONE = 0;
const MAP_SHARED_ANON = 0x21;
const O_RDWR = 2;
const O_CLOEXEC = 0o2000000;

/** Name of the object type (the objhash's `type`). */
export const SHMEM_OBJECT = 'shmem';

/** What a checkpoint hands to checkpointObj: the first region that maps the object. */
export interface SavedShmem {
  pid: number;
  start: bigint;
  end: bigint;
  inode: number;
}

/** A restored shmem object. */
export interface RestoredShmem {
  /** Inode at checkpoint, for messages. */
  savedInode: bigint;
  size: bigint;
  /** Inode of the recreated object (what /proc/PID/maps shows now). */
  inode: number;
  /** A task that maps the object: where later regions open it from. */
  holder: RestartTask;
  /** The temporary mapping of the whole object in `holder`, until a region maps it. */
  temp?: { start: bigint; end: bigint };
}

/** Shared anonymous memory shows as "/dev/zero (deleted)" in maps. */
export const isShmemAnon = (v: MapsEntry): boolean =>
  v.shared && v.deleted && mapsFilePath(v) === '/dev/zero';

/**
 * A deleted file mapped MAP_SHARED (a memfd too), other than shared
 * anonymous memory and SysV segments ("/SYSVkey"), which are deleted files
 * to the kernel too.
 */
export const isDeletedSharedFile = (v: MapsEntry): boolean =>
  v.shared && v.deleted && v.kind === 'file' && !isShmemAnon(v) && !v.pathname.startsWith('/SYSV');

const hex = (n: bigint) => n.toString(16);
const range = (r: { start: bigint; end: bigint }) => `0x${hex(r.start)}-0x${hex(r.end)}`;

/**
 * A file seen as memory (offsets for addresses), so the page chunk code
 * streams an object's contents as it streams a task's memory. Reads past
 * the end of the file give zeros. `what` and `pid` go into error messages.
 */
export function fileMemory(fd: number, what: string, pid: number): TaskMemory {
  const fail = (e: unknown, op: string, at: number) =>
    new CkptError(
      'ESYS',
      `${what}: ${op} at offset 0x${at.toString(16)}: ${(e as Error).message}`,
      { pid },
      { cause: e },
    );
  const readInto = (addr: bigint, into: Buffer) => {
    let done = 0;
    while (done < into.length) {
      const at = Number(addr) + done;
      let n: number;
      try {
        n = readSync(fd, into, done, into.length - done, at);
      } catch (e) {
        throw fail(e, 'read', at);
      }
      if (n === 0) {
        into.fill(0, done);
        return;
      }
      done += n;
    }
  };
  return {
    read(addr, length) {
      const out = Buffer.alloc(length);
      readInto(addr, out);
      return out;
    },
    readInto,
    write(addr, data) {
      let done = 0;
      while (done < data.length) {
        const at = Number(addr) + done;
        try {
          done += writeSync(fd, data, done, data.length - done, at);
        } catch (e) {
          throw fail(e, 'write', at);
        }
      }
    },
  };
}

/** Page runs of the file's data below `size` (holes read as zeros and are skipped). */
export function dataPages(fd: number, size: bigint, what: string): PageRun[] {
  const runs: PageRun[] = [];
  let last: PageRun | undefined;
  for (const r of dataRanges(fd, size, what)) {
    const start = (r.start / PAGE) * PAGE;
    const end = ((r.end + PAGE - 1n) / PAGE) * PAGE;
    const lastEnd = last ? last.start + BigInt(last.pages) * PAGE : -1n;
    if (last && start <= lastEnd) {
      if (end > lastEnd) last.pages += Number((end - lastEnd) / PAGE);
      continue;
    }
    last = { start, pages: Number((end - start) / PAGE) };
    runs.push(last);
  }
  return runs;
}

function openFile(path: string, flags: string, what: string, pid: number): number {
  try {
    return openSync(path, flags);
  } catch (e) {
    throw new CkptError(
      'ESYS',
      `${what}: cannot open ${path}: ${(e as Error).message}`,
      { pid, path },
      { cause: e },
    );
  }
}

/**
 * ObjectOps of shared anonymous memory. linux-cr kept it by its shmem inode
 * (CKPT_OBJ_INODE, like pipes); here id 1 is the pipe's, so it takes the
 * first number of the memory range.
 */
export const shmemObject: ObjectOps<SavedShmem | RestoredShmem> = {
  name: SHMEM_OBJECT,
  id: 401,
  checkpoint(ctx, obj) {
    const { pid, inode } = obj as SavedShmem;
    const what = `pid ${pid}: saving shared memory ${range(obj as SavedShmem)} (shmem inode ${inode})`;
    const fd = openFile(mapFilesPath(pid, obj as SavedShmem), 'r', what, pid);
    try {
      const size = BigInt(fstatSync(fd).size);
      const runs = dataPages(fd, size, what);
      ctx.write(shmemRecord, { inode: BigInt(inode), size, nrPages: countPages(runs) });
      dumpPages(ctx, fileMemory(fd, what, pid), runs);
    } finally {
      closeSync(fd);
    }
  },
  restore(ctx) {
    const rec = ctx.read(shmemRecord);
    const task = restoring.get(ctx);
    if (!task) {
      throw new CkptError(
        'EBADREC',
        `shared memory object (inode ${rec.inode}) defined outside an address space`,
        { offset: ctx.reader.offset, recordType: shmemRecord.type },
      );
    }
    return createShmem(ctx, task, rec);
  },
  describe(obj) {
    return 'holder' in obj
      ? `shared anonymous memory (shmem inode ${obj.savedInode} at checkpoint)`
      : `shared anonymous memory ${range(obj)} of pid ${obj.pid} (shmem inode ${obj.inode})`;
  },
};

/**
 * Create the object in `task` as a temporary mapping of its whole size and
 * fill it through an fd of ckpt's (pages the image holds; the rest are holes).
 */
function createShmem(
  ctx: RestartCtx,
  task: RestartTask,
  rec: ReturnType<typeof shmemRecord.decode>,
): RestoredShmem {
  const what = `pid ${task.savedPid}: restoring shared memory (shmem inode ${rec.inode})`;
  // mmap needs a length: an object of size 0 (truncated) starts as one page.
  const alloc = rec.size > 0n ? ((rec.size + PAGE - 1n) / PAGE) * PAGE : PAGE;
  const start = task.sys.check('mmap', [0, alloc, PROT_NONE, MAP_SHARED_ANON, -1, 0], what);
  const temp = { start, end: start + alloc };
  const fd = openFile(mapFilesPath(task.pid, temp), 'r+', what, task.savedPid);
  try {
    restorePages(ctx, fileMemory(fd, what, task.savedPid), rec.nrPages, {
      start: 0n,
      end: alloc,
    });
    // The size is the original mapping's length, unless someone truncated
    // it; a partial last page written back may also have extended it.
    if (BigInt(fstatSync(fd).size) !== rec.size) ftruncateSync(fd, Number(rec.size));
    return { savedInode: rec.inode, size: rec.size, inode: fstatSync(fd).ino, holder: task, temp };
  } finally {
    closeSync(fd);
  }
}

/**
 * The task whose address space is being rebuilt: shmem objects are restored
 * inside the mm phase's reads of VMA records, and ObjectOps.restore gets
 * only the context.
 */
const restoring = new WeakMap<RestartCtx, RestartTask>();

/** Run `fn` with `task` as the task shmem objects are created in. */
export function restoringMemoryOf<T>(ctx: RestartCtx, task: RestartTask, fn: () => T): T {
  restoring.set(ctx, task);
  try {
    return fn();
  } finally {
    restoring.delete(ctx);
  }
}

/**
 * Checkpoint side of an anon-shared region: reference its shmem object,
 * writing it (and its contents) on first appearance. Returns the objref.
 */
export function checkpointShmem(ctx: CheckpointCtx, task: CheckpointTask, vma: VmaInfo): number {
  const key = `${vma.devMajor}:${vma.devMinor}:${vma.inode}`;
  const obj: SavedShmem = { pid: task.pid, start: vma.start, end: vma.end, inode: vma.inode };
  return ctx.checkpointObj(SHMEM_OBJECT, key, obj);
}

/** A mapping of `shm` in its holder: the temporary one, or any region that maps it. */
function holderMapping(shm: RestoredShmem, task: RestartTask): { start: bigint; end: bigint } {
  if (shm.temp) return shm.temp;
  const m = readMaps(shm.holder.pid).find((e) => e.inode === shm.inode && isShmemAnon(e));
  if (!m) {
    throw new CkptError(
      'EUNEXPECTED',
      `pid ${task.savedPid}: the shared memory of shmem inode ${shm.savedInode} is no longer mapped in pid ${shm.holder.savedPid}, which restored it`,
      { pid: task.savedPid },
    );
  }
  return m;
}

/**
 * Restart side of an anon-shared region: open its shmem object inside
 * `task` (O_RDWR, as the kernel's own anonymous mapping may be made
 * writable later) and run `map(fd)`, which maps it; the fd is closed after.
 * @throws CkptError naming the pid and range when the record names no object
 */
export function withShmemFd(
  ctx: RestartCtx,
  task: RestartTask,
  vma: SavedVma,
  map: (fd: number) => void,
): void {
  const { objref } = vma as VmaRecord;
  if (!objref) {
    throw new CkptError(
      'EBADREC',
      `pid ${task.savedPid}: shared anonymous region ${range(vma)} names no shared memory object`,
      { pid: task.savedPid, address: vma.start },
    );
  }
  const shm = ctx.fetchObj<RestoredShmem>(objref, SHMEM_OBJECT);
  const from = holderMapping(shm, task);
  const fd = openInTask(
    task,
    mapFilesPath(pidSeenBy(task, shm.holder.pid), from),
    O_RDWR | O_CLOEXEC,
  );
  try {
    if (shm.temp) {
      // The fd keeps the object; the region may be about to take its place.
      shm.holder.sys.check(
        'munmap',
        [shm.temp.start, shm.temp.end - shm.temp.start],
        `pid ${shm.holder.savedPid}: removing the temporary mapping of shared memory`,
      );
      shm.temp = undefined;
      shm.holder = task;
    }
    map(fd);
  } finally {
    closeInTask(task, fd);
  }
}
