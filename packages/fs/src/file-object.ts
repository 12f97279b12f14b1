/**
 * The `file` shared-object type: one open file description, saved once
 * however many fds refer to it (dup, F_DUPFD) and restored as one open
 * file, so the fds share their offset and flags again. Its records are a
 * generic `file` record naming the handler, then the handler's own, then
 * (only when set) its signal-driven I/O owner (file-owner.ts).
 */
import { closeSync } from 'node:fs';
import {
  type CheckpointTask,
  CkptError,
  copyFdFromProcess,
  errnoText,
  type FileHandler,
  type FileInfo,
  grabFd,
  isCkptError,
  isSyscallError,
  type ObjectOps,
  type RestartCtx,
  type RestartTask,
} from '@ckpt/core';
import { checkpointOwner, restoreOwner } from './file-owner.js';
import { F_DUPFD_CLOEXEC, O_CLOEXEC } from './flags.js';
import { fileRecord } from './records.js';

/** What the files phase hands to checkpointObj for each open file description. */
export interface SavedFile {
  task: CheckpointTask;
  file: FileInfo;
  handler: FileHandler;
}

/**
 * A restored open file: the fd it occupies in the task that restored it
 * (the files phase may move it while it places that task's fds), the task
 * (`holder`) and, once the holder's fd table is complete, the final fd
 * number it keeps there (`holderFd`): other tasks that share the open file
 * copy it from that fd (pidfd_getfd), so no temporary fd has to outlive
 * the holder's files phase.
 */
export interface RestoredFile {
  fd: number;
  holder?: RestartTask;
  holderFd?: number;
}

/**
 * The task whose fd table is being restored. ObjectOps.restore gets only
 * the context, and objects are restored inside the files phase's reads, so
 * the phase registers its task here for the duration.
 */
const restoring = new WeakMap<RestartCtx, RestartTask>();
/** For the task being restored: the first fd above its whole saved fd table. */
const aboveTable = new WeakMap<RestartCtx, number>();
/** For the task being restored: what runs once its fd table is complete. */
const whenComplete = new WeakMap<RestartCtx, (() => void)[]>();

/**
 * Run `fn` once the fd table of the task being restored is complete (every
 * fd at its number), before the temporary fds the files phase used are
 * closed: e.g. to add an epoll's targets, which it names by fd number.
 */
export function whenTableComplete(ctx: RestartCtx, fn: () => void): void {
  const list = whenComplete.get(ctx);
  if (!list) throw new CkptError('EBADREC', 'an open file restored outside an fd table');
  list.push(fn);
}

/** Run what {@link whenTableComplete} queued for the task being restored. */
export function tableComplete(ctx: RestartCtx): void {
  for (const fn of whenComplete.get(ctx)?.splice(0) ?? []) fn();
}

/**
 * Run `fn` with `task` as the task `file` objects are restored into;
 * `above` is the first fd above its saved table (where fds that must
 * survive the placing of the table can go).
 */
export function restoringInto<T>(
  ctx: RestartCtx,
  task: RestartTask,
  above: number,
  fn: () => T,
): T {
  restoring.set(ctx, task);
  aboveTable.set(ctx, above);
  whenComplete.set(ctx, []);
  try {
    return fn();
  } finally {
    restoring.delete(ctx);
    aboveTable.delete(ctx);
    whenComplete.delete(ctx);
  }
}

/** The task whose fd table is being restored, and the first fd above that table. */
export function restoringTask(ctx: RestartCtx, what: string): { task: RestartTask; above: number } {
  const task = restoring.get(ctx);
  if (!task) {
    throw new CkptError('EBADREC', `${what} appears outside an fd table`, {
      offset: ctx.reader.offset,
    });
  }
  return { task, above: aboveTable.get(ctx) ?? 0 };
}
/**
 * Move fd `fd` of `task` above its saved fd table (to `above` or higher),
 * where placing the table's fds cannot clobber it; the old fd is closed
 * with the task's next injected call. Returns the new fd.
 */
export function moveAboveTable(task: RestartTask, fd: number, above: number, what: string): number {
  const moved = Number(task.sys.check('fcntl', [fd, F_DUPFD_CLOEXEC, above], what));
  task.sys.post([{ name: 'close', args: [fd] }]);
  return moved;
}

/**
 * Copy the open file `shared`, restored in an earlier task, into `task`
 * from inside it: pidfd_getfd of the holder's final fd (see core's
 * `copyFdFromProcess`, which also reaches holders outside the task's pid
 * namespace).
 * The copy is the same open file description (one offset, one set of flags).
 */
export function copyFromHolder(task: RestartTask, shared: RestoredFile, fd: number): number {
  const { holder, holderFd, what } = heldAt(task, shared, fd);
  return copyFdFromProcess(task, holder.pid, holderFd, what);
}

/** Where the holder keeps `shared`, for a copy to fd `fd` of `task`. */
function heldAt(task: RestartTask, shared: RestoredFile, fd: number) {
  const holder = shared.holder!;
  const holderFd = shared.holderFd;
  if (holderFd === undefined) {
    throw new CkptError(
      'EUNEXPECTED',
      `fd ${fd} shares an open file with pid ${holder.savedPid}, which holds it at no fd yet`,
      { pid: task.savedPid, fd },
    );
  }
  return {
    holder,
    holderFd,
    what: `copying fd ${holderFd} of pid ${holder.savedPid} for fd ${fd}`,
  };
}

/**
 * Like {@link copyFromHolder}, but posted, with the placing: the copy
 * lands at fd `fd` of `task` (close-on-exec as told) when the task's
 * posted calls run, with no round trip of its own. Taken above the fd table
 * first (`above`), so that it clobbers nothing, then duplicated to `fd`.
 */
export function postCopyFromHolder(
  ctx: RestartCtx,
  task: RestartTask,
  shared: RestoredFile,
  fd: number,
  cloexec: boolean,
  above: number,
): void {
  const { holder, holderFd, what } = heldAt(task, shared, fd);
  // ckpt's own copy stays open until the task took it (or the restart ends).
  const own = { fd: grabFd(holder.pid, holderFd), open: true };
  const release = () => {
    if (!own.open) return;
    own.open = false;
    closeSync(own.fd);
  };
  ctx.deferqueue.add(own, release, release);
  const calls = [
    { name: 'pidfd_getfd' as const, args: [task.ckptPidfd, own.fd, 0], what },
    { name: 'fcntl' as const, args: [{ result: 0 }, F_DUPFD_CLOEXEC, above], what },
    { name: 'close' as const, args: [{ result: 0 }], what },
    { name: 'dup3' as const, args: [{ result: 1 }, fd, cloexec ? O_CLOEXEC : 0], what },
    { name: 'close' as const, args: [{ result: 1 }], what },
  ];
  task.sys.post(calls, {
    done: (results) => {
      release();
      const i = results.findIndex(isSyscallError);
      if (i < 0) return;
      throw new CkptError(
        'ESYS',
        `${calls[i]!.what} in pid ${task.pid} failed: ${calls[i]!.name}() returned ${errnoText(Number(-results[i]!))}`,
        { pid: task.pid, fd, syscall: calls[i]!.name, errno: Number(-results[i]!) },
      );
    },
  });
}

function describe(f: SavedFile | RestoredFile): string {
  return 'file' in f
    ? `fd ${f.file.fd} of pid ${f.task.pid} (${f.file.target.text})`
    : `fd ${f.fd}`;
}

/** ObjectOps of open files (linux-cr's CKPT_OBJ_FILE, hence id 3). */
export const fileObject: ObjectOps<SavedFile | RestoredFile> = {
  name: 'file',
  id: 3,
  checkpoint(ctx, obj) {
    const { task, file, handler } = obj as SavedFile;
    ctx.write(fileRecord, { kind: handler.id, fd: file.fd, target: file.target.text });
    handler.checkpoint(ctx, task, file);
    // Signal-driven I/O (F_SETOWN, F_SETSIG, O_ASYNC), for any kind of file.
    checkpointOwner(ctx, file);
  },
  restore(ctx, objref) {
    const rec = ctx.read(fileRecord);
    const task = restoring.get(ctx);
    if (!task) {
      throw new CkptError(
        'EBADREC',
        `open file ${objref} (fd ${rec.fd}: ${rec.target}) appears outside an fd table`,
        {
          recordType: fileRecord.type,
          offset: ctx.reader.offset,
        },
      );
    }
    const handler = ctx.registry.fileHandlerById(rec.kind);
    if (!handler) {
      throw new CkptError(
        'ENOTSUP',
        `pid ${task.savedPid} fd ${rec.fd}: ${rec.target} was saved by file handler ${rec.kind}, which no loaded plugin provides`,
        { pid: task.savedPid, fd: rec.fd, recordType: fileRecord.type },
      );
    }
    try {
      const fd = handler.restore(ctx, task);
      restoreOwner(ctx, task, fd, rec.fd);
      return { fd, holder: task };
    } catch (e) {
      // Handlers know their own record, not which fd it was saved for. An
      // error that names an address is a memory call posted earlier that
      // ran with this file's calls, not about this fd.
      if (isCkptError(e) && e.context.fd === undefined && e.context.address === undefined) {
        e.context.fd = rec.fd;
      }
      throw e;
    }
  },
  describe,
};
