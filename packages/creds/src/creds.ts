/**
 * The credentials phase: uids, gids, groups, capability sets, securebits,
 * no_new_privs and dumpable of a task. Checkpoint reads them from
 * /proc/PID/status and, for what status does not show, with prctl inside
 * the task; restart applies them last (only the CPU state follows), so
 * that every object before was re-created with the credentials of the
 * user running the restart, as the seed does.
 */
import {
  type CheckpointCtx,
  type CheckpointTask,
  CkptError,
  InjectedRead,
  ownNamespace,
  PR,
  type ProcStatus,
  type RestartCtx,
  type RestartTask,
  readStatus,
  type TaskPhase,
} from '@ckpt/core';
import { PR_CAPS } from './caps.js';
import { capabilitiesRecord, credRecord, type SavedCaps, type SavedCred } from './records.js';
import { applyCreds, readSecurebits } from './restore.js';

/** (uid_t)-1 means "unchanged" to setres*id: never a real id. */
const NO_ID = 0xffffffff;

/**
 * Ids in /proc are translated into the reader's user namespace, and
 * capabilities only count inside the task's own: restoring those of a
 * task in another user namespace here would be wrong, and could grant it
 * capabilities it did not have.
 */
function refuseOtherUserNs(ctx: CheckpointCtx, task: CheckpointTask): void {
  // ckpt never enters another user namespace.
  if (ctx.namespaces.inode(task.pid, 'user') !== ownNamespace('user')) {
    throw new CkptError(
      'ENOTSUP',
      `pid ${task.pid} is in a user namespace other than ckpt's; checkpointing its credentials is not supported yet`,
      { pid: task.pid },
    );
  }
}

/** What only the task itself can tell: securebits and dumpable (prctl). */
const prctlReads = new InjectedRead<{ securebits: number; dumpable: number }>(
  'creds:prctl',
  (task, done) =>
    task.sys.postChecked(
      [
        { name: 'prctl', args: [PR_CAPS.GET_SECUREBITS, 0, 0, 0, 0], what: 'reading securebits' },
        { name: 'prctl', args: [PR.GET_DUMPABLE, 0, 0, 0, 0], what: 'reading dumpable' },
      ],
      {
        done: ([securebits, dumpable]) =>
          done({ securebits: Number(securebits), dumpable: Number(dumpable) }),
      },
    ),
);

function checkpointCreds(ctx: CheckpointCtx, task: CheckpointTask): void {
  refuseOtherUserNs(ctx, task);
  const st = task.status;
  const { securebits, dumpable } = prctlReads.get(task);
  const ids = (s: typeof st.uid) => ({
    real: s.real,
    effective: s.effective,
    saved: s.saved,
    fs: s.fs,
  });
  ctx.write(credRecord, {
    uid: ids(st.uid),
    gid: ids(st.gid),
    groups: [...st.groups].sort((a, b) => a - b),
    securebits,
    noNewPrivs: st.noNewPrivs,
    dumpable,
  });
  ctx.write(capabilitiesRecord, {
    inheritable: st.capInh,
    permitted: st.capPrm,
    effective: st.capEff,
    bounding: st.capBnd,
    ambient: st.capAmb,
  });
}

/** Refuse records no checkpoint of a real task can produce. */
function checkImage(task: RestartTask, cred: SavedCred, caps: SavedCaps): void {
  const bad = (why: string, recordType: number) =>
    new CkptError('EBADREC', `pid ${task.savedPid}: malformed credentials in the image: ${why}`, {
      pid: task.savedPid,
      recordType,
    });
  for (const kind of ['uid', 'gid'] as const) {
    if (Object.values(cred[kind]).includes(NO_ID)) throw bad(`${kind} ${NO_ID}`, credRecord.type);
  }
  if (cred.groups.includes(NO_ID)) throw bad(`group ${NO_ID}`, credRecord.type);
  if (cred.dumpable > 2) throw bad(`dumpable ${cred.dumpable}`, credRecord.type);
  if (caps.effective & ~caps.permitted) {
    throw bad('effective capabilities outside the permitted set', capabilitiesRecord.type);
  }
  if (caps.ambient & ~(caps.permitted & caps.inheritable)) {
    throw bad('ambient capabilities outside permitted ∩ inheritable', capabilitiesRecord.type);
  }
}

/**
 * The credentials restored tasks start with: every one is a clone of the
 * restore stub, with ckpt's, until this phase. Read once per restart, from
 * the first task (its securebits with an injected call, the rest from
 * /proc/PID/status).
 */
const startingCreds = new WeakMap<RestartCtx, { securebits: number; status: ProcStatus }>();

function restoreCreds(ctx: RestartCtx, task: RestartTask): void {
  const cred = ctx.read(credRecord);
  const caps = ctx.read(capabilitiesRecord);
  checkImage(task, cred, caps);
  let start = startingCreds.get(ctx);
  if (!start) {
    start = { securebits: readSecurebits(task), status: readStatus(task.pid) };
    startingCreds.set(ctx, start);
  }
  applyCreds(task, cred, caps, start.securebits, start.status);
}

/**
 * The `creds` phase (order 900: after rlimits, before the CPU state).
 * Credentials belong to each thread (a raw setuid changes only the calling
 * one): every thread's are saved, and applied in that thread.
 */
export const credsPhase: TaskPhase = {
  name: 'creds',
  order: 900,
  prepare: (_ctx, task) => prctlReads.post(task),
  prepareThread: (_ctx, thread) => prctlReads.post(thread),
  checkpoint: checkpointCreds,
  checkpointThread: (ctx, thread) => checkpointCreds(ctx, thread),
  restore: restoreCreds,
  restoreThread: (ctx, thread) => restoreCreds(ctx, thread),
};
