/**
 * What the uts, ipc, network and cgroup namespaces have in common: one object per
 * namespace, saved as one record through the objhash (keyed by its nsfs
 * inode) and referenced by objref from each task's `ns` record.
 *
 * Restart: every task starts in the namespaces of the task the tree was
 * cloned from (a container's root in new uts and ipc ones, see mktree's
 * CLONE_NEW_CONTAINER). The first task that references a saved namespace
 * gives it a home:
 * - a container's root takes its new uts or ipc namespace and applies the
 *   saved settings there;
 * - a namespace that was ckpt's own (the host's, `host` in its record) is
 *   restart's own, which is never changed (`inHost` may only compare);
 * - any other, one the tree made (`unshare -n`, a container's network
 *   namespace, `unshare -i` below the root), is made again by an injected
 *   unshare(2) in that task, and the saved settings applied there.
 * Every task, and every thread, then enters the namespace of each of its
 * objects with an injected setns(2) where it is not there yet (ckpt keeps
 * an fd on each until the end of the restart).
 */
import { closeSync, fstatSync, openSync } from 'node:fs';
import {
  type CheckpointCtx,
  CheckpointFlags,
  closeInTask,
  copyFdFromCkpt,
  type ObjectOps,
  openNamespace,
  type RecordSchema,
  type RestartCtx,
  type RestartTask,
  readNamespace,
  type ThreadNsType,
} from '@ckpt/core';

/** What every saved namespace says: whether it was ckpt's own. */
export interface SavedNs {
  host: boolean;
}

/** A restored namespace: its saved settings, and once a task has it, ckpt's fd on it. */
export interface RestoredNs<T> {
  saved: T;
  /** ckpt's fd on the namespace (kept until the restart ends). */
  fd?: number;
  /** Its nsfs inode here. */
  inode?: number;
}

/** The ObjectOps of a namespace saved as one `record`. */
export function namespaceObject<T extends object>(spec: {
  name: string;
  id: number;
  record: RecordSchema<T>;
  /** For messages: what identifies the namespace to a person. */
  describe: (saved: T) => string;
}): ObjectOps<T | RestoredNs<T>> {
  return {
    name: spec.name,
    id: spec.id,
    checkpoint(ctx, obj) {
      ctx.write(spec.record, obj as T);
    },
    restore(ctx) {
      return { saved: ctx.read(spec.record) };
    },
    describe(obj) {
      return spec.describe('saved' in obj ? obj.saved : (obj as T));
    },
  };
}

/**
 * Save the namespace of object type `type` whose nsfs inode is `inode`
 * (once per image: `read` runs only the first time) and return its objref.
 */
export function checkpointNamespace<T>(
  ctx: CheckpointCtx,
  type: string,
  inode: number,
  read: () => T,
): number {
  const key = String(inode);
  return ctx.checkpointObj(type, key, ctx.objhash.lookup(type, key) ? undefined : read());
}

const CLONE_NEW: Record<ThreadNsType, number> = {
  ipc: 0x0800_0000,
  uts: 0x0400_0000,
  net: 0x4000_0000,
  cgroup: 0x0200_0000,
};

/**
 * Move `task` (a process, or a thread of process `owner`, whose fd table
 * it shares) into the namespace behind ckpt's `fd`, unless it is there.
 */
function enter(
  task: RestartTask,
  type: ThreadNsType,
  fd: number,
  inode: number,
  owner: RestartTask = task,
): void {
  if (readNamespace(task.pid, type).inode === inode) return;
  const what = `moving pid ${task.savedPid} into its ${type} namespace`;
  const inTask = copyFdFromCkpt(owner, fd, what);
  try {
    task.sys.check('setns', [inTask, CLONE_NEW[type]], what);
  } finally {
    closeInTask(owner, inTask);
  }
}

/** Keep ckpt's `fd` on a restored namespace until the restart ends, either way. */
function keep(ctx: RestartCtx, restored: RestoredNs<unknown>, fd: number): void {
  restored.fd = fd;
  restored.inode = fstatSync(fd).ino;
  ctx.deferqueue.add(
    fd,
    (f) => closeSync(f),
    (f) => closeSync(f),
  );
}

/**
 * Restore the namespace `objref` (of object type `object`, a namespace of
 * `type`) for `task`, as the module comment says: `inHost` for one that
 * was ckpt's own (it must not change restart's), `apply` to set the saved
 * settings in the task's new namespace.
 */
export function restoreNamespace<T extends SavedNs>(
  ctx: RestartCtx,
  task: RestartTask,
  objref: number,
  object: string,
  type: ThreadNsType,
  how: {
    inHost: (saved: T) => void;
    /** Before a new namespace is made (by unshare). */
    prepare?: (saved: T) => void;
    apply: (saved: T) => void;
  },
): void {
  const restored = ctx.fetchObj<RestoredNs<T>>(objref, object);
  if (restored.fd === undefined) {
    // A container's root is cloned into new uts and ipc namespaces.
    const freshFromClone =
      ctx.active === 0 && ctx.has(CheckpointFlags.CONTAINER) && (type === 'uts' || type === 'ipc');
    if (freshFromClone) {
      how.apply(restored.saved);
      keep(ctx, restored, openNamespace(task.pid, type));
    } else if (restored.saved.host) {
      how.inHost(restored.saved);
      keep(ctx, restored, openSync(`/proc/thread-self/ns/${type}`, 'r'));
    } else {
      how.prepare?.(restored.saved);
      task.sys.check('unshare', [CLONE_NEW[type]], `making a new ${type} namespace`);
      how.apply(restored.saved);
      keep(ctx, restored, openNamespace(task.pid, type));
    }
  }
  enter(task, type, restored.fd!, restored.inode!);
}

/**
 * Put `thread` in the namespaces of its process `task` (restored by now):
 * it was created before they were, and setns and unshare act on the
 * calling thread only.
 */
export function enterTaskNamespaces(
  thread: RestartTask,
  task: RestartTask,
  types: readonly ThreadNsType[],
): void {
  for (const type of types) {
    const inode = readNamespace(task.pid, type).inode;
    if (readNamespace(thread.pid, type).inode === inode) continue;
    const fd = openNamespace(task.pid, type);
    try {
      enter(thread, type, fd, inode, task);
    } finally {
      closeSync(fd);
    }
  }
}
