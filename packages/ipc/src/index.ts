/**
 * @ckpt/ipc — SysV IPC: shared memory segments (and their attachments),
 * message queues and semaphore sets of a container's ipc namespace; POSIX
 * message queues the tree has open.
 *
 * @packageDocumentation
 */
import { type CkptPlugin, definePlugin } from '@ckpt/core';
import { mqueueFile, mqueueObject } from './mqueue.js';
import {
  fileMqueueRecord,
  ipcMqueuesRecord,
  ipcMsgMsgRecord,
  ipcMsgRecord,
  ipcRecord,
  ipcSemRecord,
  ipcShmRecord,
  ipcTaskRecord,
  mqueueRecord,
} from './records.js';
import { sysvShmObject, sysvShmVma } from './shm.js';
import { sysvIpcObject, sysvIpcPhase } from './sysvipc.js';

export { MQUEUE_OBJECT, mqueueFile, mqueueObject } from './mqueue.js';
export { type MsgToSave, readMsgQueue, restoreMsgQueue, saveMsgQueue } from './msg.js';
export * from './records.js';
export { readSemSet, restoreSemSet, type SemToSave, saveSemSet } from './sem.js';
export {
  openShm,
  type RestoredShm,
  restoreShm,
  restoreShmRecord,
  SHM_OBJECT,
  type ShmToSave,
  SYSV_SHM_VMA,
  saveShm,
  shmKey,
  sysvShmObject,
  sysvShmVma,
} from './shm.js';
export { SYSVIPC_OBJECT, sysvIpcObject, sysvIpcPhase } from './sysvipc.js';

/** The @ckpt/ipc plugin: its records, objects, the `sysvipc` phase, the attachment VMA handler and the message-queue file handler. */
export const ipcPlugin: CkptPlugin = definePlugin({
  name: '@ckpt/ipc',
  records: [
    ipcTaskRecord,
    ipcRecord,
    ipcShmRecord,
    ipcMsgRecord,
    ipcMsgMsgRecord,
    ipcSemRecord,
    mqueueRecord,
    fileMqueueRecord,
    ipcMqueuesRecord,
  ],
  objects: [sysvIpcObject, sysvShmObject, mqueueObject],
  files: [mqueueFile],
  phases: [sysvIpcPhase],
  vmas: [sysvShmVma],
});

export default ipcPlugin;
