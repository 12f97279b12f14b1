/**
 * The `ns` phase: each task's namespaces, by objref (linux-cr's
 * `ckpt_hdr_ns`), each namespace saved once through the objhash.
 *
 * Restart creates namespaces only for a container's root (see mktree's
 * CLONE_NEW_CONTAINER); every other task inherits its parent's. So the
 * checkpoint refuses, naming the pid and the namespace, a task whose uts or
 * ipc namespace differs from its parent's, and a subtree root with one of
 * its own (it would be restored in the host's).
 */
import {
  type CheckpointCtx,
  CheckpointFlags,
  type CheckpointTask,
  CkptError,
  ownNamespace,
  type RestartCtx,
  type RestartTask,
  type TaskPhase,
} from '@ckpt/core';
import { checkpointIpc, restoreIpc } from './ipc.js';
import { taskNsRecord } from './records.js';
import { checkpointUts, restoreUts } from './uts.js';

/**
 * Namespaces restart cannot recreate yet: a task in one of ckpt's own is
 * fine (restart puts it in restart's); one in another is refused, as it
 * would silently come back in the host's (a sandboxed network reachable,
 * a time namespace's offsets gone).
 */
const NOT_RESTORED = [
  { type: 'net', what: 'network', kind: 'network' },
  { type: 'cgroup', what: 'cgroup', kind: 'cgroup' },
  { type: 'time', what: 'time', kind: 'time' },
  { type: 'time_for_children', what: 'time (for its children)', kind: 'time' },
] as const;

/** Refuse a task in a namespace of a kind restart does not recreate (see NOT_RESTORED). */
function refuseUnrestored(ctx: CheckpointCtx, task: CheckpointTask): void {
  for (const { type, what, kind } of NOT_RESTORED) {
    const mine = ownNamespace(type);
    if (mine === undefined) continue;
    const inode = ctx.namespaces.inode(task.pid, type);
    if (inode !== mine) {
      throw new CkptError(
        'ENOTSUP',
        `pid ${task.pid} is in a ${what} namespace other than ckpt's (${type}:[${inode}], ckpt's ${type}:[${mine}]); checkpointing ${kind} namespaces is not supported yet (restart would put it in the host's)`,
        { pid: task.pid },
      );
    }
  }
}

/** The namespaces saved per task, in the order they are checked and written. */
const NS_TYPES = ['uts', 'ipc'] as const;
type SavedNsType = (typeof NS_TYPES)[number];

/** `pid`'s namespace of `type`: ckpt's own, or a task's of the frozen tree. */
function inodeOf(ctx: CheckpointCtx, pid: number, type: SavedNsType): number | undefined {
  try {
    return pid === process.pid ? ownNamespace(type) : ctx.namespaces.inode(pid, type);
  } catch {
    return undefined; // gone or a zombie: nothing to compare with
  }
}

/** Refuse a namespace restart would not recreate (see the module comment). */
function checkInherited(
  ctx: CheckpointCtx,
  task: CheckpointTask,
  type: SavedNsType,
  inode: number,
): void {
  if (ctx.pids[0] === task.pid) {
    if (!ctx.has(CheckpointFlags.CONTAINER) && inode !== inodeOf(ctx, process.pid, type)) {
      throw new CkptError(
        'ENOTSUP',
        `pid ${task.pid} has its own ${type} namespace (${type}:[${inode}]) but is not the init of a container; it would be restored in the host's, which is not supported yet`,
        { pid: task.pid },
      );
    }
    return;
  }
  const ppid = task.status.ppid;
  const parent = inodeOf(ctx, ppid, type);
  if (parent !== undefined && parent !== inode) {
    throw new CkptError(
      'ENOTSUP',
      `pid ${task.pid} is in ${type} namespace ${type}:[${inode}], its parent ${ppid} in ${type}:[${parent}]; tasks whose ${type} namespace differs from their parent's are not supported yet`,
      { pid: task.pid },
    );
  }
}

function checkpointNs(ctx: CheckpointCtx, task: CheckpointTask): void {
  refuseUnrestored(ctx, task);
  const inodes = {} as Record<SavedNsType, number>;
  for (const type of NS_TYPES) {
    inodes[type] = ctx.namespaces.inode(task.pid, type);
    checkInherited(ctx, task, type, inodes[type]);
  }
  const uts = checkpointUts(ctx, task, inodes.uts);
  const ipc = checkpointIpc(ctx, task, inodes.ipc);
  ctx.write(taskNsRecord, { uts, ipc });
}

function restoreNs(ctx: RestartCtx, task: RestartTask): void {
  const rec = ctx.read(taskNsRecord);
  restoreUts(ctx, task, rec.uts);
  restoreIpc(ctx, task, rec.ipc);
}

/** The namespaces phase: after `task` (100), before `mm` (200), which empties the stub. */
export const nsPhase: TaskPhase = {
  name: 'ns',
  order: 150,
  checkpoint: checkpointNs,
  restore: restoreNs,
};
