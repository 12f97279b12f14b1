/**
 * /proc/PID/smaps and /proc/PID/smaps_rollup: per-VMA memory accounting
 * and the VmFlags that tell which VMAs can be dumped and how.
 */
import { type MapsEntry, parseMapsLine } from './maps.js';
import { malformed, procPath, readProcText } from './util.js';

/**
 * Two-letter VmFlags mnemonics (fs/proc/task_mmu.c show_smap_vma_flags),
 * with what each means. Flags the kernel adds later still appear in
 * {@link SmapsEntry.vmFlags}; they are just not described here.
 */
export const VM_FLAG_MEANINGS: Readonly<Record<string, string>> = {
  rd: 'readable',
  wr: 'writable',
  ex: 'executable',
  sh: 'shared',
  mr: 'may read',
  mw: 'may write',
  me: 'may execute',
  ms: 'may share',
  gd: 'stack segment grows down',
  pf: 'pure PFN range',
  lo: 'pages are locked in memory',
  io: 'memory mapped I/O area',
  sr: 'sequential read advise provided',
  rr: 'random read advise provided',
  dc: 'do not copy area on fork',
  de: 'do not expand area on remapping',
  ac: 'area is accountable',
  nr: 'swap space is not reserved for the area',
  ht: 'area uses huge tlb pages',
  sf: 'perform synchronous page faults',
  nl: 'non-linear mapping',
  ar: 'architecture specific flag',
  wf: 'wipe on fork',
  dd: 'do not include area into core dump',
  sd: 'soft-dirty flag',
  mm: 'mixed map area',
  hg: 'huge page advise flag',
  nh: 'no-huge page advise flag',
  mg: 'mergeable advise flag',
  bt: 'arm64 BTI guarded page',
  mt: 'arm64 MTE allocation tags are enabled',
  um: 'userfaultfd missing pages tracking',
  uw: 'userfaultfd wprotect pages tracking',
  ui: 'userfaultfd minor fault',
  ss: 'shadow/guarded control stack page',
  sl: 'sealed',
  lf: 'lock on fault pages',
  dp: 'always lazily freeable mapping',
  gu: 'maybe contains guard regions',
};

/** Byte counts of one smaps entry (the kernel prints kB; these are bytes). */
export interface SmapsSizes {
  size: number;
  kernelPageSize: number;
  mmuPageSize: number;
  rss: number;
  pss: number;
  pssDirty: number;
  /** Pss_Anon, Pss_File, Pss_Shmem: printed by smaps_rollup only. */
  pssAnon: number;
  pssFile: number;
  pssShmem: number;
  sharedClean: number;
  sharedDirty: number;
  privateClean: number;
  privateDirty: number;
  referenced: number;
  anonymous: number;
  ksm: number;
  lazyFree: number;
  anonHugePages: number;
  shmemPmdMapped: number;
  filePmdMapped: number;
  sharedHugetlb: number;
  privateHugetlb: number;
  swap: number;
  swapPss: number;
  locked: number;
}

/** Kernel key → field. Keys missing from the text (older kernels) stay 0. */
const SIZE_KEYS: Record<string, keyof SmapsSizes> = {
  Size: 'size',
  KernelPageSize: 'kernelPageSize',
  MMUPageSize: 'mmuPageSize',
  Rss: 'rss',
  Pss: 'pss',
  Pss_Dirty: 'pssDirty',
  Pss_Anon: 'pssAnon',
  Pss_File: 'pssFile',
  Pss_Shmem: 'pssShmem',
  Shared_Clean: 'sharedClean',
  Shared_Dirty: 'sharedDirty',
  Private_Clean: 'privateClean',
  Private_Dirty: 'privateDirty',
  Referenced: 'referenced',
  Anonymous: 'anonymous',
  KSM: 'ksm',
  LazyFree: 'lazyFree',
  AnonHugePages: 'anonHugePages',
  ShmemPmdMapped: 'shmemPmdMapped',
  FilePmdMapped: 'filePmdMapped',
  Shared_Hugetlb: 'sharedHugetlb',
  Private_Hugetlb: 'privateHugetlb',
  Swap: 'swap',
  SwapPss: 'swapPss',
  Locked: 'locked',
};

/** One VMA of /proc/PID/smaps: its maps line plus accounting and flags. */
export interface SmapsEntry extends MapsEntry {
  sizes: SmapsSizes;
  /** Whether transparent huge pages may back the VMA. */
  thpEligible: boolean;
  /** Two-letter flags, see {@link VM_FLAG_MEANINGS}. */
  vmFlags: Set<string>;
  /** Other "Key: value" lines (e.g. ProtectionKey), value trimmed. */
  extra: Map<string, string>;
}

const EMPTY_SIZES: Readonly<SmapsSizes> = Object.fromEntries(
  Object.values(SIZE_KEYS).map((k) => [k, 0]),
) as unknown as SmapsSizes;

function emptySizes(): SmapsSizes {
  return { ...EMPTY_SIZES };
}

/** A size value: decimal digits and " kB" (checked without a regex: smaps has thousands). */
function parseKb(value: string): number | undefined {
  const digits = value.length - 3;
  if (digits < 1 || !value.endsWith(' kB')) return undefined;
  for (let i = 0; i < digits; i++) {
    const c = value.charCodeAt(i);
    if (c < 48 || c > 57) return undefined;
  }
  const n = Number(value.slice(0, digits));
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Applies one "Key: value" line: a size in kB to `sizes`, anything else to `extra`. */
function applyField(
  key: string,
  value: string,
  sizes: SmapsSizes,
  extra: Map<string, string>,
  file: string,
): void {
  const field = SIZE_KEYS[key];
  if (field === undefined) {
    extra.set(key, value);
    return;
  }
  const kb = parseKb(value);
  if (kb === undefined) throw malformed(file, `${key} is not "N kB": '${value}'`);
  sizes[field] = kb * 1024;
}

/**
 * Parses the text of /proc/PID/smaps.
 * @throws CkptError EINVAL naming the file on a line that is neither a VMA
 * header nor "Key: value"
 */
export function parseSmaps(text: string, file = '/proc/PID/smaps'): SmapsEntry[] {
  const out: SmapsEntry[] = [];
  let cur: SmapsEntry | undefined;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const colon = line.indexOf(':');
    // A key never contains a space; a VMA header always has one before any ':'.
    const space = line.indexOf(' ');
    if (colon > 0 && (space < 0 || space > colon)) {
      const key = line.slice(0, colon);
      if (!cur) throw malformed(file, `'${line}' before the first VMA line`);
      const value = line.slice(colon + 1).trim();
      if (key === 'VmFlags') cur.vmFlags = new Set(value.split(/\s+/).filter((f) => f !== ''));
      else if (key === 'THPeligible') cur.thpEligible = value === '1';
      else applyField(key, value, cur.sizes, cur.extra, file);
      continue;
    }
    const vma = parseMapsLine(line, file);
    if (!vma) throw malformed(file, `not a VMA line: '${line}'`);
    cur = { ...vma, sizes: emptySizes(), thpEligible: false, vmFlags: new Set(), extra: new Map() };
    out.push(cur);
  }
  return out;
}

/**
 * Reads /proc/PID/smaps (empty for zombies and kernel threads).
 * @throws CkptError ESRCH when the process is gone
 */
export function readSmaps(pid: number): SmapsEntry[] {
  return parseSmaps(readProcText(pid, 'smaps'), procPath(pid, 'smaps'));
}

/** A VMA with its flags from /proc/PID/smaps, without the sizes. */
export interface SmapsFlagsEntry extends MapsEntry {
  /** Whether transparent huge pages may back the VMA. */
  thpEligible: boolean;
  /** Two-letter flags, see {@link VM_FLAG_MEANINGS}. */
  vmFlags: Set<string>;
}

/** Is the char at `i` a lowercase hex digit (VMA header lines start with one, keys never do)? */
function isHexAt(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  return (c >= 48 && c <= 57) || (c >= 97 && c <= 102);
}

/**
 * Parses the text of /proc/PID/smaps for the VMAs and their flags only:
 * the size lines, most of the text, are skipped without being split or
 * parsed (checkpoint reads smaps for the flags, of every task).
 * @throws CkptError EINVAL naming the file on a malformed VMA line or a
 * "Key:" line before the first VMA
 */
export function parseSmapsFlags(text: string, file = '/proc/PID/smaps'): SmapsFlagsEntry[] {
  const out: SmapsFlagsEntry[] = [];
  let cur: SmapsFlagsEntry | undefined;
  for (let pos = 0; pos < text.length; ) {
    let eol = text.indexOf('\n', pos);
    if (eol < 0) eol = text.length;
    if (eol === pos) {
      pos = eol + 1;
      continue;
    }
    if (!isHexAt(text, pos)) {
      if (!cur) throw malformed(file, `'${text.slice(pos, eol)}' before the first VMA line`);
      pos = eol + 1; // a size or other line of the current VMA
      continue;
    }
    const line = text.slice(pos, eol);
    const vma = parseMapsLine(line, file);
    if (!vma) throw malformed(file, `not a VMA line: '${line}'`);
    cur = { ...vma, thpEligible: false, vmFlags: new Set() };
    out.push(cur);
    pos = eol + 1;
    // The kernel prints VmFlags last in each VMA's block: jump there.
    const flags = text.indexOf('\nVmFlags:', eol);
    if (flags < 0) continue;
    const thp = text.indexOf('\nTHPeligible:', eol);
    if (thp >= 0 && thp < flags)
      cur.thpEligible = text.charCodeAt(text.indexOf('\n', thp + 1) - 1) === 49;
    let end = text.indexOf('\n', flags + 1);
    if (end < 0) end = text.length;
    for (const f of text.slice(flags + 9, end).split(' ')) if (f !== '') cur.vmFlags.add(f);
    pos = end + 1;
  }
  return out;
}

/**
 * Reads /proc/PID/smaps for the VMAs and their flags (see
 * {@link parseSmapsFlags}); empty for zombies and kernel threads.
 * @throws CkptError ESRCH when the process is gone
 */
export function readSmapsFlags(pid: number): SmapsFlagsEntry[] {
  return parseSmapsFlags(readProcText(pid, 'smaps'), procPath(pid, 'smaps'));
}

/** /proc/PID/smaps_rollup: the sums over all VMAs, one pass in the kernel. */
export interface SmapsRollup {
  /** Start of the first VMA. */
  start: bigint;
  /** End of the last VMA. */
  end: bigint;
  sizes: SmapsSizes;
  /** Any "Key: value" line that is not a size. */
  extra: Map<string, string>;
}

/**
 * Parses the text of /proc/PID/smaps_rollup.
 * @throws CkptError EINVAL when the `[rollup]` header is missing
 */
export function parseSmapsRollup(text: string, file = '/proc/PID/smaps_rollup'): SmapsRollup {
  const [entry, ...more] = parseSmaps(text, file);
  if (!entry || more.length > 0 || entry.pathname !== '[rollup]') {
    throw malformed(file, 'expected exactly one [rollup] header');
  }
  return { start: entry.start, end: entry.end, sizes: entry.sizes, extra: entry.extra };
}

/**
 * Reads /proc/PID/smaps_rollup.
 * @throws CkptError ESRCH when the process is gone or a zombie (the kernel
 * refuses the read when there is no address space)
 */
export function readSmapsRollup(pid: number): SmapsRollup {
  return parseSmapsRollup(readProcText(pid, 'smaps_rollup'), procPath(pid, 'smaps_rollup'));
}
