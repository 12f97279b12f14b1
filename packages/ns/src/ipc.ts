/**
 * The ipc namespace (the seed's "save and restore sysvipc namespace
 * basics"): its sysctls, read with ckpt's thread inside the namespace
 * (setns), saved once per namespace through the objhash (keyed by the
 * namespace's nsfs inode) and referenced by objref from each task's `ns`
 * record. Its SysV objects are @ckpt/ipc's.
 *
 * Restart (see ns-object.ts for where each namespace comes from): in a
 * new namespace (a container's, or one the tree made) every value is
 * validated, then set. The `*_next_id` sysctls are set last, from the
 * deferqueue, so that SysV objects restored in between do not consume
 * them. The host's settings are never changed.
 */
import { closeSync } from 'node:fs';
import {
  type CheckpointCtx,
  type CheckpointTask,
  inNamespace,
  inNamespaceOf,
  type ObjectOps,
  openNamespace,
  ownNamespace,
  type RestartCtx,
  type RestartTask,
} from '@ckpt/core';
import {
  diffIpcSysctls,
  IPC_SYSCTLS,
  type IpcNs,
  ipcMni,
  needsSet,
  readIpcSysctls,
  validateIpcNs,
  writeIpcSysctls,
} from './ipc-sysctls.js';
import {
  checkpointNamespace,
  namespaceObject,
  type RestoredNs,
  restoreNamespace,
} from './ns-object.js';
import { ipcNsRecord } from './records.js';

/** A restored ipc namespace (see ns-object.ts). */
export type RestoredIpc = RestoredNs<IpcNs>;

/** ObjectOps of ipc namespaces (linux-cr's CKPT_OBJ_IPC_NS, after uts_ns: id 10). */
export const ipcNsObject: ObjectOps<IpcNs | RestoredIpc> = namespaceObject({
  name: 'ipc_ns',
  id: 10,
  record: ipcNsRecord,
  describe: (ipc) => `ipc namespace (msgmni ${ipc.msgmni}, shmmni ${ipc.shmmni})`,
});

/** The sysctls of the ipc namespace of `pid`, read from inside it. */
function readIpcNs(pid: number, inode: number): IpcNs {
  // ckpt's own namespace (a subtree's): no need to move.
  if (inode === ownNamespace('ipc')) return readIpcSysctls();
  return inNamespaceOf(pid, 'ipc', `of pid ${pid}`, readIpcSysctls);
}

/**
 * Save the ipc namespace of `task` (once per namespace) and return its objref.
 * `inode` is its nsfs inode, the object's identity.
 */
export function checkpointIpc(ctx: CheckpointCtx, task: CheckpointTask, inode: number): number {
  return checkpointNamespace(ctx, 'ipc_ns', inode, () => ({
    ...readIpcNs(task.pid, inode),
    host: inode === ownNamespace('ipc'),
  }));
}

/** Set the saved `*_next_id`s in the namespace `fd`, then close it (deferred work). */
function setNextIds(work: { fd: number; ipc: IpcNs; pid: number }): void {
  try {
    inNamespace(work.fd, 'ipc', `of pid ${work.pid}`, () =>
      writeIpcSysctls(work.ipc, (s) => s.nextId === true),
    );
  } finally {
    closeSync(work.fd);
  }
}

/** Restore the ipc namespace `objref` for `task` (see the module comment). */
export function restoreIpc(ctx: RestartCtx, task: RestartTask, objref: number): void {
  restoreNamespace<IpcNs>(ctx, task, objref, 'ipc_ns', 'ipc', {
    inHost(ipc) {
      // Never change the host's settings.
      const diff = diffIpcSysctls(ipc, readIpcSysctls());
      if (diff.length > 0) {
        ctx.log.warn(
          `pid ${task.savedPid}'s ipc namespace had ${diff.join(', ')}; it is restored in the host's ipc namespace, which is not changed`,
        );
      }
    },
    apply: (ipc) => applyIpcNs(ctx, task, ipc),
  });
}

/** Validate and set the saved sysctls in the task's (fresh) ipc namespace. */
function applyIpcNs(ctx: RestartCtx, task: RestartTask, ipc: IpcNs): void {
  validateIpcNs(ipc, { mni: ipcMni() });
  const fd = openNamespace(task.pid, 'ipc');
  try {
    const set = inNamespace(fd, 'ipc', `of pid ${task.pid}`, () =>
      writeIpcSysctls(ipc, (s) => s.nextId !== true),
    );
    if (set.length > 0)
      ctx.log.debug(`ipc namespace of pid ${task.savedPid}: set ${set.join(', ')}`);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  if (IPC_SYSCTLS.some((s) => s.nextId && needsSet(s, ipc))) {
    // The fd keeps the namespace at hand until the end of the restart.
    ctx.deferqueue.add({ fd, ipc, pid: task.pid }, setNextIds, (w) => closeSync(w.fd));
  } else {
    closeSync(fd);
  }
}
