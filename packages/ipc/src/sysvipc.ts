/**
 * The SysV objects of an ipc namespace, saved as a whole (the seed's
 * "save and restore sysvipc namespace basics"): one `sysvipc` object per
 * namespace in the objhash, keyed by its nsfs inode, written when the
 * first task of that namespace reaches the `sysvipc` phase and referenced
 * by objref from every task's `ipc_task` record. Its records: `ipc`, then
 * every segment, queue and semaphore set, then the namespace's POSIX
 * message queues (`mqueue` objects and an `ipc_mqueues` record, see
 * mqueue.ts), which live in the ipc namespace too.
 *
 * Only a container's own ipc namespace is saved as a whole: a subtree
 * shares the host's, whose objects belong to the host (its tasks' records
 * say 0; the host segments it attaches are saved one by one with their
 * first attachment, see shm.ts). Restart recreates the objects in the
 * container's new ipc namespace, with their ids, before any address space
 * is rebuilt (the `mm` phase attaches the segments).
 *
 * ckpt works on the objects from its own thread, moved into the task's
 * namespace for the calls (setns), as /proc/sysvipc and the `*_next_id`
 * sysctls answer for the caller's namespace.
 */
import { closeSync } from 'node:fs';
import {
  type CheckpointCtx,
  type CheckpointTask,
  CkptError,
  inNamespace,
  inNamespaceOf,
  type ListedQueue,
  listSysvIpc,
  mqList,
  type ObjectOps,
  openNamespace,
  ownNamespace,
  type RestartCtx,
  type RestartTask,
  removeIpc,
  type TaskPhase,
} from '@ckpt/core';
import { restoreNamespaceQueues, saveNamespaceQueues } from './mqueue.js';
import { type MsgToSave, readMsgQueue, restoreMsgQueue, saveMsgQueue } from './msg.js';
import { ipcRecord, ipcTaskRecord } from './records.js';
import { readSemSet, restoreSemSet, type SemToSave, saveSemSet } from './sem.js';
import {
  isRemoved,
  noteSavedShm,
  openShm,
  restoreShm,
  SHM_OBJECT,
  type ShmToSave,
  saveShm,
  shmKey,
} from './shm.js';

/** Name of the objhash type of a namespace's SysV objects. */
export const SYSVIPC_OBJECT = 'sysvipc';

/** What a checkpoint hands to checkpointObj: a task of the namespace. */
interface NsRef {
  pid: number;
  nsInode: number;
}

function checkpointSysvIpc(ctx: CheckpointCtx, ref: NsRef): void {
  let shms: ShmToSave[] = [];
  let msgs: MsgToSave[] = [];
  let sems: SemToSave[] = [];
  let queues: ListedQueue[] = [];
  inNamespaceOf(ref.pid, 'ipc', `of pid ${ref.pid}`, () => {
    try {
      shms = listSysvIpc('shm').map(openShm);
      msgs = listSysvIpc('msg').map(readMsgQueue);
      sems = listSysvIpc('sem').map(readSemSet);
      queues = mqList();
    } catch (e) {
      for (const s of shms) closeSync(s.fd);
      throw e;
    }
  });
  ctx.write(ipcRecord, {
    nsInode: BigInt(ref.nsInode),
    nshm: shms.length,
    nmsg: msgs.length,
    nsem: sems.length,
  });
  shms.forEach((shm, i) => {
    // Segments are part of this object; their objrefs are for the
    // attachments (VMA records) to name them.
    const key = shmKey(ref.nsInode, shm.perm.id);
    const { entry } = ctx.objhash.track(SHM_OBJECT, key, shm.perm);
    entry.checkpointed = true;
    noteSavedShm(ctx, key, entry.objref, shm.size);
    try {
      saveShm(ctx, shm, entry.objref);
    } catch (e) {
      for (const rest of shms.slice(i + 1)) closeSync(rest.fd);
      throw e;
    }
  });
  for (const q of msgs) saveMsgQueue(ctx, q);
  for (const s of sems) saveSemSet(ctx, s);
  saveNamespaceQueues(ctx, ref.pid, queues);
}

/** The task whose `ipc_task` record is being read: the objects go into its namespace. */
const restoring = new WeakMap<RestartCtx, RestartTask>();

/** A restored namespace's objects (nothing more is needed of them after). */
interface RestoredSysvIpc {
  nsInode: bigint;
}

function restoreSysvIpc(ctx: RestartCtx): RestoredSysvIpc {
  const rec = ctx.read(ipcRecord);
  const task = restoring.get(ctx);
  if (!task) {
    throw new CkptError(
      'EBADREC',
      `SysV IPC objects (ipc namespace ${rec.nsInode}) defined outside a task's ipc_task record`,
      { offset: ctx.reader.offset, recordType: ipcRecord.type },
    );
  }
  // One fd on the namespace for every call, kept until the deferred work is done.
  const nsFd = openNamespace(task.pid, 'ipc');
  const inNs = <T>(fn: () => T): T => inNamespace(nsFd, 'ipc', `of pid ${task.pid}`, fn);
  const detach: (() => void)[] = [];
  const removed: number[] = [];
  const finish = (work: { detach: (() => void)[]; removed: number[] }, remove: boolean) => {
    try {
      for (const d of work.detach) d();
      if (remove) {
        inNs(() => {
          for (const id of work.removed) removeIpc('shm', id);
        });
      }
    } finally {
      closeSync(nsFd);
    }
  };
  try {
    for (let i = 0; i < rec.nshm; i++) {
      const shm = restoreShm(ctx, inNs);
      detach.push(shm.detach);
      if (isRemoved(shm.rec)) removed.push(shm.rec.id);
    }
    for (let i = 0; i < rec.nmsg; i++) restoreMsgQueue(ctx, inNs);
    for (let i = 0; i < rec.nsem; i++) restoreSemSet(ctx, inNs);
    restoreNamespaceQueues(ctx, task);
  } catch (e) {
    finish({ detach, removed }, false);
    throw e;
  }
  // At the end, once every task has attached its segments: ckpt detaches
  // its own attachments, and segments removed while attached go again.
  ctx.deferqueue.add(
    { detach, removed },
    (w) => finish(w, true),
    (w) => finish(w, false),
  );
  return { nsInode: rec.nsInode };
}

/** ObjectOps of a namespace's SysV objects (linux-cr kept them with the ipc_ns; id 11). */
export const sysvIpcObject: ObjectOps<NsRef | RestoredSysvIpc> = {
  name: SYSVIPC_OBJECT,
  id: 11,
  checkpoint: (ctx, obj) => checkpointSysvIpc(ctx, obj as NsRef),
  restore: restoreSysvIpc,
  describe: (obj) => `SysV IPC objects of ipc namespace ${obj.nsInode}`,
};

function checkpointTask(ctx: CheckpointCtx, task: CheckpointTask): void {
  const nsInode = ctx.namespaces.inode(task.pid, 'ipc');
  const objref =
    nsInode === ownNamespace('ipc')
      ? 0
      : ctx.checkpointObj(SYSVIPC_OBJECT, String(nsInode), { pid: task.pid, nsInode });
  ctx.write(ipcTaskRecord, { objref });
}

function restoreTask(ctx: RestartCtx, task: RestartTask): void {
  restoring.set(ctx, task);
  try {
    ctx.read(ipcTaskRecord);
  } finally {
    restoring.delete(ctx);
  }
}

/**
 * The SysV IPC phase: after `ns` (150), which gave a container its new ipc
 * namespace and its settings, and `pidns` (160); before `mm` (200), which
 * attaches segments.
 */
export const sysvIpcPhase: TaskPhase = {
  name: 'sysvipc',
  order: 170,
  checkpoint: checkpointTask,
  restore: restoreTask,
};
