/**
 * The memory phase: the whole address space of a task. Checkpoint writes the
 * layout (mm record), then each VMA with its pages. Restart empties the new
 * task's address space, moves this kernel's vdso/vvar to the saved
 * addresses, recreates every VMA, writes the pages, and installs brk, the
 * arg/env areas, auxv and the exe file with prctl(PR_SET_MM_MAP).
 */

import { statSync } from 'node:fs';
import {
  type CheckpointCtx,
  type CheckpointTask,
  CkptError,
  cString,
  encodePrctlMmMap,
  errnoText,
  InjectedRead,
  isSyscallError,
  PR,
  PR_SET_MM,
  PRCTL_MM_MAP_SIZE,
  type RecordValue,
  type RestartCtx,
  type RestartTask,
  readAuxv,
  readExe,
  readMaps,
  readSmapsFlags,
  type SavedVma,
  type SyscallRequest,
  stage,
  type TaskMemory,
  type TaskPhase,
  type TaskSyscalls,
  type VmaHandler,
  type VmaInfo,
} from '@ckpt/core';
import { checkpointGhost, ghostFdInTask, major, minor } from '@ckpt/fs';
import { type FileIdentity, mappedFileIdentity, NO_IDENTITY } from './file-identity.js';
import { countPages, dumpPages, type PageRun, restorePages } from './pages.js';
import { mmRecord, VmaKind, vmaRecord } from './records.js';
import { refusedMemory, refuseMemoryOf } from './refused-memory.js';
import { restoringMemoryOf } from './shmem.js';
import { closeTaskUffd, fillRegion } from './uffd-fill.js';
import {
  isSealed,
  markKeepApart,
  type ObjectVmaHandler,
  restoreMadvise,
  restoreSeals,
  unsupported,
  withPagemap,
} from './vmas.js';

const O_RDONLY_CLOEXEC = 0o2000000;
const AT_FDCWD = -100;
/** Offset of exe_fd in struct prctl_mm_map. */
const MM_MAP_EXE_FD = 100;
const MREMAP_MAYMOVE = 1;
const MREMAP_FIXED = 2;
const PROT_NONE = 0;
const MAP_PRIVATE_ANON = 0x22;

const SPECIAL_KINDS: Record<string, number> = {
  vdso: VmaKind.VDSO,
  vvar: VmaKind.VVAR,
  vvar_vclock: VmaKind.VVAR_VCLOCK,
};

/** A decoded mm record. */
type MmRecord = RecordValue<typeof mmRecord>;

interface PlannedVma {
  vma: VmaInfo;
  handler: VmaHandler;
  saved: SavedVma & FileIdentity;
  runs: PageRun[];
}

function plan(ctx: CheckpointCtx, task: CheckpointTask): PlannedVma[] {
  const own = task.ownMappings;
  const out: PlannedVma[] = [];
  // [vsyscall] is fixed by the kernel above user space; ckpt's scratch
  // areas are not the task's.
  const vmas = readSmapsFlags(task.pid).filter((v) => v.kind !== 'vsyscall');
  for (const vma of own.length === 0 ? vmas : vmas.flatMap((v) => outside(v, own))) {
    // Before the handlers: these would pass for deleted files.
    const refused = refusedMemory(task.pid, vma);
    if (refused) throw refused;
    const handler = ctx.registry.vmaHandlerFor(vma);
    if (!handler) throw unsupported(task, vma);
    const runs = handler.pages(task, vma);
    out.push({
      vma,
      handler,
      runs,
      saved: {
        ...handler.describe(task, vma),
        nrPages: countPages(runs),
        // Private file mappings take their unchanged pages from the file.
        ...(handler.id === VmaKind.FILE_PRIVATE ? mappedFileIdentity(ctx, task, vma) : NO_IDENTITY),
      },
    });
  }
  markKeepApart(out);
  return out;
}

/**
 * The parts of `vma` outside ckpt's own areas `own`. An anonymous area the
 * kernel placed next to another with the same protection is merged with it
 * into one VMA: ckpt's areas of several threads, or one of them and a
 * writable, executable region of the task's own.
 */
function outside(vma: VmaInfo, own: readonly { start: bigint; end: bigint }[]): VmaInfo[] {
  // Nearly every VMA is clear of them: no copies then.
  if (!own.some((m) => m.end > vma.start && m.start < vma.end)) return [vma];
  let parts: VmaInfo[] = [vma];
  for (const m of own) {
    parts = parts.flatMap((p) => {
      if (m.end <= p.start || m.start >= p.end) return [p];
      const kept: VmaInfo[] = [];
      if (p.start < m.start) kept.push({ ...p, end: m.start });
      if (m.end < p.end) kept.push({ ...p, start: m.end, offset: p.offset + (m.end - p.start) });
      return kept;
    });
  }
  return parts;
}

/** The program break: brk(0) in the task (/proc shows only where the heap starts). */
const brkRead = new InjectedRead<bigint>('mm:brk', (task, done) =>
  task.sys.postChecked([{ name: 'brk', args: [0], what: 'reading brk' }], {
    done: ([brk]) => done(brk!),
  }),
);

const DELETED = ' (deleted)';

/**
 * The `ghost` of a deleted exe (the program was replaced while it runs),
 * written before the mm record that names it; its text mappings refer to
 * the same object. Returns its objref.
 */
function checkpointExeGhost(ctx: CheckpointCtx, task: CheckpointTask, exe: string): number {
  const source = `/proc/${task.pid}/exe`;
  const st = statSync(source);
  return checkpointGhost(ctx, { major: major(st.dev), minor: minor(st.dev) }, st.ino, {
    pid: task.pid,
    source,
    path: exe.slice(0, -DELETED.length),
    where: 'its executable',
    readOnly: true,
  });
}

function checkpointMm(ctx: CheckpointCtx, task: CheckpointTask): void {
  const vmas = withPagemap(task, () => plan(ctx, task));
  const exe = readExe(task.pid);
  const st = task.stat;
  const brk = brkRead.get(task);
  const auxv = readAuxv(task.pid).flatMap((e) => [BigInt(e.type), e.value]);
  ctx.write(mmRecord, {
    startCode: st.startcode,
    endCode: st.endcode,
    startData: st.startData,
    endData: st.endData,
    startBrk: st.startBrk,
    brk,
    startStack: st.startstack,
    argStart: st.argStart,
    argEnd: st.argEnd,
    envStart: st.envStart,
    envEnd: st.envEnd,
    auxv,
    exe,
    exeGhost: exe.endsWith(DELETED) ? checkpointExeGhost(ctx, task, exe) : 0,
    layout: vmas.map((p) => ({ start: p.vma.start, end: p.vma.end, kind: p.handler.id })),
  });
  const total = vmas.reduce((n, p) => n + countPages(p.runs), 0);
  ctx.progress.start(`memory of pid ${task.pid}`, ctx.stats.pages + total);
  for (const p of vmas) {
    // A shared object goes first (once per image): restart needs it to map the region.
    const objref =
      'checkpointObject' in p.handler
        ? (p.handler as ObjectVmaHandler).checkpointObject(ctx, task, p.vma)
        : 0;
    ctx.write(vmaRecord, { ...p.saved, objref });
    dumpPages(ctx, task.mem, p.runs);
  }
  ctx.progress.end();
}

/** A special area (vdso, vvar) of this kernel to move where the image had it. */
interface SpecialMove {
  from: { start: bigint; end: bigint };
  to: bigint;
  size: bigint;
}

/**
 * Empty the address space the new task inherited from the stub, keeping
 * the restorer and this kernel's vdso/vvar areas, and move those to where
 * the image had them (each parked in a temporary area first, so that moves
 * cannot collide with each other). Posted: it runs with the first
 * mappings of the image's regions, in the same round trip.
 */
function replaceAddressSpace(
  task: RestartTask,
  wanted: readonly { start: bigint; end: bigint; kind: number }[],
): void {
  const current = new Map<number, { start: bigint; end: bigint }>();
  const unmaps: { start: bigint; end: bigint }[] = [];
  for (const m of readMaps(task.pid)) {
    const special = SPECIAL_KINDS[m.kind];
    if (special !== undefined) current.set(special, { start: m.start, end: m.end });
    else if (m.kind === 'vsyscall') continue;
    else if (m.start >= task.restorer.start && m.end <= task.restorer.end) continue;
    else unmaps.push(m);
  }
  const moves = planSpecialMoves(task, current, wanted);
  // An unused special area goes with the rest.
  for (const [kind, area] of current) if (!wanted.some((w) => w.kind === kind)) unmaps.push(area);
  const flags = MREMAP_MAYMOVE | MREMAP_FIXED;
  // Call indexes: the munmaps, then one reservation per move, then the moves.
  const parked = (i: number) => ({ result: unmaps.length + i });
  task.sys.postChecked([
    ...unmaps.map((m) => ({
      name: 'munmap' as const,
      args: [m.start, m.end - m.start],
      what: 'emptying the address space',
    })),
    ...moves.map((m) => ({
      name: 'mmap' as const,
      args: [0, m.size, PROT_NONE, MAP_PRIVATE_ANON, -1, 0],
      what: 'reserving a temporary area',
    })),
    ...moves.map((m, i) => ({
      name: 'mremap' as const,
      args: [m.from.start, m.size, m.size, flags, parked(i)],
      what: 'moving the vdso',
    })),
    ...moves.map((m, i) => ({
      name: 'mremap' as const,
      args: [parked(i), m.size, m.size, flags, m.to],
      what: 'placing the vdso',
    })),
  ]);
}

/**
 * Where each of this kernel's special areas goes; refuses an image whose
 * areas this kernel does not have, or has in another size.
 */
function planSpecialMoves(
  task: RestartTask,
  current: Map<number, { start: bigint; end: bigint }>,
  wanted: readonly { start: bigint; end: bigint; kind: number }[],
): SpecialMove[] {
  const moves: SpecialMove[] = [];
  for (const [kind, from] of current) {
    const to = wanted.find((w) => w.kind === kind);
    if (!to) continue;
    const size = from.end - from.start;
    if (to.end - to.start !== size) {
      throw new CkptError(
        'ENOTSUP',
        `pid ${task.savedPid}: this kernel's ${kindName(kind)} is ${size} bytes, the image's ${to.end - to.start}; restart on the kernel the image was taken on`,
        { pid: task.savedPid },
      );
    }
    moves.push({ from, to: to.start, size });
  }
  for (const w of wanted) {
    if (!current.has(w.kind)) {
      throw new CkptError(
        'ENOTSUP',
        `pid ${task.savedPid}: the image has a ${kindName(w.kind)} but this kernel gives none`,
        {
          pid: task.savedPid,
        },
      );
    }
  }
  return moves;
}

function kindName(kind: number): string {
  return Object.entries(SPECIAL_KINDS).find(([, k]) => k === kind)?.[0] ?? `kind ${kind}`;
}

function restoreMm(ctx: RestartCtx, task: RestartTask): void {
  const mm = ctx.read(mmRecord);
  task.keepRestorerClear(mm.layout);
  replaceAddressSpace(
    task,
    mm.layout.filter((l) => Object.values(SPECIAL_KINDS).includes(l.kind)),
  );
  ctx.progress.start(`memory of pid ${task.savedPid}`, 0);
  restoringMemoryOf(ctx, task, () => restoreVmas(ctx, task, mm));
  ctx.progress.end();
}

/**
 * Read and recreate the VMAs of `mm` (shared objects they map are restored
 * on the way). The mappings are posted (see vmas.ts) and the pages of plain
 * regions are held back, then written once the mappings exist: many
 * regions cost one round trip into the task instead of one each. A region
 * with a follow-up or many pages is completed in order, right away (large
 * fresh anonymous ones through the task's userfaultfd: uffd-fill.ts). The
 * madvise state of each is posted after its mapping. PR_SET_MM_MAP runs
 * with the final mappings (see mmMapCalls).
 */
function restoreVmas(ctx: RestartCtx, task: RestartTask, mm: MmRecord): void {
  let sealed: SavedVma[];
  try {
    sealed = restoreEachVma(ctx, task, mm);
  } finally {
    closeTaskUffd(task);
  }
  // Last: nothing may change a sealed region after (see restoreSeals).
  restoreSeals(task, sealed);
}

/** Recreate every VMA of `mm`; returns those to seal once all are done. */
function restoreEachVma(ctx: RestartCtx, task: RestartTask, mm: MmRecord): SavedVma[] {
  const held = new HeldPages(task);
  const sealed: SavedVma[] = [];
  for (let i = 0; i < mm.layout.length; i++) {
    const vma = ctx.read(vmaRecord);
    if (isSealed(vma)) sealed.push(vma);
    const handler = ctx.registry.vmaHandlerById(vma.kind);
    if (!handler) {
      throw new CkptError('EBADREC', `VMA record of unknown kind ${vma.kind} (missing plugin?)`, {
        recordType: vmaRecord.type,
        offset: ctx.reader.offset,
      });
    }
    const after = handler.restore(ctx, task, vma);
    if (!after && vma.nrPages <= HELD_PAGES_MAX) {
      restorePages(ctx, held, vma.nrPages, vma, (bytes) => held.reserve(bytes));
    } else {
      held.flush();
      const write = (mem: TaskMemory) => restorePages(ctx, mem, vma.nrPages, vma);
      if (!fillRegion(task, vma, write)) write(task.mem);
      after?.();
    }
    restoreMadvise(task, vma);
  }
  // A deleted exe: its recreated file, in the task, stands for it.
  const exeFd = mm.exeGhost
    ? ghostFdInTask(ctx, task, mm.exeGhost, `pid ${task.savedPid}: its deleted executable`).fd
    : undefined;
  // Staged only now: nothing may overwrite the scratch area before it runs.
  const { calls, check } = mmMapCalls(task, mm, exeFd);
  // The last round trip runs while ckpt goes on with the next phases and
  // tasks; whatever next needs this task stopped completes it.
  held.launch(calls, check);
  return sealed;
}

/** Pages held back at most, per region and in all (bytes: 4 KiB pages). */
const HELD_PAGES_MAX = 1024;
const HELD_BYTES_MAX = 16 << 20;

/**
 * Where held pages wait: two areas, reused by the tasks of every restart in
 * turn. Pages are read from the image straight into one (copying out of
 * the shared chunk buffers would go byte by byte, and fresh memory costs a
 * fault per page). An area's last task may still have its round trip, and
 * so the writes from the area, in flight (see {@link HeldPages.launch}).
 */
const heldAreas: { buf?: Buffer; pending?: TaskSyscalls }[] = [{}, {}];
let lastArea = 0;

/**
 * Page writes held back until the posted mappings they go into exist:
 * {@link flush} runs the task's posted calls, then writes them in order.
 * Their data lives in a held area, handed out by {@link reserve}.
 */
class HeldPages implements TaskMemory {
  private writes: { addr: bigint; data: Buffer }[] = [];
  private used = 0;
  private readonly area: (typeof heldAreas)[number];

  constructor(private readonly task: RestartTask) {
    lastArea ^= 1;
    this.area = heldAreas[lastArea]!;
    this.area.pending?.settle();
    this.area.pending = undefined;
  }

  /** Room for `bytes` of pages to be written later (flushing first if full). */
  reserve(bytes: number): Buffer {
    this.area.buf ??= Buffer.allocUnsafeSlow(HELD_BYTES_MAX);
    const buf = this.area.buf;
    if (this.used + bytes > buf.length) this.flush();
    const room = buf.subarray(this.used, this.used + bytes);
    this.used += bytes;
    return room;
  }

  /** Hold a write of `data`, which must lie in the held area (see {@link reserve}). */
  write(addr: bigint, data: Buffer): void {
    this.writes.push({ addr, data });
  }

  read(): Buffer {
    throw new CkptError('EUNEXPECTED', 'held pages cannot be read');
  }

  readInto(): void {
    throw new CkptError('EUNEXPECTED', 'held pages cannot be read');
  }

  /** Run the posted calls and `calls` (their results), then write the pages. */
  flush(calls: readonly SyscallRequest[] = []): bigint[] {
    const results = this.task.sys.batch(calls);
    this.writeHeld();
    return results;
  }

  /**
   * {@link flush} in the background (see `TaskSyscalls.launch`): `check`
   * gets the results of `calls` and the pages are written when the task's
   * round trip is completed, at the latest when the area is next used.
   */
  launch(calls: readonly SyscallRequest[], check: (results: readonly bigint[]) => void): void {
    const sys = this.task.sys;
    this.area.pending = sys;
    sys.launch(calls, (results) => {
      if (this.area.pending === sys) this.area.pending = undefined;
      check(results);
      this.writeHeld();
    });
  }

  private writeHeld(): void {
    const writes = this.writes.splice(0);
    const mem = this.task.mem;
    if (mem.writeEach) mem.writeEach(writes);
    else for (const w of writes) mem.write(w.addr, w.data);
    this.used = 0;
  }
}

/**
 * The calls that install brk, the arg/env areas, auxv and the exe file with
 * prctl(PR_SET_MM_MAP) once every region is mapped, and the check of their
 * results: run with the last mappings, in their round trip.
 */
function mmMapCalls(
  task: RestartTask,
  mm: MmRecord,
  exeFd?: number,
): { calls: SyscallRequest[]; check: (results: readonly bigint[]) => void } {
  const auxv = Buffer.alloc(mm.auxv.length * 8);
  mm.auxv.forEach((v, i) => {
    auxv.writeBigUInt64LE(v, i * 8);
  });
  const [auxvAddr] = stage(task, [auxv]);
  const map = encodePrctlMmMap({
    startCode: mm.startCode,
    endCode: mm.endCode,
    startData: mm.startData,
    endData: mm.endData,
    startBrk: mm.startBrk,
    brk: mm.brk,
    startStack: mm.startStack,
    argStart: mm.argStart,
    argEnd: mm.argEnd,
    envStart: mm.envStart,
    envEnd: mm.envEnd,
    auxv: auxvAddr!,
    auxvSize: auxv.length,
    exeFd: exeFd ?? 0,
  });
  if (exeFd !== undefined) {
    const [, mapAt] = stage(task, [auxv, map]);
    return {
      calls: [
        { name: 'prctl', args: [PR.SET_MM, PR_SET_MM.MAP, mapAt!, PRCTL_MM_MAP_SIZE, 0] },
        { name: 'close', args: [exeFd] },
      ],
      check: ([r]) => checkMmMap(task, mm, 0n, r!),
    };
  }
  // The auxv stays staged first in the scratch area; the map goes after it
  // (with room for the 8-byte copy of the exe's fd into its exe_fd), then
  // the exe's path. One batch of injected calls opens the exe, puts the fd
  // in the map, installs the map and closes the fd.
  const [, mapAddr, , exePath] = stage(task, [auxv, map, Buffer.alloc(8), cString(mm.exe)]);
  const calls: SyscallRequest[] = [
    {
      name: 'openat',
      args: [AT_FDCWD, exePath!, O_RDONLY_CLOEXEC, 0],
      resultTo: [mapAddr! + BigInt(MM_MAP_EXE_FD)],
    },
    { name: 'prctl', args: [PR.SET_MM, PR_SET_MM.MAP, mapAddr!, PRCTL_MM_MAP_SIZE, 0] },
    { name: 'close', args: [{ result: 0 }] },
  ];
  return { calls, check: ([opened, r]) => checkMmMap(task, mm, opened!, r!) };
}

function checkMmMap(task: RestartTask, mm: MmRecord, opened: bigint, r: bigint): void {
  if (isSyscallError(opened)) {
    throw new CkptError(
      'ESYS',
      `cannot open ${mm.exe} in pid ${task.pid}: ${errnoText(Number(-opened))}`,
      {
        pid: task.pid,
        path: mm.exe,
        syscall: 'openat',
        errno: Number(-opened),
      },
    );
  }
  if (isSyscallError(r)) {
    throw new CkptError(
      'ESYS',
      `prctl(PR_SET_MM_MAP) in pid ${task.pid} failed: prctl() returned ${errnoText(Number(-r))}`,
      { pid: task.pid, syscall: 'prctl', errno: Number(-r) },
    );
  }
}

/** The memory phase (order 200: after credentials are read, before files). */
export const mmPhase: TaskPhase = {
  name: 'mm',
  order: 200,
  prepare(_ctx, task) {
    // Refused while nothing of the tree is saved yet, from the maps read
    // at freeze (plan() checks the smaps flags again, for what maps cannot
    // name).
    refuseMemoryOf(task, task.maps);
    brkRead.post(task);
  },
  checkpoint: checkpointMm,
  restore: restoreMm,
};
