/**
 * Memory ckpt refuses to checkpoint, named plainly. Each of these kinds
 * looks like something ckpt handles (a deleted file, mostly), and saving it
 * as that would restart a different program: huge pages as an ordinary
 * file on disk, an AIO ring as a file no kernel knows, secret memory that
 * cannot be read at all. The checks run on /proc/PID/maps in the mm
 * phase's prepare, before anything of the tree is saved, and on the smaps
 * VmFlags when the regions are planned (for huge pages maps cannot name).
 */
import { type CheckpointTask, CkptError, type MapsEntry } from '@ckpt/core';

/** A refused kind: how maps shows it, and what the message says. */
interface RefusedKind {
  /** Whether region `v` is of this kind (`vmFlags` when read from smaps). */
  match(v: MapsEntry & { vmFlags?: ReadonlySet<string> }): boolean;
  /** What the region is, after "memory region A-B is". */
  what: string;
  /** What is not supported, and what to do. */
  advice: string;
}

const REFUSED: readonly RefusedKind[] = [
  {
    // MAP_HUGETLB|MAP_ANONYMOUS (private or shared) maps a file of the
    // kernel's internal hugetlbfs mount, "/anon_hugepage (deleted)"; a
    // hugetlbfs file or MFD_HUGETLB memfd shows only in VmFlags (`ht`).
    match: (v) => v.pathname === '/anon_hugepage (deleted)' || (v.vmFlags?.has('ht') ?? false),
    what: 'huge-page memory (hugetlbfs / MAP_HUGETLB)',
    advice:
      'huge-page mappings are not supported yet (restart would give ordinary pages, or a file on disk). Run the program without huge pages (for PostgreSQL, huge_pages = off)',
  },
  {
    // io_setup maps the AIO ring from the kernel's aio filesystem; the
    // kernel's in-flight requests and the context id cannot be recreated.
    match: (v) => v.pathname === '/[aio] (deleted)',
    what: 'a native AIO context ring (io_setup)',
    advice: 'processes with native AIO contexts (io_setup, libaio) are not supported yet',
  },
  {
    // memfd_secret memory is removed from the kernel's direct map: neither
    // /proc/PID/mem nor map_files can read it, by design.
    match: (v) => v.pathname === '/secretmem (deleted)',
    what: 'memfd_secret memory',
    advice: 'memfd_secret memory is not supported (by design, no other process can read it)',
  },
];

const hex = (n: bigint) => `0x${n.toString(16)}`;

/** The CkptError for region `v` of `pid`, if it is of a refused kind. */
export function refusedMemory(
  pid: number,
  v: MapsEntry & { vmFlags?: ReadonlySet<string> },
): CkptError | undefined {
  const kind = REFUSED.find((k) => k.match(v));
  if (!kind) return undefined;
  return new CkptError(
    'ENOTSUP',
    `pid ${pid}: memory region ${hex(v.start)}-${hex(v.end)} is ${kind.what}: ${kind.advice}`,
    { pid, address: v.start, path: v.pathname || undefined },
  );
}

/** Refuse the first region of `vmas` (the task's) that is of a refused kind. */
export function refuseMemoryOf(
  task: CheckpointTask,
  vmas: readonly (MapsEntry & { vmFlags?: ReadonlySet<string> })[],
): void {
  for (const v of vmas) {
    const e = refusedMemory(task.pid, v);
    if (e) throw e;
  }
}
