/**
 * /proc/PID/ns/*: one magic link per namespace the task is in, whose text
 * "TYPE:[INODE]" names the namespace. Two tasks share a namespace exactly
 * when the inode numbers (on the nsfs device) are equal.
 */
import { malformed, procPath, readProcDir, readProcLink } from './util.js';

/** Namespace link names in /proc/PID/ns. `*_for_children` is what new children will get. */
export type NsType =
  | 'cgroup'
  | 'ipc'
  | 'mnt'
  | 'net'
  | 'pid'
  | 'pid_for_children'
  | 'time'
  | 'time_for_children'
  | 'user'
  | 'uts';

/** One namespace of a task. */
export interface NsLink {
  /** The link name (a `*_for_children` link's text says `pid:`/`time:`). */
  type: string;
  /** Inode number of the namespace. */
  inode: number;
}

/**
 * Parses the text of a namespace link, e.g. "net:[4026531833]".
 * @param name - the link name, reported as the type (and in errors)
 * @throws CkptError EINVAL when the text is not "TYPE:[INODE]"
 */
export function parseNsLink(name: string, text: string): NsLink {
  const m = /^([a-z_]+):\[(\d+)\]$/.exec(text);
  if (!m) throw malformed(`ns/${name}`, `expected "TYPE:[INODE]", got '${text}'`);
  return { type: name, inode: Number(m[2]) };
}

/**
 * Reads one namespace link of a process.
 * @throws CkptError ENOENT for a zombie (it has left its namespaces), ESRCH when gone
 */
export function readNamespace(pid: number, type: NsType): NsLink {
  return parseNsLink(type, readProcLink(pid, `ns/${type}`));
}

/**
 * Reads every namespace link the kernel offers for a process, sorted by
 * type. Which types exist depends on the kernel configuration.
 * @throws CkptError ESRCH when the process is gone, ENOENT for a zombie
 */
export function readNamespaces(pid: number): NsLink[] {
  // The kernel offers the same links for every process: list them once.
  nsNames ??= readProcDir(pid, 'ns').sort();
  return nsNames.map((name) => parseNsLink(name, readProcLink(pid, `ns/${name}`)));
}

/** The names in /proc/PID/ns, from the first read. */
let nsNames: string[] | undefined;

const own = new Map<NsType, number | undefined>();

/**
 * The inode of ckpt's own namespace of `type` (read once; undefined where
 * the kernel has no such namespace). Namespaces ckpt's thread enters for a
 * moment (`inNamespace`) do not count: do not call it from inside one.
 */
export function ownNamespace(type: NsType): number | undefined {
  if (!own.has(type)) {
    try {
      own.set(type, readNamespace(process.pid, type).inode);
    } catch {
      own.set(type, undefined);
    }
  }
  return own.get(type);
}

/** Path of a namespace link, to open it for setns(2) or compare with stat(2). */
export function nsPath(pid: number, type: NsType): string {
  return procPath(pid, `ns/${type}`);
}

/**
 * The namespaces of stopped tasks, each link read once: a stopped task
 * cannot change them (setns and unshare act on the caller only). A
 * checkpoint reads the same links in several places (leak detection, the
 * tree record, the ns and creds phases); for a tree of 128 that was over
 * a thousand readlinks. Use only for tasks that stay stopped meanwhile.
 */
export class NamespaceCache {
  /** pid -> link name -> inode; `complete` once every link was read. */
  private readonly byPid = new Map<number, { links: Map<string, number>; complete: boolean }>();

  private entry(pid: number) {
    let e = this.byPid.get(pid);
    if (!e) {
      e = { links: new Map(), complete: false };
      this.byPid.set(pid, e);
    }
    return e;
  }

  /**
   * Every namespace of `pid`, as {@link readNamespaces} gives them.
   * @throws CkptError as readNamespaces (a zombie has none)
   */
  all(pid: number): NsLink[] {
    const e = this.entry(pid);
    if (!e.complete) {
      // Read afresh, in readNamespaces' order.
      e.links = new Map(readNamespaces(pid).map((ns) => [ns.type, ns.inode]));
      e.complete = true;
    }
    return [...e.links].map(([type, inode]) => ({ type, inode }));
  }

  /**
   * The inode of `pid`'s namespace of `type`.
   * @throws CkptError as readNamespace
   */
  inode(pid: number, type: NsType): number {
    const e = this.entry(pid);
    let inode = e.links.get(type);
    if (inode === undefined) {
      inode = readNamespace(pid, type).inode;
      e.links.set(type, inode);
    }
    return inode;
  }
}
