/**
 * Signal-driven I/O on an open file description, for files of any kind:
 * its owner (F_SETOWN/F_SETOWN_EX: a thread, process or process group),
 * the signal it is sent (F_SETSIG) and O_ASYNC. They belong to the open
 * file description, so they are saved once with the `file` object, after
 * the handler's records (a file_owner record, only when any is set), and
 * set again on the restored file inside the task that restores it:
 * F_SETSIG, F_SETOWN_EX, then O_ASYNC added with F_SETFL (last, as the
 * program did: a tty's fasync takes the caller as owner when none is set).
 *
 * The owner is read through ckpt's copy of the fd (the kernel shows it in
 * no /proc file). An owner outside the tree is not kept (a warning names
 * the fd); one inside gets its restored pid (--no-pids renumbers).
 */
import {
  type CheckpointCtx,
  F_OWNER_PID,
  F_OWNER_TID,
  type FileInfo,
  type FileOwner,
  fileOwner,
  pidSeenBy,
  type RecordValue,
  type RestartCtx,
  type RestartTask,
  readStatus,
  withFdCopy,
} from '@ckpt/core';
import { F_SETFL } from './flags.js';
import { FILE_OWNER, fileOwnerRecord } from './records.js';

type SavedOwner = RecordValue<typeof fileOwnerRecord>;

/** FASYNC: the kernel's bit for O_ASYNC in f_flags (fdinfo `flags`). */
export const O_ASYNC = 0o20000;
const F_GETFL = 3;
const F_SETSIG = 10;
const F_SETOWN_EX = 15;

const OWNER_KINDS = ['thread', 'process', 'process group'];

/** The process `tid` belongs to (itself when it cannot be told). */
function processOf(tid: number): number {
  try {
    return readStatus(tid).tgid;
  } catch {
    return tid;
  }
}

/** Is `owner` a thread, process or process group of the checkpointed tree? */
function inTree(ctx: CheckpointCtx, owner: FileOwner): boolean {
  const pid = owner.type === F_OWNER_TID ? processOf(owner.pid) : owner.pid;
  return ctx.pids.includes(pid);
}

/**
 * Save the signal-driven I/O settings of `file`'s open file description,
 * if it has any (a file_owner record).
 */
export function checkpointOwner(ctx: CheckpointCtx, file: FileInfo): void {
  const where = `pid ${file.pid} fd ${file.fd}`;
  let owner: FileOwner;
  try {
    owner = withFdCopy(file.pid, file.fd, fileOwner);
  } catch (e) {
    ctx.log.warn(`${where}: cannot read its owner for signal-driven I/O (${String(e)})`);
    return;
  }
  const async = (file.info.flags & O_ASYNC) !== 0;
  if (owner.pid !== 0 && !inTree(ctx, owner)) {
    ctx.log.warn(
      `${where}: its signal-driven I/O owner, ${OWNER_KINDS[owner.type] ?? 'pid'} ${owner.pid}, is not part of the checkpointed tree; restart leaves the file without an owner`,
    );
    owner = { ...owner, type: F_OWNER_PID, pid: 0 };
  }
  if (owner.pid === 0 && owner.sig === 0 && !async) return;
  ctx.write(fileOwnerRecord, { type: owner.type, pid: owner.pid, sig: owner.sig, async });
}

/** The owner's pid as restored: undefined when nothing stands for it. */
function restoredOwner(ctx: RestartCtx, rec: SavedOwner): number | undefined {
  const mapped = ctx.pidMap.get(rec.pid);
  if (mapped !== undefined) return mapped;
  // A thread other than a leader: its id is kept unless pids are renumbered.
  const kept = [...ctx.pidMap].every(([saved, now]) => saved === now);
  if (rec.type === F_OWNER_TID && kept) return rec.pid;
  return undefined;
}

/**
 * If a file_owner record follows (the `file` object's last), set its
 * settings again on fd `fd` of `task`, the open file just restored.
 * `savedFd` names the fd in messages.
 */
export function restoreOwner(
  ctx: RestartCtx,
  task: RestartTask,
  fd: number,
  savedFd: number,
): void {
  if (ctx.reader.peek()?.type !== FILE_OWNER) return;
  const rec = ctx.read(fileOwnerRecord);
  const where = `pid ${task.savedPid} fd ${savedFd}`;
  const calls: { name: 'fcntl'; args: (number | { data: number })[]; what: string }[] = [];
  const data: Buffer[] = [];
  if (rec.sig !== 0) {
    calls.push({
      name: 'fcntl',
      args: [fd, F_SETSIG, rec.sig],
      what: `${where}: setting its I/O signal ${rec.sig}`,
    });
  }
  if (rec.pid !== 0) {
    const kind = OWNER_KINDS[rec.type] ?? 'pid';
    const pid = restoredOwner(ctx, rec);
    if (pid === undefined) {
      ctx.log.warn(
        `${where}: its signal-driven I/O owner, ${kind} ${rec.pid}, has no counterpart in the restored tree (--no-pids renumbers it); the file is left without an owner`,
      );
    } else {
      const ex = Buffer.alloc(8);
      ex.writeInt32LE(rec.type, 0);
      ex.writeInt32LE(pidSeenBy(task, pid), 4);
      calls.push({
        name: 'fcntl',
        args: [fd, F_SETOWN_EX, { data: data.push(ex) - 1 }],
        what: `${where}: making ${kind} ${pid} its owner`,
      });
    }
  }
  if (rec.async) {
    // O_ASYNC joins the flags the handler restored (F_SETFL sets them all).
    const what = `${where}: turning on O_ASYNC`;
    if (calls.length > 0) task.sys.postChecked(calls, { data });
    const flags = Number(task.sys.check('fcntl', [fd, F_GETFL, 0], what));
    task.sys.postChecked([{ name: 'fcntl', args: [fd, F_SETFL, flags | O_ASYNC], what }]);
    return;
  }
  if (calls.length > 0) task.sys.postChecked(calls, { data });
}
