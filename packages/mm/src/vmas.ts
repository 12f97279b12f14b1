/**
 * The VMA kinds ckpt knows, each with both directions side by side: how
 * it is described and which pages are saved at checkpoint, and how it is
 * recreated at restart. Pages themselves are streamed by the mm phase.
 */
import {
  type CheckpointCtx,
  type CheckpointTask,
  CkptError,
  closeInTask,
  cString,
  errnoText,
  isSyscallError,
  mapFilesPath,
  mapsFilePath,
  openPagemapFile,
  type PagemapFile,
  type RestartCtx,
  type RestartTask,
  readPageRuns,
  type SavedVma,
  type SyscallRequest,
  type VmaHandler,
  type VmaInfo,
} from '@ckpt/core';
import { checkpointGhost, ghostFdInTask } from '@ckpt/fs';
import { checkMappedFile } from './file-identity.js';
import { VmaKind, type VmaRecord } from './records.js';
import { checkpointShmem, isDeletedSharedFile, isShmemAnon, withShmemFd } from './shmem.js';
import { planUffdFill } from './uffd-fill.js';

export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const PROT_EXEC = 4;
const MAP_SHARED = 0x01;
const MAP_PRIVATE = 0x02;
const MAP_FIXED = 0x10;
const MAP_ANONYMOUS = 0x20;
const MAP_GROWSDOWN = 0x100;
const MAP_NORESERVE = 0x4000;
/** The MAP_* flags of a saved region that restart maps it with again. */
const KEPT_FLAGS = MAP_GROWSDOWN | MAP_NORESERVE;
const MAP_POPULATE = 0x8000;
/**
 * ckpt's own bit in a VMA record's flags (not a MAP_* value): the region
 * must stay a separate VMA from an identical neighbour. The kernel merges
 * adjacent anonymous regions with equal flags unless they have different
 * anon_vmas, which only their history gave them.
 */
export const VMA_KEEP_APART = 0x8000_0000;
const MADV_DONTNEED = 4;
const MADV_DOFORK = 11;

/**
 * madvise state kept per VMA: smaps VmFlags letters, the advice that sets
 * them, and the bit in the VMA record.
 */
const MADV_STATE = [
  { letters: 'dc', advice: 10, bit: 1 }, // MADV_DONTFORK
  { letters: 'dd', advice: 16, bit: 2 }, // MADV_DONTDUMP
  { letters: 'wf', advice: 18, bit: 4 }, // MADV_WIPEONFORK
  { letters: 'hg', advice: 14, bit: 8 }, // MADV_HUGEPAGE
  { letters: 'nh', advice: 15, bit: 16 }, // MADV_NOHUGEPAGE
] as const;

/**
 * mlock state in the same field: `lo` is VM_LOCKED (mlock, mlockall), `lf`
 * VM_LOCKONFAULT (mlock2 MLOCK_ONFAULT, MCL_ONFAULT), shown with `lo`.
 */
const MADV_LOCKED = 32;
const MADV_LOCK_ON_FAULT = 64;
const MLOCK_ONFAULT = 1;
/** mseal state in the same field: VmFlags `sl`. */
const MADV_SEALED = 128;

function madvOf(vma: VmaInfo): number {
  let bits = 0;
  for (const m of MADV_STATE) if (vma.vmFlags.has(m.letters)) bits |= m.bit;
  if (vma.vmFlags.has('lo')) bits |= MADV_LOCKED;
  if (vma.vmFlags.has('lf')) bits |= MADV_LOCK_ON_FAULT;
  if (vma.vmFlags.has('sl')) bits |= MADV_SEALED;
  return bits;
}

/**
 * Whether restart seals region `vma` again (mseal). Not the kernel's own
 * areas: a kernel that seals those (CONFIG_MSEAL_SYSTEM_MAPPINGS) does so
 * itself, and ckpt has to move them first.
 */
export function isSealed(vma: SavedVma): boolean {
  return (
    (vma.madv & MADV_SEALED) !== 0 &&
    vma.kind !== VmaKind.VDSO &&
    vma.kind !== VmaKind.VVAR &&
    vma.kind !== VmaKind.VVAR_VCLOCK
  );
}

/**
 * Seal `sealed` again, posted. Only once the address space is final: a
 * sealed region can no longer be unmapped, remapped, have its protection
 * or advice changed, so every region's mapping, pages, madvise state and
 * userfaultfd must be done with, and PR_SET_MM_MAP posted before.
 * Nothing later in restart changes the task's own regions (the restorer it
 * unmaps at the end is a VMA of its own).
 */
export function restoreSeals(task: RestartTask, sealed: readonly SavedVma[]): void {
  if (sealed.length === 0) return;
  task.sys.postChecked(
    sealed.map((v) => ({
      name: 'mseal' as const,
      args: [v.start, v.end - v.start, 0],
      what: `mseal of 0x${v.start.toString(16)}-0x${v.end.toString(16)}, sealed at checkpoint (mseal needs Linux 6.10)`,
    })),
  );
}

/**
 * Re-apply the saved madvise and mlock state of a restored region. Posted
 * after the region's pages: a region filled through a userfaultfd is
 * complete by the time they run (mlock faults every page in, and the task
 * would wait on ckpt); pages held back are written right after them, into
 * the locked pages.
 */
export function restoreMadvise(task: RestartTask, vma: SavedVma): void {
  const range = `0x${vma.start.toString(16)}-0x${vma.end.toString(16)}`;
  const length = vma.end - vma.start;
  // Posted: the advice only needs the mapping, which exists by then.
  const calls: (SyscallRequest & { what: string })[] = MADV_STATE.filter(
    (m) => vma.madv & m.bit,
  ).map((m) => ({
    name: 'madvise' as const,
    args: [vma.start, length, m.advice],
    what: `madvise(${m.letters}) of ${range}`,
  }));
  if (vma.madv & MADV_LOCKED) {
    // Restart runs the task as root until its credentials are applied, so
    // RLIMIT_MEMLOCK does not stop it unless ckpt lacks CAP_IPC_LOCK.
    calls.push(
      vma.madv & MADV_LOCK_ON_FAULT
        ? {
            name: 'mlock2',
            args: [vma.start, length, MLOCK_ONFAULT],
            what: `mlock2(MLOCK_ONFAULT) of ${range}, locked at checkpoint`,
          }
        : {
            name: 'mlock',
            args: [vma.start, length],
            what: `mlock of ${range}, locked at checkpoint`,
          },
    );
  }
  if (calls.length > 0) task.sys.postChecked(calls);
}
const PAGE = 4096n;
const O_RDONLY = 0;
const O_RDWR = 2;
const O_CLOEXEC = 0o2000000;
const AT_FDCWD = -100;

/** PROT_* bits of a maps entry. */
export function protOf(vma: VmaInfo): number {
  return (vma.read ? PROT_READ : 0) | (vma.write ? PROT_WRITE : 0) | (vma.exec ? PROT_EXEC : 0);
}

function mapFlags(vma: VmaInfo): number {
  return (
    (vma.shared ? MAP_SHARED : MAP_PRIVATE) |
    (vma.vmFlags.has('gd') ? MAP_GROWSDOWN : 0) |
    // No swap space accounted (MAP_NORESERVE): a mapping larger than
    // memory can only be made again that way.
    (vma.vmFlags.has('nr') ? MAP_NORESERVE : 0)
  );
}

/** The VMA record's fields for region `vma`, restored by the handler with id `kind`. */
export function describeVma(vma: VmaInfo, kind: number, path = ''): SavedVma {
  return {
    start: vma.start,
    end: vma.end,
    prot: protOf(vma),
    flags: mapFlags(vma),
    pgoff: vma.offset,
    madv: madvOf(vma),
    path,
    kind,
    nrPages: 0,
  };
}

/** Where the memory phase keeps the task's open pagemap while it plans (see withPagemap). */
const PAGEMAP_KEY = 'mm:pagemap';

/**
 * Run `fn` with the task's /proc/PID/pagemap open once for every region's
 * page runs (instead of an open per region).
 */
export function withPagemap<T>(task: CheckpointTask, fn: () => T): T {
  const pagemap = openPagemapFile(task.pid);
  task.data.set(PAGEMAP_KEY, pagemap);
  try {
    return fn();
  } finally {
    task.data.delete(PAGEMAP_KEY);
    pagemap.close();
  }
}

/** Page runs of `vma`, minus the ranges ckpt itself mapped in the task. */
function presentPages(task: CheckpointTask, vma: VmaInfo, excludeFilePages: boolean) {
  const pagemap = task.data.get(PAGEMAP_KEY) as PagemapFile | undefined;
  const runs = readPageRuns(task.pid, vma.start, vma.end, { excludeFilePages, pagemap });
  const own = task.ownMappings;
  if (own.length === 0) return runs;
  return runs.filter((r) => !own.some((m) => r.start >= m.start && r.start < m.end));
}

/**
 * Map `vma`, posted: it runs with the task's next injected call (see
 * `TaskSyscalls.post`), before anything writes into the region (the mm
 * phase writes pages only after that, see restoreVmas).
 */
function mmap(task: RestartTask, vma: SavedVma, prot: number, flags: number, fd = -1): void {
  const len = vma.end - vma.start;
  task.sys.post(
    [{ name: 'mmap', args: [vma.start, len, prot, flags | MAP_FIXED, fd, vma.pgoff] }],
    {
      done: ([r]) => mmapDone(task, vma, r!),
    },
  );
}

/** Check what a posted mmap of `vma` returned. */
function mmapDone(task: RestartTask, vma: SavedVma, r: bigint): void {
  if (isSyscallError(r)) {
    throw new CkptError(
      'ESYS',
      `${mappingWhat(vma)} in pid ${task.pid} failed: mmap() returned ${errnoText(Number(-r))}`,
      { pid: task.pid, address: vma.start, syscall: 'mmap', errno: Number(-r) },
    );
  }
  mappedAt(task, vma, r);
}

function mappingWhat(vma: SavedVma): string {
  return `mapping 0x${vma.start.toString(16)}-0x${vma.end.toString(16)}${vma.path ? ` (${vma.path})` : ''}`;
}

/**
 * Map `vma` from its file, opened with `openFlags` for it alone (regions
 * of one open file can merge where the original ones did not): open, map
 * and close, posted (see mmap()).
 */
function mmapFile(
  task: RestartTask,
  vma: SavedVma,
  openFlags: number,
  prot: number,
  flags: number,
): void {
  const fd = { result: 0 };
  const len = vma.end - vma.start;
  task.sys.post(
    [
      { name: 'openat', args: [AT_FDCWD, { data: 0 }, openFlags, 0] },
      { name: 'mmap', args: [vma.start, len, prot, flags | MAP_FIXED, fd, vma.pgoff] },
      { name: 'close', args: [fd] },
    ],
    {
      data: [cString(vma.path)],
      done: ([opened, mapped]) => {
        if (isSyscallError(opened!)) {
          throw new CkptError(
            'ESYS',
            `cannot open ${vma.path} in pid ${task.pid} to map it at 0x${vma.start.toString(16)}-0x${vma.end.toString(16)}: ${errnoText(Number(-opened!))}; restart needs every file the process had mapped, at the same path`,
            {
              pid: task.pid,
              path: vma.path,
              address: vma.start,
              syscall: 'openat',
              errno: Number(-opened!),
            },
          );
        }
        mmapDone(task, vma, mapped!);
      },
    },
  );
}

/** Refuse a region the kernel put elsewhere than asked. */
function mappedAt(task: RestartTask, vma: SavedVma, r: bigint): void {
  if (r !== vma.start) {
    throw new CkptError(
      'EFAULT',
      `pid ${task.savedPid}: region 0x${vma.start.toString(16)} was mapped at 0x${r.toString(16)}`,
      {
        pid: task.savedPid,
        address: vma.start,
      },
    );
  }
}

const isAnonKind = (v: VmaInfo) => v.kind === 'anon' || v.kind === 'heap' || v.kind === 'stack';

/** Private anonymous memory: heap, stacks, malloc arenas, PROT_NONE guards. */
export const anonPrivate: VmaHandler = {
  kind: 'anon-private',
  id: VmaKind.ANON_PRIVATE,
  match: (v) => !v.shared && isAnonKind(v),
  describe: (_task, v) => describeVma(v, VmaKind.ANON_PRIVATE),
  // The shared zero page counts as a file page: skipping those skips
  // pages that were only ever read, which restart gives back as zeros.
  pages: (task, v) => presentPages(task, v, true),
  restore(_ctx, task, vma) {
    // Pages are written through /proc/PID/mem, which may write any page of
    // a private mapping: map with the final protection straight away.
    const flags = (vma.flags & KEPT_FLAGS) | MAP_PRIVATE | MAP_ANONYMOUS;
    if (!(vma.flags & VMA_KEEP_APART)) {
      // A large region is filled through the task's userfaultfd, which
      // needs its pages missing. Otherwise a mostly-filled region is faster
      // to populate in one go than page by page as its contents are written.
      const byUffd = planUffdFill(task, vma);
      const mostlyFilled = BigInt(vma.nrPages) * PAGE * 2n >= vma.end - vma.start;
      const populate = !byUffd && mostlyFilled && vma.nrPages > 256;
      mmap(task, vma, vma.prot, flags | (populate ? MAP_POPULATE : 0));
      return;
    }
    // Give the region an anon_vma of its own before it can merge. Mapping
    // it with another protection keeps mmap from merging it; DONTFORK keeps
    // the page fault from sharing the neighbour's anon_vma (which ignores
    // protection bits); the fault allocates one. Then everything goes back,
    // and distinct anon_vmas keep the kernel from merging the two.
    const len = vma.end - vma.start;
    mmap(task, vma, vma.prot === PROT_READ ? PROT_NONE : PROT_READ, flags);
    task.sys.check('madvise', [vma.start, len, MADV_STATE[0].advice], 'separating a region');
    task.mem.write(vma.start, Buffer.alloc(1));
    task.sys.check('mprotect', [vma.start, len, vma.prot], 'setting protection');
    task.sys.check('madvise', [vma.start, len, MADV_DOFORK], 'separating a region');
    task.sys.check('madvise', [vma.start, PAGE, MADV_DONTNEED], 'dropping the separating page');
  },
};

/**
 * Mark private anonymous regions that an identical neighbour would absorb
 * at restart (see {@link VMA_KEEP_APART}).
 */
export function markKeepApart(vmas: readonly { vma: VmaInfo; saved: SavedVma }[]): void {
  const mergeable = (a: (typeof vmas)[number], b: (typeof vmas)[number]) =>
    a.saved.kind === VmaKind.ANON_PRIVATE &&
    b.saved.kind === VmaKind.ANON_PRIVATE &&
    a.vma.end === b.vma.start &&
    a.saved.prot === b.saved.prot &&
    a.saved.flags === b.saved.flags;
  for (let i = 0; i + 1 < vmas.length; i++) {
    const a = vmas[i]!;
    const b = vmas[i + 1]!;
    if (mergeable(a, b)) {
      a.saved.flags = (a.saved.flags | VMA_KEEP_APART) >>> 0;
      b.saved.flags = (b.saved.flags | VMA_KEEP_APART) >>> 0;
    }
  }
}

/** Private file mappings: text, data, relro; pages that differ from the file are saved. */
export const filePrivate: VmaHandler = {
  kind: 'file-private',
  id: VmaKind.FILE_PRIVATE,
  match: (v) => !v.shared && v.kind === 'file' && !v.deleted,
  describe: (_task, v) => describeVma(v, VmaKind.FILE_PRIVATE, v.pathname),
  pages: (task, v) => presentPages(task, v, true),
  restore(ctx, task, vma) {
    checkMappedFile(ctx, task, vma);
    mmapFile(task, vma, O_RDONLY | O_CLOEXEC, vma.prot, (vma.flags & KEPT_FLAGS) | MAP_PRIVATE);
  },
};

/**
 * A VMA handler of this package whose regions map a shared object: the mm
 * phase references the object (written through the objhash on its first
 * appearance) right before the region's VMA record, which names its objref.
 */
export interface ObjectVmaHandler extends VmaHandler {
  /** Reference the object `vma` maps; returns its objref. */
  checkpointObject(ctx: CheckpointCtx, task: CheckpointTask, vma: VmaInfo): number;
}

/**
 * Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS): its contents belong
 * to the shmem object (see shmem.ts), saved once for every task that maps it.
 */
export const anonShared: ObjectVmaHandler = {
  kind: 'anon-shared',
  id: VmaKind.ANON_SHARED,
  match: isShmemAnon,
  describe: (_task, v) => describeVma(v, VmaKind.ANON_SHARED),
  pages: () => [],
  checkpointObject: checkpointShmem,
  restore(ctx, task, vma) {
    withShmemFd(ctx, task, vma, (fd) => {
      mmap(task, vma, vma.prot, MAP_SHARED, fd);
    });
  },
};

/**
 * A deleted file mapped shared (an unlinked POSIX semaphore or shm_open
 * object): its contents are a `ghost` object of @ckpt/fs, saved once for
 * every mapping and open file of it; restart maps the recreated file.
 */
export const deletedFileShared: ObjectVmaHandler = {
  kind: 'file-shared-deleted',
  id: VmaKind.FILE_SHARED_DELETED,
  match: isDeletedSharedFile,
  describe: (_task, v) => describeVma(v, VmaKind.FILE_SHARED_DELETED, v.pathname),
  pages: () => [],
  checkpointObject: checkpointMappedGhost,
  restore: (ctx, task, vma) => mapGhost(ctx, task, vma, MAP_SHARED),
};

/** Map the recreated deleted file of `vma` (its ghost, by the record's objref) with `flags`. */
function mapGhost(ctx: RestartCtx, task: RestartTask, vma: SavedVma, flags: number): void {
  const what = `pid ${task.savedPid}: mapping deleted file ${vma.path}`;
  const { fd } = ghostFdInTask(ctx, task, (vma as VmaRecord).objref, what);
  try {
    mmap(task, vma, vma.prot, flags, fd);
  } finally {
    closeInTask(task, fd);
  }
}

/** The ghost of the deleted file `v` maps (see @ckpt/fs's ghost.ts); its objref. */
function checkpointMappedGhost(ctx: CheckpointCtx, task: CheckpointTask, v: VmaInfo): number {
  return checkpointGhost(ctx, { major: v.devMajor, minor: v.devMinor }, v.inode, {
    pid: task.pid,
    source: mapFilesPath(task.pid, v),
    path: mapsFilePath(v),
    where: `the mapping 0x${v.start.toString(16)}-0x${v.end.toString(16)}`,
  });
}

/**
 * A deleted file mapped privately: a library or program replaced while
 * the process runs (a package upgrade). Its contents are a `ghost` object
 * as for a shared mapping; restart maps the recreated file privately, and
 * the pages the process changed are saved and written back, as for any
 * private file mapping.
 */
export const deletedFilePrivate: ObjectVmaHandler = {
  kind: 'file-private-deleted',
  id: VmaKind.FILE_PRIVATE_DELETED,
  match: (v) => !v.shared && v.kind === 'file' && v.deleted,
  describe: (_task, v) => describeVma(v, VmaKind.FILE_PRIVATE_DELETED, v.pathname),
  pages: (task, v) => presentPages(task, v, true),
  checkpointObject: checkpointMappedGhost,
  restore: (ctx, task, vma) => mapGhost(ctx, task, vma, (vma.flags & KEPT_FLAGS) | MAP_PRIVATE),
};

/** Shared file mappings: the contents live in the file. */
export const fileShared: VmaHandler = {
  kind: 'file-shared',
  id: VmaKind.FILE_SHARED,
  match: (v) => v.shared && v.kind === 'file' && !v.deleted,
  describe: (_task, v) => describeVma(v, VmaKind.FILE_SHARED, v.pathname),
  pages: () => [],
  restore(_ctx, task, vma) {
    const openFlags = (vma.prot & PROT_WRITE ? O_RDWR : O_RDONLY) | O_CLOEXEC;
    mmapFile(task, vma, openFlags, vma.prot, MAP_SHARED);
  },
};

/**
 * The kernel's own mappings. They carry no pages: restart moves this
 * kernel's copies to the saved addresses before any region is mapped.
 */
function special(kind: 'vdso' | 'vvar' | 'vvar_vclock', id: number): VmaHandler {
  return {
    kind,
    id,
    match: (v) => v.kind === kind,
    describe: (_task, v) => describeVma(v, id),
    pages: () => [],
    restore: () => undefined,
  };
}

export const vdso = special('vdso', VmaKind.VDSO);
export const vvar = special('vvar', VmaKind.VVAR);
export const vvarVclock = special('vvar_vclock', VmaKind.VVAR_VCLOCK);

/** Every VMA handler of this package, in match order. */
export const vmaHandlers: readonly VmaHandler[] = [
  vdso,
  vvar,
  vvarVclock,
  anonShared,
  deletedFileShared,
  anonPrivate,
  filePrivate,
  deletedFilePrivate,
  fileShared,
];

/** Explain why a region has no handler. */
export function unsupported(task: CheckpointTask, v: VmaInfo): CkptError {
  // SysV segments and memfds show as deleted files too: named first.
  const sysvKey = /^\/SYSV([0-9a-f]{8})/.exec(v.pathname)?.[1];
  const what =
    sysvKey !== undefined
      ? `is a SysV shared memory segment (key 0x${sysvKey}, shmat)`
      : `is of an unsupported kind (${v.kind}${v.pathname ? `, ${v.pathname}` : ''})`;
  return new CkptError(
    'ENOTSUP',
    `pid ${task.pid}: memory region 0x${v.start.toString(16)}-0x${v.end.toString(16)} ${what}; ckpt cannot checkpoint it yet`,
    { pid: task.pid, address: v.start, path: v.pathname || undefined },
  );
}
