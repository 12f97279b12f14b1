/**
 * /proc/PID/maps: one line per VMA, "start-end perms offset major:minor
 * inode pathname".
 */
import { malformed, parseHexBig, procPath, readProcText } from './util.js';

/**
 * What a VMA maps, from its pathname: a file, anonymous memory, or one of
 * the kernel's special areas. Shared memory without a name of its own is a
 * `file` on the internal shmem mount (device 00:01): `/dev/zero (deleted)`
 * for MAP_SHARED|MAP_ANONYMOUS, `/SYSV<key> (deleted)` for SysV shm,
 * `/memfd:NAME (deleted)` for memfds. `other` covers names this parser does not
 * know (e.g. `[uprobes]`), which the caller must refuse or handle.
 */
export type VmaKind =
  | 'file'
  | 'anon'
  | 'heap'
  | 'stack'
  | 'vdso'
  | 'vvar'
  | 'vvar_vclock'
  | 'vsyscall'
  | 'other';

/** One line of /proc/PID/maps. */
export interface MapsEntry {
  /** First address of the VMA. */
  start: bigint;
  /** One past the last address. */
  end: bigint;
  read: boolean;
  write: boolean;
  exec: boolean;
  /** `s` (MAP_SHARED) rather than `p` (private, copy-on-write). */
  shared: boolean;
  /** File offset in bytes; 0 for anonymous memory. */
  offset: bigint;
  devMajor: number;
  devMinor: number;
  /** 0 for anonymous memory. */
  inode: number;
  /**
   * Name as printed: '' for anonymous memory, `[heap]`, `[anon:NAME]`, or a
   * path (with " (deleted)" kept; a newline in it is printed as `\012`).
   * The authoritative file is /proc/PID/map_files/START-END.
   */
  pathname: string;
  kind: VmaKind;
  /** The file was unlinked: pathname ends with " (deleted)". */
  deleted: boolean;
  /** NAME of `[anon:NAME]` (prctl PR_SET_VMA_ANON_NAME) or `[anon_shmem:NAME]`. */
  anonName?: string;
}

const LINE =
  /^([0-9a-f]+)-([0-9a-f]+) ([r-])([w-])([x-])([ps]) ([0-9a-f]+) ([0-9a-f]+):([0-9a-f]+) (\d+) *(.*)$/;
const SPECIAL: Record<string, VmaKind> = {
  '[heap]': 'heap',
  '[stack]': 'stack',
  '[vdso]': 'vdso',
  '[vvar]': 'vvar',
  '[vvar_vclock]': 'vvar_vclock',
  '[vsyscall]': 'vsyscall',
};
const DELETED = ' (deleted)';

/**
 * Parses one maps line (also the VMA header lines of smaps).
 * @returns undefined when the line is not a VMA line
 */
export function parseMapsLine(line: string, file = '/proc/PID/maps'): MapsEntry | undefined {
  const m = LINE.exec(line);
  if (!m) return undefined;
  const [, start, end, r, w, x, s, offset, major, minor, inode, pathname = ''] = m;
  const entry: MapsEntry = {
    start: parseHexBig(start as string, file, 'start'),
    end: parseHexBig(end as string, file, 'end'),
    read: r === 'r',
    write: w === 'w',
    exec: x === 'x',
    shared: s === 's',
    offset: parseHexBig(offset as string, file, 'offset'),
    devMajor: Number.parseInt(major as string, 16),
    devMinor: Number.parseInt(minor as string, 16),
    inode: Number(inode),
    pathname,
    kind: 'other',
    deleted: false,
  };
  const anon = /^\[anon(?:_shmem)?:(.*)\]$/s.exec(pathname);
  if (pathname === '' || anon) {
    entry.kind = 'anon';
    if (anon) entry.anonName = anon[1] as string;
  } else if (SPECIAL[pathname]) {
    entry.kind = SPECIAL[pathname];
  } else if (entry.inode !== 0 || pathname.startsWith('/')) {
    entry.kind = 'file';
    entry.deleted = pathname.endsWith(DELETED);
  }
  return entry;
}

/** The path of a file VMA without the " (deleted)" suffix. */
export function mapsFilePath(entry: MapsEntry): string {
  return entry.deleted ? entry.pathname.slice(0, -DELETED.length) : entry.pathname;
}

/**
 * /proc/PID/map_files/START-END (bare hex) of a region: an fd on the very
 * file it maps, even deleted (root only).
 */
export function mapFilesPath(pid: number | 'self', r: { start: bigint; end: bigint }): string {
  return `/proc/${pid}/map_files/${r.start.toString(16)}-${r.end.toString(16)}`;
}

/**
 * Parses the whole text of /proc/PID/maps.
 * @throws CkptError EINVAL naming the line that is not a VMA line
 */
export function parseMaps(text: string, file = '/proc/PID/maps'): MapsEntry[] {
  const out: MapsEntry[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const entry = parseMapsLine(line, file);
    if (!entry) throw malformed(file, `not a VMA line: '${line}'`);
    out.push(entry);
  }
  return out;
}

/**
 * Reads /proc/PID/maps (empty for zombies and kernel threads).
 * @throws CkptError ESRCH when the process is gone
 */
export function readMaps(pid: number): MapsEntry[] {
  return parseMaps(readProcText(pid, 'maps'), procPath(pid, 'maps'));
}
