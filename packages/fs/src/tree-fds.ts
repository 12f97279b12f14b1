/**
 * Every fd of the checkpointed tree with what it refers to, read from /proc
 * once per checkpoint: the handlers that pair ends across tasks (pipes,
 * unix socket pairs, ptys) look their peers up here instead of walking
 * every task's fds each time.
 */
import { type CheckpointCtx, type FdTarget, listFds, readFdTarget } from '@ckpt/core';

/** An fd of a task of the tree. */
export interface TreeFd {
  pid: number;
  fd: number;
  target: FdTarget;
}

const scans = new WeakMap<CheckpointCtx, TreeFd[]>();

/** The fds of every task of the tree (zombies have none), in task order. */
export function treeFds(ctx: CheckpointCtx): readonly TreeFd[] {
  let all = scans.get(ctx);
  if (all) return all;
  all = [];
  for (const pid of ctx.pids) {
    let fds: number[];
    try {
      fds = listFds(pid);
    } catch {
      continue; // a zombie has no fd table
    }
    for (const fd of fds) all.push({ pid, fd, target: readFdTarget(pid, fd) });
  }
  scans.set(ctx, all);
  return all;
}
