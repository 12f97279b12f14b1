/**
 * SysV semaphore sets (the seed's "support semaphore sysv-ipc"): each set
 * of the namespace is saved with every semaphore's value; restart creates
 * it with its id and key, sets the values, owner and mode. Not kept, as in
 * the seed: the undo adjustments (SEM_UNDO) of each process, which the
 * kernel does not show, and the last operation's time and pid.
 */
import {
  type CheckpointCtx,
  type IpcPerm,
  type RestartCtx,
  type SysvIpcEntry,
  semCreate,
  semValues,
  setIpcPerm,
} from '@ckpt/core';
import { ipcSemRecord } from './records.js';

/** A semaphore set as the checkpoint found it. */
export interface SemToSave {
  perm: IpcPerm;
  values: number[];
}

/** Inside the namespace: the set `e` and its values. */
export function readSemSet(e: SysvIpcEntry): SemToSave {
  return { perm: e, values: semValues(e.id, Number(e.columns.nsems ?? 0)) };
}

/** Write set `s`. */
export function saveSemSet(ctx: CheckpointCtx, s: SemToSave): void {
  ctx.write(ipcSemRecord, { ...s.perm, values: s.values });
}

/** Read a set's record and recreate it inside the namespace (`inNs`). */
export function restoreSemSet(ctx: RestartCtx, inNs: <T>(fn: () => T) => T): void {
  const rec = ctx.read(ipcSemRecord);
  inNs(() => {
    semCreate(rec, rec.values);
    setIpcPerm('sem', rec);
  });
}
