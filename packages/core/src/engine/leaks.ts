/**
 * Leak detection (the seed's "detect resource leaks for whole-container
 * checkpoint"), done on the frozen tree before any state is saved: the
 * objects of the tree — open file descriptions, pipes, sockets, shared
 * anonymous memory and the namespaces that are not ckpt's own — must not
 * be referenced by any process outside it, or the restored container
 * would silently lose that sharing. For a container checkpoint a leak is
 * an `ELEAK` error; for a subtree it is only a warning.
 *
 * Identity of an object:
 * - a pipe or socket: its link text (`pipe:[INODE]`, `socket:[INODE]`) —
 *   any outside fd on it shares the pipe or socket, whichever end;
 * - a named FIFO: its `dev:ino` (every open of a FIFO shares its buffer);
 * - any other file: the open file description. Candidates share `dev:ino`
 *   (stat through the fd link), and kcmp(KCMP_FILE) decides: two separate
 *   open()s of the same file are not a leak; /dev/null and its kin are
 *   never one (see STATELESS_DEVICES);
 * - a namespace: its nsfs inode, unless ckpt is in it too (the host's
 *   namespaces are shared with every process of the host). Outside
 *   processes hold one by being in it (`/proc/PID/ns/*`, including
 *   `pid_for_children`) or by an fd on it;
 * - shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS, "/dev/zero
 *   (deleted)" in maps): its shmem `dev:ino`. Outside processes hold it by
 *   mapping it (read from every process's maps, only when the tree has
 *   some) or by an fd on it (opened through /proc/PID/map_files).
 *
 * Reverse leaks: after every task is saved the tree's objects are collected
 * again and the outside scan is repeated, so an object that appeared or
 * disappeared, or a reference taken from outside meanwhile, fails the
 * checkpoint as well.
 */
import { CkptError } from '../errors.js';
import { DescriptionIndex } from '../kernel/kcmp.js';
import type { Logger } from '../log.js';
import {
  commForMessage,
  listFds,
  type MapsEntry,
  mapsFilePath,
  NamespaceCache,
  readEachFd,
  readFdTarget,
  readMaps,
  readNamespaces,
  readStatus,
  statFd,
} from '../proc/index.js';
import { scanProcesses } from '../proc/tree.js';
import { readProcDir, readProcLink } from '../proc/util.js';

/**
 * /dev/null, /dev/zero, /dev/full, /dev/random and /dev/urandom (1:3, 1:5,
 * 1:7, 1:8, 1:9): an open file description of one shared with a process
 * outside holds no state the restored tree would miss (no offset that
 * matters, no data), so it is no leak; leaving them out also spares
 * stat()ing every fd of every process on the machine for them.
 */
const STATELESS_DEVICES = new Set([0x103, 0x105, 0x107, 0x108, 0x109]);

/** Where the tree holds an object: an fd of a task, or a task's namespace. */
interface Holder {
  pid: number;
  fd?: number;
  /** For a namespace: the link name (`uts`, `pid_for_children`, ...). */
  nsLink?: string;
  /** For shared memory: the start of a region that maps it. */
  vma?: bigint;
}

/** How objects are matched against outside references. */
type Match = 'identity' | 'description';

/** One object of the tree. */
interface TreeObject {
  key: string;
  /** What it is, for messages: "pipe:[123]", "the open file /x (dev 8:1 ino 12)". */
  desc: string;
  match: Match;
  holders: Holder[];
  /**
   * For a 'description' object: one holder per distinct open file
   * description among `holders` (kcmp), so an outside fd is compared once
   * per description, not once per holder (128 forked tasks sharing their
   * parent's /dev/null cost one kcmp, not 128), in kcmp order (a few
   * kcmp calls find one among thousands).
   */
  descriptions?: DescriptionIndex<Holder & { fd: number }>;
}

/** The objects of a frozen tree, keyed by identity. */
export interface TreeObjects {
  objects: Map<string, TreeObject>;
  /** `pid fd` / `pid ns:LINK` -> object key: what each task holds. */
  refs: Map<string, string>;
}

/** One reference from outside the tree to an object of the tree. */
export interface Leak {
  /** The outside process. */
  pid: number;
  /** How it holds the object: "its fd 3", "its uts namespace". */
  how: string;
  /** The object: "the uts namespace uts:[4026532...]". */
  object: string;
  /** Where the tree holds it: "pid 12 fd 3", "pid 12: its uts namespace". */
  inTree: string;
  /** The object is a namespace. */
  namespace?: boolean;
}

function isGoneError(e: unknown): boolean {
  return (
    e instanceof CkptError && (e.code === 'ESRCH' || e.code === 'ENOENT' || e.code === 'EPERM')
  );
}

/** `read()`, or nothing for a process that is gone (or may not be read). */
function unlessGone<T>(read: () => T[]): T[] {
  try {
    return read();
  } catch (e) {
    if (!isGoneError(e)) throw e;
    return [];
  }
}

function fileKey(dev: number, ino: number): string {
  return `${dev}:${ino}`;
}

function devText(dev: number): string {
  // Linux dev_t: major in bits 8-19 (and 32+), minor in bits 0-7 and 20-31.
  const major = (dev >>> 8) & 0xfff;
  const minor = (dev & 0xff) | ((dev >>> 12) & 0xfff00);
  return `${major}:${minor}`;
}

/** The namespace inodes ckpt itself is in (shared with the whole host). */
function ownNamespaces(): Set<number> {
  return new Set(readNamespaces(process.pid).map((n) => n.inode));
}

function nsTypeOf(link: string): string {
  return link.replace(/_for_children$/, '');
}

/** Shared anonymous memory: a shmem inode the kernel names "/dev/zero". */
function isSharedAnon(m: MapsEntry): boolean {
  return m.shared && m.deleted && mapsFilePath(m) === '/dev/zero';
}

/** The key of a shmem object, from its device numbers and inode. */
function shmemKey(devMajorMinor: string, ino: number): string {
  return `shmem ${devMajorMinor}:${ino}`;
}

/**
 * Collect the objects of the tree `pids` (frozen: nothing changes under
 * us). Zombies hold no files and are in no namespace. `mapsOf`: a task's
 * /proc/PID/maps if the caller read it already (undefined: read it here).
 * `namespacesFrom`: an earlier collection of the same tree whose
 * namespaces are taken over instead of read again. `ns`: where the tree's
 * namespaces are read (a checkpoint shares its cache).
 */
export function collectTreeObjects(
  pids: readonly number[],
  mapsOf: (pid: number) => readonly MapsEntry[] | undefined = () => undefined,
  namespacesFrom?: TreeObjects,
  ns: NamespaceCache = new NamespaceCache(),
): TreeObjects {
  const own = ownNamespaces();
  // The namespace holders of `namespacesFrom`, by pid.
  const nsHolders = new Map<number, Holder[]>();
  for (const o of namespacesFrom?.objects.values() ?? []) {
    for (const h of o.holders) {
      if (h.nsLink === undefined) continue;
      const list = nsHolders.get(h.pid) ?? [];
      list.push(h);
      nsHolders.set(h.pid, list);
    }
  }
  const objects = new Map<string, TreeObject>();
  const refs = new Map<string, string>();
  const add = (key: string, desc: string, match: Match, holder: Holder, ref: string) => {
    let o = objects.get(key);
    if (o) o.holders.push(holder);
    else {
      o = { key, desc, match, holders: [holder] };
      if (match === 'description') o.descriptions = new DescriptionIndex();
      objects.set(key, o);
    }
    if (o.descriptions && holder.fd !== undefined) {
      o.descriptions.add({ ...holder, fd: holder.fd });
    }
    refs.set(ref, key);
  };
  for (const pid of pids) {
    const files = unlessGone(() => readFdIdentities(pid));
    for (const f of files) {
      const holder = { pid, fd: f.fd };
      const ref = `${pid} ${f.fd}`;
      if (f.target.kind === 'pipe' || f.target.kind === 'socket') {
        add(`obj ${f.target.text}`, f.target.text, 'identity', holder, ref);
      } else if (f.stat?.type === 'fifo') {
        const k = fileKey(f.stat.dev, f.stat.ino);
        add(`fifo ${k}`, `the FIFO ${f.target.text}`, 'identity', holder, ref);
      } else if (!f.stat) {
      } else if (f.target.kind === 'other' && f.target.type && f.target.inode !== undefined) {
        // An fd on a namespace ("uts:[INODE]") or another nsfs-like object.
        add(
          `file ${fileKey(f.stat.dev, f.stat.ino)}`,
          `${f.target.text}`,
          'description',
          holder,
          ref,
        );
      } else if (f.stat.type === 'chr' && STATELESS_DEVICES.has(f.stat.rdev)) {
        // Nothing to lose: sharing one with the outside shares no data.
      } else {
        const k = fileKey(f.stat.dev, f.stat.ino);
        add(
          `file ${k}`,
          `the open file ${f.target.text} (dev ${devText(f.stat.dev)} ino ${f.stat.ino})`,
          'description',
          holder,
          ref,
        );
      }
    }
    if (namespacesFrom) {
      // Taken over, not read again (see checkReverseLeaks).
      for (const h of nsHolders.get(pid) ?? []) {
        const ref = `${pid} ns:${h.nsLink}`;
        const key = namespacesFrom.refs.get(ref)!;
        const o = namespacesFrom.objects.get(key)!;
        add(key, o.desc, o.match, h, ref);
      }
    }
    const nss = namespacesFrom ? [] : unlessGone(() => ns.all(pid));
    for (const n of nss) {
      if (own.has(n.inode)) continue;
      const type = nsTypeOf(n.type);
      add(
        `ns ${n.inode}`,
        `the ${type} namespace ${type}:[${n.inode}]`,
        'identity',
        { pid, nsLink: n.type },
        `${pid} ns:${n.type}`,
      );
    }
    const maps = mapsOf(pid) ?? unlessGone(() => readMaps(pid));
    for (const m of maps) {
      if (!isSharedAnon(m)) continue;
      const dev = `${m.devMajor}:${m.devMinor}`;
      add(
        shmemKey(dev, m.inode),
        `the shared anonymous memory of shmem inode ${m.inode} (dev ${dev})`,
        'identity',
        { pid, vma: m.start },
        `${pid} mem:${m.start.toString(16)}`,
      );
    }
  }
  return { objects, refs };
}

/**
 * What identifies each open file of `pid`: its link and, but for pipes and
 * sockets (the link says it all), its stat. Fds closed meanwhile are skipped.
 */
function readFdIdentities(pid: number) {
  return readEachFd(pid, (fd) => {
    const target = readFdTarget(pid, fd);
    const identity = target.kind === 'pipe' || target.kind === 'socket';
    return { fd, target, stat: identity ? undefined : statFd(pid, fd) };
  });
}

/** The tree's holder of the open file description of outside fd `fd` of `pid`; none if that fd went away meanwhile. */
function describedBy(file: TreeObject, pid: number, fd: number): Holder | undefined {
  try {
    return file.descriptions?.find(pid, fd);
  } catch {
    return undefined;
  }
}

function describeHolder(h: Holder): string {
  if (h.fd !== undefined) return `pid ${h.pid} fd ${h.fd}`;
  if (h.vma !== undefined) return `pid ${h.pid}: its memory at 0x${h.vma.toString(16)}`;
  return `pid ${h.pid}: its ${(h.nsLink ?? '').replace(/_/g, ' ')} namespace`;
}

/**
 * References from processes outside the tree to its objects (at most one
 * per object: the first outside pid found). ckpt itself is skipped.
 * Processes that vanish while being read are skipped.
 */
export function findLeaks(pids: readonly number[], tree: TreeObjects): Leak[] {
  const { objects } = tree;
  if (objects.size === 0) return [];
  const inTree = new Set(pids);
  const hasNs = [...objects.keys()].some((k) => k.startsWith('ns '));
  const hasShmem = [...objects.keys()].some((k) => k.startsWith('shmem '));
  const hasStatKeys =
    hasShmem || [...objects.keys()].some((k) => k.startsWith('file ') || k.startsWith('fifo '));
  const found = new Map<string, Leak>();
  const report = (o: TreeObject, pid: number, how: string, h: Holder) => {
    if (!found.has(o.key)) {
      const namespace = o.key.startsWith('ns ');
      found.set(o.key, { pid, how, object: o.desc, inTree: describeHolder(h), namespace });
    }
  };
  for (const p of scanProcesses()) {
    if (inTree.has(p.pid) || p.pid === process.pid) continue;
    if (p.state === 'Z' || p.state === 'X') continue;
    try {
      if (hasNs) {
        for (const link of readProcDir(p.pid, 'ns')) {
          const m = /:\[(\d+)\]$/.exec(readProcLink(p.pid, `ns/${link}`));
          const o = m ? objects.get(`ns ${m[1]}`) : undefined;
          if (o) report(o, p.pid, `its ${link.replace(/_/g, ' ')} namespace`, o.holders[0]!);
        }
      }
      if (hasShmem) {
        for (const m of readMaps(p.pid)) {
          if (!isSharedAnon(m)) continue;
          const o = objects.get(shmemKey(`${m.devMajor}:${m.devMinor}`, m.inode));
          if (o) report(o, p.pid, `its memory at 0x${m.start.toString(16)}`, o.holders[0]!);
        }
      }
      for (const fd of listFds(p.pid)) {
        try {
          const target = readFdTarget(p.pid, fd);
          if (target.kind === 'pipe' || target.kind === 'socket') {
            const o = objects.get(`obj ${target.text}`);
            if (o) report(o, p.pid, `its fd ${fd}`, o.holders[0]!);
            continue;
          }
          if (target.kind === 'other' && target.inode !== undefined) {
            const o = objects.get(`ns ${target.inode}`);
            if (o) {
              report(o, p.pid, `its fd ${fd}`, o.holders[0]!);
              continue;
            }
          }
          if (!hasStatKeys) continue;
          const s = statFd(p.pid, fd);
          const shm = hasShmem ? objects.get(shmemKey(devText(s.dev), s.ino)) : undefined;
          if (shm) {
            report(shm, p.pid, `its fd ${fd}`, shm.holders[0]!);
            continue;
          }
          const k = fileKey(s.dev, s.ino);
          const fifo = objects.get(`fifo ${k}`);
          if (fifo) {
            report(fifo, p.pid, `its fd ${fd}`, fifo.holders[0]!);
            continue;
          }
          const file = objects.get(`file ${k}`);
          if (!file || found.has(file.key)) continue;
          const h = describedBy(file, p.pid, fd);
          if (h) report(file, p.pid, `its fd ${fd}`, h);
        } catch (e) {
          if (!isGoneError(e)) throw e;
        }
      }
    } catch (e) {
      // The process exited (or is a kernel thread we may not read): skip it.
      if (!isGoneError(e)) throw e;
    }
  }
  return [...found.values()];
}

function leakText(l: Leak, where: string): string {
  return `pid ${l.pid} outside the ${where} also holds ${l.object} as ${l.how} (held in the ${where} by ${l.inTree})`;
}

/**
 * The pre-step: collect the frozen tree's objects and look for outside
 * references. A container fails with ELEAK naming the object and one
 * outside pid; a subtree only gets warnings. Returns the objects, for
 * {@link checkReverseLeaks}. `mapsOf` and `ns` as for {@link collectTreeObjects}.
 * @throws CkptError ELEAK
 */
export function checkLeaks(
  pids: readonly number[],
  container: boolean,
  log: Logger,
  mapsOf?: (pid: number) => readonly MapsEntry[] | undefined,
  ns?: NamespaceCache,
): CheckedTree {
  const tree = collectTreeObjects(pids, mapsOf, undefined, ns);
  const leaks = findLeaks(pids, tree);
  // The process that started a container (`unshare --fork`, waiting for
  // its init) is in the namespaces it made: the restored container gets
  // namespaces of its own, which nothing else needs.
  const launcher = container ? launcherOf(pids[0]!) : undefined;
  const byLauncher = (l: Leak) => l.namespace === true && l.pid === launcher;
  const launched = leaks.filter(byLauncher);
  if (launched.length > 0) {
    log.warn(
      `pid ${launcher} (${commForMessage(launcher!)}), which started the container, also holds ${launched.map((l) => l.object).join(', ')}; the restored container gets namespaces of its own`,
    );
  }
  reportLeaks(
    leaks.filter((l) => !byLauncher(l)),
    container,
    log,
    '',
  );
  return { ...tree, leaks };
}

/** The parent of a container's init, if it is still its parent (not reparented to an init or subreaper). */
function launcherOf(init: number): number | undefined {
  try {
    return readStatus(init).ppid || undefined;
  } catch {
    return undefined;
  }
}

/** The objects {@link checkLeaks} found, and the leaks it reported (subtrees go on with warnings). */
export interface CheckedTree extends TreeObjects {
  leaks: readonly Leak[];
}

function reportLeaks(leaks: Leak[], container: boolean, log: Logger, when: string): void {
  if (leaks.length === 0) return;
  if (container) {
    const l = leaks[0]!;
    const more = leaks.length > 1 ? ` (and ${leaks.length - 1} more shared objects)` : '';
    throw new CkptError(
      'ELEAK',
      `${leakText(l, 'container')}${when}${more}; checkpoint it as a subtree with --subtree, or stop ${l.pid}`,
      { pid: l.pid },
    );
  }
  for (const l of leaks) {
    log.warn(`${leakText(l, 'checkpointed tree')}${when}: the restored tree will not share it`);
  }
}

/**
 * Reverse leaks, after every task is saved: the tree's objects must be
 * those found before (none appeared or disappeared), and no outside
 * reference may have been taken meanwhile. Same policy as
 * {@link checkLeaks}.
 * @throws CkptError ELEAK
 */
export function checkReverseLeaks(
  pids: readonly number[],
  before: CheckedTree,
  container: boolean,
  log: Logger,
): void {
  // A stopped task's namespaces cannot change (setns and unshare act on
  // the caller only): they are taken from before. Its fds and memory can,
  // through a table or address space shared with a process outside.
  const after = collectTreeObjects(pids, undefined, before);
  const changes: string[] = [];
  for (const [ref, key] of before.refs) {
    const now = after.refs.get(ref);
    if (now !== key) {
      const o = before.objects.get(key)!;
      changes.push(
        now === undefined
          ? `${o.desc} disappeared from ${refText(ref)}`
          : `${refText(ref)} changed from ${o.desc} to ${after.objects.get(now)!.desc}`,
      );
    }
  }
  for (const [ref, key] of after.refs) {
    if (!before.refs.has(ref))
      changes.push(`${after.objects.get(key)!.desc} appeared at ${refText(ref)}`);
  }
  if (changes.length > 0) {
    const msg = `the tree's objects changed during the checkpoint: ${changes.slice(0, 3).join('; ')}${changes.length > 3 ? ` (and ${changes.length - 3} more)` : ''}`;
    if (container) throw new CkptError('ELEAK', `${msg}; checkpoint again`);
    log.warn(msg);
  }
  // Only references taken meanwhile: the ones found before were reported then.
  const known = (l: Leak) => before.leaks.some((b) => b.pid === l.pid && b.object === l.object);
  const taken = findLeaks(pids, after).filter((l) => !known(l));
  reportLeaks(taken, container, log, ' (taken during the checkpoint)');
}

function refText(ref: string): string {
  const [pid, what] = ref.split(' ') as [string, string];
  if (what.startsWith('mem:')) return `pid ${pid}'s memory at 0x${what.slice(4)}`;
  return what.startsWith('ns:')
    ? `pid ${pid}'s ${what.slice(3).replace(/_/g, ' ')} namespace`
    : `pid ${pid} fd ${what}`;
}
