/**
 * The `ns` phase: each task's uts, ipc, network and cgroup namespaces, by objref
 * (linux-cr's `ckpt_hdr_ns`), each namespace saved once through the
 * objhash. Restart gives every namespace a home (restart's own, a
 * container's new one, or one made again by unshare, see ns-object.ts)
 * and moves each task and thread into its own.
 *
 * A namespace the tree made is refused when a process outside the tree is
 * in it too, or a bind mount holds it (`ip netns add`): restart would split
 * it. The container's init's own namespaces are not checked so: the
 * `unshare` that started the container is in them, outside the tree.
 * Cgroup namespaces are saved by their roots (cgroup-ns.ts). Time namespaces are part of the tree (core's
 * time-ns.ts): a task is born in its own.
 */
import { readFileSync } from 'node:fs';
import {
  type CheckpointCtx,
  CheckpointFlags,
  type CheckpointTask,
  CkptError,
  ownNamespace,
  type RestartCtx,
  type RestartTask,
  readComm,
  readNamespace,
  readStatus,
  scanProcesses,
  type TaskPhase,
  type ThreadNsType,
} from '@ckpt/core';
import { checkpointCgroupNs, restoreCgroupNs } from './cgroup-ns.js';
import { checkpointIpc, restoreIpc } from './ipc.js';
import { checkpointNet, restoreNet } from './net.js';
import { enterTaskNamespaces } from './ns-object.js';
import { taskNsRecord } from './records.js';
import { checkpointUts, restoreUts } from './uts.js';

/** The namespaces saved per task, in the order they are written. */
const NS_TYPES = ['uts', 'ipc', 'net', 'cgroup'] as const satisfies readonly ThreadNsType[];

/** The namespaces each checkpoint has checked for sharers outside its tree. */
const checked = new WeakMap<CheckpointCtx, Set<string>>();

/** An nsfs bind mount of `type:[inode]` in ckpt's mount namespace, if any. */
function bindMountOf(type: string, inode: number): string | undefined {
  const name = `${type}:[${inode}]`;
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-');
    if (sep > 0 && f[sep + 1] === 'nsfs' && f[3] === name) return f[4];
  }
  return undefined;
}

/**
 * Refuse a namespace of the tree's own (not ckpt's) that a process outside
 * the tree, or a bind mount, also holds (see the module comment).
 */
function refuseSharedOutside(
  ctx: CheckpointCtx,
  task: CheckpointTask,
  type: ThreadNsType,
  inode: number,
): void {
  if (inode === ownNamespace(type)) return;
  if (ctx.has(CheckpointFlags.CONTAINER) && inode === ctx.namespaces.inode(ctx.pids[0]!, type)) {
    return;
  }
  let seen = checked.get(ctx);
  if (!seen) {
    seen = new Set();
    checked.set(ctx, seen);
  }
  const key = `${type}:${inode}`;
  if (seen.has(key)) return;
  seen.add(key);
  const refuse = (who: string) =>
    new CkptError(
      'ENOTSUP',
      `pid ${task.pid} is in ${type} namespace ${type}:[${inode}], which ${who} also holds; restart would make the tree a namespace of its own (checkpoint a tree that includes it, or do without it)`,
      { pid: task.pid },
    );
  const mount = bindMountOf(type, inode);
  if (mount !== undefined) throw refuse(`a bind mount at ${mount}`);
  const tree = new Set(ctx.pids);
  // What started the tree's root in its own namespace (`unshare --fork`,
  // waiting for it) holds it too: the restored tree gets one of its own.
  const root = ctx.pids[0]!;
  const launcher = ctx.namespaces.inode(root, type) === inode ? readStatus(root).ppid : undefined;
  for (const { pid } of scanProcesses()) {
    if (tree.has(pid) || pid === process.pid) continue;
    try {
      if (readNamespace(pid, type).inode !== inode) continue;
      // The leak check warns of it (see core's leaks.ts).
      if (pid === launcher) continue;
      throw refuse(`pid ${pid} (${readComm(pid)}), outside the tree,`);
    } catch (e) {
      if (e instanceof CkptError && e.code === 'ENOTSUP') throw e;
      // gone, or a zombie: no namespaces
    }
  }
}

function checkpointNs(ctx: CheckpointCtx, task: CheckpointTask): void {
  const inodes = {} as Record<ThreadNsType, number>;
  for (const type of NS_TYPES) {
    inodes[type] = ctx.namespaces.inode(task.pid, type);
    refuseSharedOutside(ctx, task, type, inodes[type]);
  }
  ctx.write(taskNsRecord, {
    uts: checkpointUts(ctx, task, inodes.uts),
    ipc: checkpointIpc(ctx, task, inodes.ipc),
    net: checkpointNet(ctx, task, inodes.net),
    cgroup: checkpointCgroupNs(ctx, task, inodes.cgroup),
  });
}

function restoreNs(ctx: RestartCtx, task: RestartTask): void {
  const rec = ctx.read(taskNsRecord);
  restoreUts(ctx, task, rec.uts);
  restoreIpc(ctx, task, rec.ipc);
  restoreNet(ctx, task, rec.net);
  restoreCgroupNs(ctx, task, rec.cgroup);
}

/** The namespaces phase: after `task` (100), before `mm` (200), which empties the stub. */
export const nsPhase: TaskPhase = {
  name: 'ns',
  order: 150,
  checkpoint: checkpointNs,
  restore: restoreNs,
  restoreThread: (_ctx, thread, task) => enterTaskNamespaces(thread, task, NS_TYPES),
};
