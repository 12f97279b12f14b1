/**
 * Containers: a tree whose root is the init of a pid namespace (linux-cr's
 * whole-container checkpoint, as opposed to `CHECKPOINT_SUBTREE`). On
 * restart the root is created in fresh pid, uts, ipc and mount namespaces
 * (see `CLONE_NEW_CONTAINER` in mktree.ts), and its mount namespace gets
 * its own /proc for the new pid namespace, as `ckpt run --container` made it.
 */
import { CkptError } from '../errors.js';
import {
  type NamespaceCache,
  ownNamespace,
  readComm,
  readStatus,
  scanProcesses,
} from '../proc/index.js';
import type { TreeEntry } from './sessions.js';
import { cString, stage, type TaskAccess } from './task-io.js';

const MS_NOSUID = 0x2;
const MS_NODEV = 0x4;
const MS_NOEXEC = 0x8;
const MS_REC = 0x4000;
const MS_PRIVATE = 0x40000;

/**
 * Whether the task with NSpid `nsPids` (as ckpt sees it) is the init of a
 * pid namespace below ckpt's own.
 */
export function isPidNsInit(nsPids: readonly number[]): boolean {
  const own = readStatus(process.pid).nsPid.length;
  return nsPids.length > own && nsPids[nsPids.length - 1] === 1;
}

/**
 * Refuse, before anything is created, a tree whose pid namespaces restart
 * cannot rebuild: a container's root must be a pid-namespace init, a
 * subtree's root must be in ckpt's own pid namespace, and every other task
 * is in its parent's pid namespace or is the init (pid 1) of a new one
 * nested right below it.
 * @throws CkptError EBADREC / ENOTSUP naming the task
 */
export function checkPidLevels(tree: readonly TreeEntry[], container: boolean): void {
  const root = tree[0]!;
  if (container && (root.nsPids.length < 2 || root.nsPids.at(-1) !== 1)) {
    throw new CkptError(
      'EBADREC',
      `the image is a container, but its root pid ${root.pid} was not a pid-namespace init (NSpid ${root.nsPids.join(' ')})`,
      { pid: root.pid },
    );
  }
  if (!container && root.nsPids.length !== 1) {
    throw new CkptError(
      'ENOTSUP',
      `the subtree's root pid ${root.pid} is in a pid namespace below ckpt's (NSpid ${root.nsPids.join(' ')}); only a whole container (from its init, with --container) can be checkpointed from there`,
      { pid: root.pid },
    );
  }
  const byPid = new Map(tree.map((e) => [e.pid, e]));
  for (const e of tree.slice(1)) {
    const parent = byPid.get(e.ppid);
    if (!parent) continue; // checkOrder refuses it
    const depth = e.nsPids.length;
    const same = depth === parent.nsPids.length;
    const nestedInit = depth === parent.nsPids.length + 1 && e.nsPids.at(-1) === 1;
    if (!same && !nestedInit) {
      throw new CkptError(
        'ENOTSUP',
        `pid ${e.pid} (NSpid ${e.nsPids.join(' ')}) is neither in its parent ${parent.pid}'s pid namespace (NSpid ${parent.nsPids.join(' ')}) nor the init of one nested below it`,
        { pid: e.pid },
      );
    }
  }
}

/**
 * At checkpoint, before any state is saved: refuse live tasks in a mount
 * namespace other than the root's, and a subtree whose root is in one
 * other than ckpt's (`unshare -m`; a container gets a new one, and
 * @ckpt/ns saves the mounts it made). Such a task would come back seeing
 * other files.
 * @param live - pids of the tree's live tasks, root first
 * @param ns - where their namespaces are read
 * @param container - the tree is a container (its root's namespace is made anew)
 * @throws CkptError ENOTSUP naming the task and the namespace
 */
export function checkMountNamespaces(
  live: readonly number[],
  ns: NamespaceCache,
  container: boolean,
): void {
  const root = live[0]!;
  const rootMnt = ns.inode(root, 'mnt');
  const mine = ownNamespace('mnt');
  if (!container && mine !== undefined && rootMnt !== mine) {
    throw new CkptError(
      'ENOTSUP',
      `pid ${root} is in mount namespace mnt:[${rootMnt}], not ckpt's (mnt:[${mine}]); its mounts are not checkpointed, and restart would put it in ckpt's, where they are not (checkpoint it with --container if it is a container's init)`,
      { pid: root },
    );
  }
  for (const pid of live.slice(1)) {
    const mnt = ns.inode(pid, 'mnt');
    if (mnt !== rootMnt) {
      throw new CkptError(
        'ENOTSUP',
        `pid ${pid} is in mount namespace mnt:[${mnt}], the tree's root ${root} in mnt:[${rootMnt}]; mount namespaces other than the root's are not checkpointed yet`,
        { pid },
      );
    }
  }
}

/**
 * Where the new children of live task `pid` go (see the tree record's
 * `pidNsOfChildren`): 0 for its own pid namespace, or the pid of the
 * task of `tree` that is the init of the namespace it has unshared.
 * `ns`: where the tree's namespaces are read.
 * @throws CkptError ENOTSUP when that namespace has no init in the tree
 */
export function pidNsOfChildren(pid: number, tree: readonly number[], ns: NamespaceCache): number {
  const own = ns.inode(pid, 'pid');
  const forChildren = ns.inode(pid, 'pid_for_children');
  if (forChildren === own) return 0;
  for (const other of tree) {
    try {
      const nsPid = readStatus(other).nsPid;
      if (nsPid.at(-1) === 1 && ns.inode(other, 'pid') === forChildren) return other;
    } catch {
      // a zombie: no namespace links
    }
  }
  throw new CkptError(
    'ENOTSUP',
    `pid ${pid} has unshared a pid namespace (pid:[${forChildren}]) whose init is not in the tree (not created yet, or gone)`,
    { pid },
  );
}

/** How to create one task: its pids for clone3's set_tid, and whether it starts a pid namespace. */
export interface TaskPids {
  /** Pids at every level, innermost first; undefined: any free pid. */
  tids: number[] | undefined;
  /** The task is the init of a new pid namespace (CLONE_NEWPID). */
  newPidNs: boolean;
}

/**
 * How many of the tree's pid levels are namespaces that exist before the
 * restart (ckpt's own and any above it): all of the root's but, for a
 * container, the one its init makes. The levels below are namespaces the
 * restart creates.
 */
export function existingPidLevels(tree: readonly TreeEntry[], container: boolean): number {
  const root = tree[0];
  if (!root) return 1;
  return container ? root.nsPids.length - 1 : root.nsPids.length;
}

/**
 * `ids` (outermost first, as NSpid lists them) as clone3's set_tid wants
 * them, innermost first. With `noPids`, only the levels in namespaces the
 * restart creates (below `existing`): nothing else can hold a pid there, so
 * a shell inside a container still finds its jobs; the outer levels get
 * any free pid. Undefined: any pid at every level.
 */
export function wantedTids(
  ids: readonly number[],
  opts: { noPids: boolean; existing: number },
): number[] | undefined {
  const kept = opts.noPids ? ids.slice(opts.existing) : ids;
  return kept.length > 0 ? [...kept].reverse() : undefined;
}

/**
 * The pids to create `entry` with (see {@link checkPidLevels}): its saved
 * pid at every level; with `noPids`, only those inside namespaces the
 * restart creates (see {@link wantedTids}), which gives a namespace's init
 * pid 1. `parent` is undefined for the root.
 */
export function taskPids(
  entry: TreeEntry,
  parent: TreeEntry | undefined,
  opts: { container: boolean; noPids: boolean; existing: number },
): TaskPids {
  const newPidNs = parent
    ? entry.nsPids.length > parent.nsPids.length
    : opts.container && entry.nsPids.length > 1;
  return { tids: wantedTids(entry.nsPids, opts), newPidNs };
}

/**
 * In the (stopped) root of a restarted container: make every mount of its
 * new mount namespace private, so nothing propagates back to the host, then
 * mount a proc for its new pid namespace on /proc.
 */
export function mountContainerProc(task: TaskAccess): void {
  const [root, proc, fstype, target] = stage(task, [
    cString('/'),
    cString('proc'),
    cString('proc'),
    cString('/proc'),
  ]);
  task.sys.check(
    'mount',
    [0, root!, 0, MS_REC | MS_PRIVATE, 0],
    `making the mounts of the container's mount namespace private (pid ${task.pid})`,
  );
  task.sys.check(
    'mount',
    [proc!, target!, fstype!, MS_NOSUID | MS_NODEV | MS_NOEXEC, 0],
    `mounting /proc for the container's pid namespace (pid ${task.pid})`,
  );
}

/**
 * At checkpoint, before any state is saved: refuse a tree one of whose
 * tasks traces a process outside it (gdb, strace checkpointed without
 * their tracee): restart could not attach it again, and the tracer would
 * go on believing it is attached.
 * @param tids - every task and thread of the tree
 * @throws CkptError ENOTSUP naming the tracer and the traced process
 */
export function refuseOutsideTracees(tids: readonly number[]): void {
  const tree = new Set(tids);
  for (const p of scanProcesses()) {
    if (tree.has(p.pid) || p.state === 'Z' || p.state === 'X') continue;
    let tracer: number;
    try {
      tracer = readStatus(p.pid).tracerPid;
    } catch {
      continue; // gone meanwhile
    }
    if (tracer !== 0 && tree.has(tracer)) {
      throw new CkptError(
        'ENOTSUP',
        `pid ${tracer} (${readComm(tracer)}) traces pid ${p.pid} (${p.comm}), which is outside the checkpointed tree; restart could not attach it again (detach it first, or checkpoint a tree that holds both)`,
        { pid: tracer },
      );
    }
  }
}
