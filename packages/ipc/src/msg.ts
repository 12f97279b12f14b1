/**
 * SysV message queues (the seed's "support message-queues sysv-ipc"): each
 * queue of the namespace is saved with its byte limit and every queued
 * message, oldest first, copied without being taken (msgrcv MSG_COPY), so a
 * process left running still finds them. Restart creates the queue with its
 * id and key, sets its owner, mode and limit, and queues the messages again
 * in order. Not kept: send/receive times and pids.
 */
import {
  type CheckpointCtx,
  type IpcPerm,
  msgCreate,
  msgPeekAll,
  msgQueueState,
  msgSend,
  type RestartCtx,
  type SysvIpcEntry,
  type SysvMessage,
  setIpcPerm,
} from '@ckpt/core';
import { ipcMsgMsgRecord, ipcMsgRecord } from './records.js';

/** A queue as the checkpoint found it. */
export interface MsgToSave {
  perm: IpcPerm;
  qbytes: bigint;
  messages: SysvMessage[];
}

/** Inside the namespace: the queue `e` and copies of its messages. */
export function readMsgQueue(e: SysvIpcEntry): MsgToSave {
  const { qbytes, qnum } = msgQueueState(e.id);
  // No message is longer than the bytes queued in all of them.
  const cbytes = Number(e.columns.cbytes ?? qbytes);
  return { perm: e, qbytes, messages: msgPeekAll(e.id, qnum, Math.max(cbytes, 1)) };
}

/** Write queue `q` and its messages. */
export function saveMsgQueue(ctx: CheckpointCtx, q: MsgToSave): void {
  ctx.write(ipcMsgRecord, { ...q.perm, qbytes: q.qbytes, qnum: q.messages.length });
  for (const m of q.messages) ctx.write(ipcMsgMsgRecord, { mtype: m.mtype, text: m.text });
}

/** Read a queue's records and recreate it inside the namespace (`inNs`). */
export function restoreMsgQueue(ctx: RestartCtx, inNs: <T>(fn: () => T) => T): void {
  const rec = ctx.read(ipcMsgRecord);
  const messages: SysvMessage[] = [];
  for (let i = 0; i < rec.qnum; i++) messages.push(ctx.read(ipcMsgMsgRecord));
  inNs(() => {
    msgCreate(rec);
    // The limit first: the messages may need more room than a new queue has.
    setIpcPerm('msg', rec, rec.qbytes);
    for (const m of messages) msgSend(rec.id, m);
  });
}
