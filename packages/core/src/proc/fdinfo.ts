/**
 * Open files of a process: /proc/PID/fd/N (what the fd refers to),
 * /proc/PID/fdinfo/N (position, open flags, mount, type-specific state) and
 * a stat(2) through the fd link (device, inode, file type).
 */
import { type Stats, statSync } from 'node:fs';
import { CkptError } from '../errors.js';
import {
  malformed,
  parseDec,
  parseDecBig,
  parseOct,
  procError,
  procPath,
  readProcDir,
  readProcLink,
  readProcText,
} from './util.js';

/** O_CLOEXEC as fdinfo prints it in `flags` (octal 02000000). */
export const O_CLOEXEC = 0o2000000;

/**
 * The target of /proc/PID/fd/N, classified:
 * - `path`: a file in the filesystem tree ("/path", "/path (deleted)")
 * - `pipe`, `socket`: "pipe:[INODE]", "socket:[INODE]"
 * - `anon_inode`: "anon_inode:[eventfd]" or, for some types, without
 *   brackets ("anon_inode:inotify")
 * - `other`: any other "TYPE:[INODE]" pseudo-file (e.g. "net:[...]" for
 *   a namespace fd) or unrecognised text
 */
export interface FdTarget {
  kind: 'path' | 'pipe' | 'socket' | 'anon_inode' | 'other';
  /** The link text as the kernel printed it. */
  text: string;
  /** For `path`: the path without " (deleted)". */
  path?: string;
  /** For `path`: the file was unlinked. */
  deleted?: boolean;
  /** For `pipe`, `socket` and `other` with "[INODE]": the inode number. */
  inode?: number;
  /** For `anon_inode`: the type name without brackets ("eventfd", "inotify", "timerfd"). */
  anonType?: string;
  /** For `other`: the prefix before ":[" ("net", "mnt", ...). */
  type?: string;
}

const DELETED = ' (deleted)';

/** Classifies the text of an fd link. */
export function parseFdTarget(text: string): FdTarget {
  if (text.startsWith('/')) {
    const deleted = text.endsWith(DELETED);
    return { kind: 'path', text, path: deleted ? text.slice(0, -DELETED.length) : text, deleted };
  }
  if (text.startsWith('anon_inode:')) {
    const name = text.slice('anon_inode:'.length);
    const bracketed = /^\[(.*)\]$/s.exec(name);
    return { kind: 'anon_inode', text, anonType: bracketed ? (bracketed[1] as string) : name };
  }
  const typed = /^([^:]+):\[(\d+)\]$/.exec(text);
  if (typed) {
    const [, type, ino] = typed as unknown as [string, string, string];
    const inode = Number(ino);
    if (type === 'pipe' || type === 'socket') return { kind: type, text, inode };
    return { kind: 'other', text, type, inode };
  }
  return { kind: 'other', text };
}

/** The parsed contents of /proc/PID/fdinfo/N. */
export interface Fdinfo {
  /** File position. */
  pos: bigint;
  /** Open flags (O_ACCMODE, O_APPEND, O_NONBLOCK, O_CLOEXEC, ...), parsed from octal. */
  flags: number;
  /** True when {@link O_CLOEXEC} is set: the fd closes on execve. */
  cloexec: boolean;
  /** Mount id (matches /proc/PID/mountinfo). */
  mntId: number;
  /** Inode number of the open file. */
  ino: number;
  /**
   * The remaining lines as printed: type-specific state such as
   * "eventfd-count: 7", "tfd: 4 events: 19 ...", "inotify wd:1 ...",
   * timerfd's "it_value: (99, 419360558)", signalfd's "sigmask: ...".
   */
  extra: string[];
}

/**
 * Parses the text of /proc/PID/fdinfo/N.
 * @throws CkptError EINVAL naming the file when pos, flags, mnt_id or ino is missing
 */
export function parseFdinfo(text: string, file = '/proc/PID/fdinfo/FD'): Fdinfo {
  const fields = new Map<string, string>();
  const extra: string[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const m = /^(pos|flags|mnt_id|ino):\s*(\S+)$/.exec(line);
    if (m) fields.set(m[1] as string, m[2] as string);
    else extra.push(line);
  }
  const get = (key: string): string => {
    const v = fields.get(key);
    if (v === undefined) throw malformed(file, `no ${key} line`);
    return v;
  };
  const flags = parseOct(get('flags'), file, 'flags');
  return {
    pos: parseDecBig(get('pos'), file, 'pos'),
    flags,
    cloexec: (flags & O_CLOEXEC) !== 0,
    mntId: parseDec(get('mnt_id'), file, 'mnt_id'),
    ino: parseDec(get('ino'), file, 'ino'),
    extra,
  };
}

/** File type from the S_IFMT bits of st_mode. Anonymous inodes have none: `unknown`. */
export type FileType =
  | 'regular'
  | 'directory'
  | 'fifo'
  | 'chr'
  | 'blk'
  | 'socket'
  | 'symlink'
  | 'unknown';

/** What stat(2) through /proc/PID/fd/N says about the open file. */
export interface FdStat {
  dev: number;
  ino: number;
  /** Full st_mode: type and permission bits. */
  mode: number;
  type: FileType;
  /** Device number of a character or block device. */
  rdev: number;
  size: number;
}

function fileType(s: Stats): FileType {
  if (s.isFile()) return 'regular';
  if (s.isDirectory()) return 'directory';
  if (s.isFIFO()) return 'fifo';
  if (s.isCharacterDevice()) return 'chr';
  if (s.isBlockDevice()) return 'blk';
  if (s.isSocket()) return 'socket';
  if (s.isSymbolicLink()) return 'symlink';
  return 'unknown';
}

function checkFd(pid: number, fd: number): void {
  if (!Number.isSafeInteger(fd) || fd < 0) {
    throw new CkptError('EINVAL', `fd must be a non-negative integer, got ${fd}`, { pid });
  }
}

/** Adds the fd to the context of an error about /proc/PID/fd{,info}/N. */
function withFd(e: unknown, pid: number, fd: number): unknown {
  if (e instanceof CkptError && e.code === 'ENOENT') {
    return new CkptError('ENOENT', `fd ${fd} of process ${pid} is not open`, {
      ...e.context,
      fd,
    });
  }
  if (e instanceof CkptError) e.context.fd = fd;
  return e;
}

/**
 * Reads the target of /proc/PID/fd/N.
 * @throws CkptError ENOENT when the fd is not open, ESRCH when the process is gone
 */
export function readFdTarget(pid: number, fd: number): FdTarget {
  checkFd(pid, fd);
  try {
    return parseFdTarget(readProcLink(pid, `fd/${fd}`));
  } catch (e) {
    throw withFd(e, pid, fd);
  }
}

/**
 * Reads /proc/PID/fdinfo/N.
 * @throws CkptError ENOENT when the fd is not open, ESRCH when the process is gone
 */
export function readFdinfo(pid: number, fd: number): Fdinfo {
  checkFd(pid, fd);
  try {
    return parseFdinfo(readProcText(pid, `fdinfo/${fd}`), procPath(pid, `fdinfo/${fd}`));
  } catch (e) {
    throw withFd(e, pid, fd);
  }
}

/**
 * stat(2) of the open file behind /proc/PID/fd/N (the magic link is
 * followed to the file itself, even when it is deleted or not in the tree).
 * @throws CkptError ENOENT when the fd is not open, ESRCH when the process is gone
 */
export function statFd(pid: number, fd: number): FdStat {
  checkFd(pid, fd);
  const path = procPath(pid, `fd/${fd}`);
  let s: Stats;
  try {
    s = statSync(path);
  } catch (e) {
    throw withFd(procError(e, path, pid), pid, fd);
  }
  return { dev: s.dev, ino: s.ino, mode: s.mode, type: fileType(s), rdev: s.rdev, size: s.size };
}

/**
 * The fd numbers open in a process, ascending (none for a zombie).
 * @throws CkptError ESRCH when the process is gone
 */
export function listFds(pid: number): number[] {
  return readProcDir(pid, 'fd')
    .map(Number)
    .sort((a, b) => a - b);
}

/** Everything /proc says about one open fd. */
export interface OpenFile {
  fd: number;
  target: FdTarget;
  info: Fdinfo;
  stat: FdStat;
}

/**
 * Reads target, fdinfo and stat of every open fd of a process, skipping fds
 * closed while they are read (the process may be running).
 * @throws CkptError ESRCH when the process is gone
 */
export function readOpenFiles(pid: number): OpenFile[] {
  return readEachFd(pid, (fd) => ({
    fd,
    target: readFdTarget(pid, fd),
    info: readFdinfo(pid, fd),
    stat: statFd(pid, fd),
  }));
}

/**
 * `read(fd)` for every open fd of a process, skipping fds closed while
 * they are read (ENOENT: the process may be running).
 * @throws CkptError ESRCH when the process is gone
 */
export function readEachFd<T>(pid: number, read: (fd: number) => T): T[] {
  const out: T[] = [];
  for (const fd of listFds(pid)) {
    try {
      out.push(read(fd));
    } catch (e) {
      if (!(e instanceof CkptError && e.code === 'ENOENT')) throw e;
    }
  }
  return out;
}
