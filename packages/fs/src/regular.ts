/**
 * Regular files and directories: saved as path, open flags and position;
 * reopened by path at restart and moved back to the position.
 */
import type { FileHandler } from '@ckpt/core';
import { isMessageQueue, reopenPathFile, savePathFile } from './path-file.js';
import { refusePressureTrigger } from './pressure.js';
import { FileKind, PathType } from './records.js';

/**
 * A regular file or directory that still has its name. An unlinked one
 * ("(deleted)") has no path to reopen: it falls through to the
 * unsupported-file error.
 */
export const regularFile: FileHandler = {
  kind: 'regular',
  id: FileKind.REGULAR,
  match: (f) =>
    f.target.kind === 'path' &&
    !f.target.deleted &&
    (f.stat.type === 'regular' || f.stat.type === 'directory') &&
    !isMessageQueue(f),
  checkpoint(ctx, _task, file) {
    const type = file.stat.type === 'directory' ? PathType.DIRECTORY : PathType.REGULAR;
    const path = file.target.path ?? file.target.text;
    refusePressureTrigger(file, path);
    savePathFile(ctx, file, path, type);
  },
  restore: (ctx, task) => reopenPathFile(ctx, task, true),
};
