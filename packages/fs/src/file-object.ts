/**
 * The `file` shared-object type: one open file description, saved once
 * however many fds refer to it (dup, F_DUPFD) and restored as one open
 * file, so the fds share their offset and flags again. Its records are a
 * generic `file` record naming the handler, then the handler's own.
 */
import {
  type CheckpointTask,
  CkptError,
  type FileHandler,
  type FileInfo,
  isCkptError,
  type ObjectOps,
  type RestartCtx,
  type RestartTask,
} from '@ckpt/core';
import { fileRecord } from './records.js';

/** What the files phase hands to checkpointObj for each open file description. */
export interface SavedFile {
  task: CheckpointTask;
  file: FileInfo;
  handler: FileHandler;
}

/** A restored open file: the fd it occupies in the task (the files phase may move it). */
export interface RestoredFile {
  fd: number;
}

/**
 * The task whose fd table is being restored. ObjectOps.restore gets only
 * the context, and objects are restored inside the files phase's reads, so
 * the phase registers its task here for the duration.
 */
const restoring = new WeakMap<RestartCtx, RestartTask>();

/** Run `fn` with `task` as the task `file` objects are restored into. */
export function restoringInto<T>(ctx: RestartCtx, task: RestartTask, fn: () => T): T {
  restoring.set(ctx, task);
  try {
    return fn();
  } finally {
    restoring.delete(ctx);
  }
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
      return { fd: handler.restore(ctx, task) };
    } catch (e) {
      // Handlers know their own record, not which fd it was saved for.
      if (isCkptError(e) && e.context.fd === undefined) e.context.fd = rec.fd;
      throw e;
    }
  },
  describe,
};
