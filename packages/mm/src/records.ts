/** The memory subsystem's records (401–449). */
import {
  array,
  defineRecord,
  RecordType,
  type RecordValue,
  str,
  struct,
  u32,
  u64,
  u64s,
} from '@ckpt/core';

/** Ids of the VMA kinds (the `kind` field of VMA records). */
export const VmaKind = {
  ANON_PRIVATE: 1,
  FILE_PRIVATE: 2,
  ANON_SHARED: 3,
  FILE_SHARED: 4,
  VDSO: 5,
  VVAR: 6,
  VVAR_VCLOCK: 7,
  FILE_SHARED_DELETED: 8,
  FILE_PRIVATE_DELETED: 9,
} as const;

/** Printable names of {@link VmaKind}. */
export const VMA_KIND_NAMES: Record<number, string> = {
  1: 'anon-private',
  2: 'file-private',
  3: 'anon-shared',
  4: 'file-shared',
  5: 'vdso',
  6: 'vvar',
  7: 'vvar_vclock',
  8: 'file-shared-deleted',
  9: 'file-private-deleted',
};

/** The address-space layout of a task, before its VMAs. */
export const mmRecord = defineRecord(RecordType.MM, 'mm', 'address space layout', {
  startCode: u64('hex'),
  endCode: u64('hex'),
  startData: u64('hex'),
  endData: u64('hex'),
  startBrk: u64('hex'),
  brk: u64('hex'),
  startStack: u64('hex'),
  argStart: u64('hex'),
  argEnd: u64('hex'),
  envStart: u64('hex'),
  envEnd: u64('hex'),
  /** The auxiliary vector as saved by the kernel (type, value pairs). */
  auxv: array(u64('hex'), 512),
  /** /proc/PID/exe. */
  exe: str(4096),
  /** Objref of the `ghost` object of the exe when it was deleted (replaced while running); 0 otherwise. */
  exeGhost: u32(),
  /** Every VMA's range and kind, so restart can plan before reading them. */
  layout: array(
    struct({ start: u64('hex'), end: u64('hex'), kind: u32('dec', VMA_KIND_NAMES) }),
    1 << 20,
  ),
});

/** One memory region; its pages follow in `pgarr` + `buffer` chunks. */
export const vmaRecord = defineRecord(RecordType.VMA, 'vma', 'memory region', {
  start: u64('hex'),
  end: u64('hex'),
  prot: u32('hex'),
  flags: u32('hex'),
  pgoff: u64('hex'),
  /**
   * madvise and mlock state: 1 MADV_DONTFORK, 2 MADV_DONTDUMP, 4
   * MADV_WIPEONFORK, 8 MADV_HUGEPAGE, 16 MADV_NOHUGEPAGE, 32 locked
   * (mlock), 64 locked on fault (mlock2 MLOCK_ONFAULT; with 32), 128
   * sealed (mseal).
   */
  madv: u32('hex'),
  path: str(4096),
  kind: u32('dec', VMA_KIND_NAMES),
  nrPages: u32(),
  /**
   * Size and mtime (ns) of the file a private file mapping maps, as at
   * checkpoint (restart refuses a changed file); 0 for other kinds.
   */
  fileSize: u64(),
  fileMtimeNs: u64(),
  /**
   * The shared object the region maps: objref of a `shmem` object for
   * anon-shared regions, of a `ghost` object (@ckpt/fs) for
   * file-shared-deleted ones, 0 for every other kind.
   */
  objref: u32(),
});

/** A VMA record as written and read. */
export type VmaRecord = RecordValue<typeof vmaRecord>;

/**
 * A chunk of pages: their addresses; the contents follow in one `buffer`
 * record (count × page size bytes), as the seed's `ckpt_hdr_pgarr`.
 */
export const pgarrRecord = defineRecord(
  RecordType.PGARR,
  'pgarr',
  'addresses of a chunk of pages',
  {
    addrs: u64s(1 << 16),
  },
);

/**
 * Record type of a shared memory object. Core's RecordType table has the
 * memory range up to MM_CONTEXT (404); this is the next number.
 */
export const SHMEM = 405;

/**
 * A shared anonymous memory object (the shmem inode behind MAP_SHARED|
 * MAP_ANONYMOUS), once per image, right after the objref record that
 * defines it. Its contents follow in `nrPages` pages of `pgarr` + `buffer`
 * chunks whose `addrs` are byte offsets in the object, not addresses (the
 * seed indexes them by page of the backing inode): the object may be
 * mapped at different addresses, or only in part, in each task.
 */
export const shmemRecord = defineRecord(SHMEM, 'shmem', 'shared anonymous memory object', {
  /** Its inode at checkpoint (for messages only). */
  inode: u64(),
  /** Size of the object (i_size): the length of the original mapping. */
  size: u64('hex'),
  nrPages: u32(),
});
