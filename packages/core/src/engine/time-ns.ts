/**
 * Time namespaces the tree made (`unshare --time`, `ckpt run --time`):
 * their CLOCK_MONOTONIC and CLOCK_BOOTTIME continue after restart from the
 * values they had when the tree was frozen, on this machine or another,
 * as if the tree had been suspended in between (the host's clocks differ
 * by the time the image waited, and on another machine by its uptime).
 *
 * A task is born in its parent's namespace for children, and only
 * unshare(CLONE_NEWTIME) makes a new one (for the caller's children to
 * come; its offsets can be set until a task is in it). So the tree's time
 * namespaces are part of the tree, as pid namespaces are: each tree entry
 * says which namespace the task is in and which its children go to, and
 * restart makes each one where the tree made it, before the tasks that go
 * in it are cloned:
 * - the root's, made by whatever started the tree, in the restore stub
 *   that clones the root;
 * - any other, in the task that made it (its children go there), right
 *   after that task is created and before its children and threads are.
 * A task that entered a namespace by setns(2) (it is not in its parent's
 * namespace for children) is refused, and so is a namespace of the tree
 * that a process outside it is also in (except the root's launcher,
 * `unshare --fork`, waiting for it): restart would split it.
 */
import { CkptError } from '../errors.js';
import {
  hostClockNs,
  readTimeNsOffsets,
  type TimeNsOffsets,
  writeTimeNsOffsets,
} from '../kernel/timens.js';
import { ownNamespace, readNamespace } from '../proc/index.js';
import type { NamespaceCache } from '../proc/ns.js';
import { commForMessage } from '../proc/task.js';
import { scanProcesses } from '../proc/tree.js';

/** unshare(2)'s flag for a new time namespace (for the caller's children). */
const CLONE_NEWTIME = 0x80;

/** A saved time namespace: its clocks when the tree was frozen, in nanoseconds. */
export interface SavedTimeNs {
  monotonic: bigint;
  boottime: bigint;
}

/** The tree's time namespaces and where each task is (indexes: 0 is ckpt's, k is `list[k-1]`). */
export interface TreeTimeNs {
  list: SavedTimeNs[];
  /** By pid: the task's namespace and its children's. */
  of: Map<number, { timeNs: number; timeNsOfChildren: number }>;
}

/** A live task of the tree: its pid and its parent's. */
interface Member {
  pid: number;
  ppid: number;
}

/**
 * Find the tree's time namespaces and refuse what restart could not
 * rebuild (see the module comment). `live`: the live tasks, root first,
 * each after its parent; `ns`: where their namespaces are read.
 * @throws CkptError ENOTSUP naming the task and the namespace
 */
export function treeTimeNamespaces(live: readonly Member[], ns: NamespaceCache): TreeTimeNs {
  const mine = ownNamespace('time');
  const out: TreeTimeNs = { list: [], of: new Map() };
  if (mine === undefined) return out; // a kernel without time namespaces
  const index = new Map<number, number>([[mine, 0]]);
  /** Who shows each namespace's offsets (a task whose children go there). */
  const shownBy = new Map<number, number>();
  const indexOf = (inode: number) => {
    let i = index.get(inode);
    if (i === undefined) {
      i = index.size;
      index.set(inode, i);
    }
    return i;
  };
  const root = live[0]!;
  for (const t of live) {
    const own = ns.inode(t.pid, 'time');
    const forChildren = ns.inode(t.pid, 'time_for_children');
    const parentForChildren = t === root ? undefined : ns.inode(t.ppid, 'time_for_children');
    if (parentForChildren !== undefined && own !== parentForChildren) {
      throw new CkptError(
        'ENOTSUP',
        `pid ${t.pid} is in time namespace time:[${own}], not the one its parent ${t.ppid} gives its children (time:[${parentForChildren}]): it entered it with setns(2), which restart cannot rebuild`,
        { pid: t.pid },
      );
    }
    if (!shownBy.has(forChildren)) shownBy.set(forChildren, t.pid);
    out.of.set(t.pid, { timeNs: indexOf(own), timeNsOfChildren: indexOf(forChildren) });
  }
  const made = [...index.keys()].filter((inode) => inode !== mine);
  if (made.length === 0) return out;
  refuseHeldOutside(made, live, root);
  // The root's namespace when the root has made another for its
  // children: its launcher still shows it, if it waits for the root.
  const rootNs = ns.inode(root.pid, 'time');
  if (!shownBy.has(rootNs) && forChildrenOf(root.ppid) === rootNs) {
    shownBy.set(rootNs, root.ppid);
  }
  const host = { monotonic: hostClockNs('monotonic'), boottime: hostClockNs('boottime') };
  for (const inode of made) {
    const by = shownBy.get(inode);
    if (by === undefined) {
      throw new CkptError(
        'ENOTSUP',
        `no process shows the clock offsets of time namespace time:[${inode}] of pid ${root.pid} (it made another one for its children, and what started it is gone)`,
        { pid: root.pid },
      );
    }
    const offsets = readTimeNsOffsets(by);
    out.list[index.get(inode)! - 1] = {
      monotonic: host.monotonic + offsets.monotonic,
      boottime: host.boottime + offsets.boottime,
    };
  }
  return out;
}

/** Refuse a namespace of `made` that a process outside the tree is in too. */
function refuseHeldOutside(made: readonly number[], live: readonly Member[], root: Member): void {
  const tree = new Set(live.map((t) => t.pid));
  const ours = new Set(made);
  for (const { pid } of scanProcesses()) {
    if (tree.has(pid) || pid === process.pid) continue;
    for (const link of ['time', 'time_for_children'] as const) {
      let inode: number;
      try {
        inode = readNamespace(pid, link).inode;
      } catch {
        continue; // gone, or a zombie
      }
      if (!ours.has(inode)) continue;
      // `unshare --time --fork` waits for the root in the namespace it made.
      if (pid === root.ppid && link === 'time_for_children') continue;
      throw new CkptError(
        'ENOTSUP',
        `the tree's time namespace time:[${inode}] is also ${link === 'time' ? 'the namespace' : 'the namespace for children'} of pid ${pid} (${commForMessage(pid)}), outside the tree; restart would give the tree one of its own (checkpoint a tree that includes it)`,
        { pid },
      );
    }
  }
}

function forChildrenOf(pid: number): number | undefined {
  try {
    return readNamespace(pid, 'time_for_children').inode;
  } catch {
    return undefined;
  }
}

/**
 * The offsets that make a new namespace's clocks read `saved`'s now: the
 * clocks continue from where they were at checkpoint.
 */
function offsetsToContinue(saved: SavedTimeNs): TimeNsOffsets {
  return {
    monotonic: saved.monotonic - hostClockNs('monotonic'),
    boottime: saved.boottime - hostClockNs('boottime'),
  };
}

/**
 * Make a new time namespace for the children of `pid` (stopped, with
 * `unshare` run in it by the caller: a restored task's injected call, or
 * the restore stub's before it clones the root) and set its clocks to
 * continue from `saved`.
 */
export function makeTimeNsForChildren(
  pid: number,
  unshare: (flags: number) => void,
  saved: SavedTimeNs,
): void {
  unshare(CLONE_NEWTIME);
  writeTimeNsOffsets(pid, offsetsToContinue(saved));
}
