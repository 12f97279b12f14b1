/**
 * Cgroup namespaces (`unshare -C`, a container runtime's private cgroup
 * namespace): saved once per namespace through the objhash, as the cgroup
 * it is rooted at in each hierarchy. A cgroup namespace is rooted where its
 * maker was when it called unshare(2), and the kernel shows no root: ckpt
 * reads a task's cgroups twice, as its own namespace shows them (full
 * paths) and from inside the task's (paths below the root), and the root
 * is what the inner path leaves of the full one.
 *
 * Restart (see ns-object.ts for where each namespace comes from): the
 * first task of a namespace the tree made is moved into the saved roots,
 * makes the namespace with an injected unshare(CLONE_NEWCGROUP), and goes
 * back to its own cgroups (the `cgroups` phase put it there); the others
 * enter it. A root that does not exist here, or lies outside ckpt
 * restart's own cgroup, is a warning: the namespace is then rooted at the
 * task's own cgroup in that hierarchy.
 */

import {
  type CgroupEntry,
  type CheckpointCtx,
  type CheckpointTask,
  CkptError,
  inNamespaceOf,
  moveIntoCgroups,
  type ObjectOps,
  ownNamespace,
  type RecordValue,
  type RestartCtx,
  type RestartTask,
  readProcCgroup,
} from '@ckpt/core';
import {
  checkpointNamespace,
  namespaceObject,
  type RestoredNs,
  restoreNamespace,
} from './ns-object.js';
import { cgroupNsRecord } from './records.js';

/** The saved roots of a cgroup namespace. */
export type CgroupNs = RecordValue<typeof cgroupNsRecord>;

/**
 * The root of a cgroup namespace in one hierarchy, from a task's cgroup
 * there as ckpt sees it (`full`) and as the task does (`inner`), or
 * undefined when the task is outside its namespace's root (`/..` paths).
 */
export function namespaceRoot(full: string, inner: string): string | undefined {
  if (inner === '/' || inner === '') return full;
  if (inner.startsWith('/..')) return undefined;
  if (!full.endsWith(inner)) return undefined;
  return full.slice(0, full.length - inner.length) || '/';
}

/** The roots of the cgroup namespace of `pid`, read from ckpt and from inside it. */
function readRoots(pid: number): CgroupEntry[] {
  const full = readProcCgroup(pid);
  // The same file, read from inside its namespace, names cgroups from its root.
  const inner = inNamespaceOf(pid, 'cgroup', `of pid ${pid}`, () => readProcCgroup(pid));
  return full.map((e) => {
    const seen = inner.find((i) => i.hierarchy === e.hierarchy);
    const root = seen && namespaceRoot(e.path, seen.path);
    if (root === undefined) {
      throw new CkptError(
        'ENOTSUP',
        `pid ${pid} is in cgroup ${e.path} of hierarchy ${e.controllers || 'cgroup2'}, outside the root of its cgroup namespace (it sees ${seen?.path ?? 'nothing'}); restart could not make that namespace again`,
        { pid },
      );
    }
    return { ...e, path: root };
  });
}

/** ObjectOps of cgroup namespaces. */
export const cgroupNsObject: ObjectOps<CgroupNs | RestoredNs<CgroupNs>> = namespaceObject({
  name: 'cgroup_ns',
  id: 15,
  record: cgroupNsRecord,
  describe: (ns) => `cgroup namespace (rooted at ${ns.roots.map((r) => r.path).join(', ')})`,
});

/** Save the cgroup namespace of `task` (nsfs inode `inode`, once per namespace); its objref. */
export function checkpointCgroupNs(
  ctx: CheckpointCtx,
  task: CheckpointTask,
  inode: number,
): number {
  return checkpointNamespace(ctx, 'cgroup_ns', inode, () =>
    inode === ownNamespace('cgroup')
      ? { host: true, roots: [] }
      : { host: false, roots: readRoots(task.pid) },
  );
}

/** Restore the cgroup namespace `objref` for `task` (see the module comment). */
export function restoreCgroupNs(ctx: RestartCtx, task: RestartTask, objref: number): void {
  let own: readonly CgroupEntry[] = [];
  restoreNamespace<CgroupNs>(ctx, task, objref, 'cgroup_ns', 'cgroup', {
    inHost() {},
    prepare(ns) {
      own = readProcCgroup(task.pid);
      moveIntoCgroups(ctx, task, ns.roots, 'the root of its cgroup namespace');
    },
    apply() {
      moveIntoCgroups(ctx, task, own, 'its cgroup');
    },
  });
}
