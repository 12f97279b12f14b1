/**
 * The fs phase: cwd, root (chroot) and umask. Paths are as ckpt sees them
 * in /proc, i.e. from its own root, so restart changes directory first,
 * while the task still has ckpt's root, and chroots after.
 */
import {
  type CheckpointCtx,
  type CheckpointTask,
  CkptError,
  cString,
  type RestartCtx,
  type RestartTask,
  readCwd,
  readRoot,
  stage,
  type TaskPhase,
} from '@ckpt/core';
import { fsRecord } from './records.js';

const DELETED = ' (deleted)';

function checkpointFs(ctx: CheckpointCtx, task: CheckpointTask): void {
  const cwd = readCwd(task.pid);
  const root = readRoot(task.pid);
  for (const [what, path] of [
    ['working directory', cwd],
    ['root directory', root],
  ] as const) {
    if (path.endsWith(DELETED)) {
      throw new CkptError(
        'ENOTSUP',
        `pid ${task.pid}: its ${what} ${path} was deleted; deleted directories are not supported`,
        {
          pid: task.pid,
          path: path.slice(0, -DELETED.length),
        },
      );
    }
  }
  const { umask } = task.status;
  if (umask === undefined) {
    throw new CkptError(
      'ENOSYS',
      `pid ${task.pid}: this kernel does not show the umask in /proc/${task.pid}/status`,
      {
        pid: task.pid,
      },
    );
  }
  ctx.write(fsRecord, { cwd, root, umask });
}

function inDirectory(
  task: RestartTask,
  call: 'chdir' | 'chroot',
  path: string,
  what: string,
): void {
  const [addr] = stage(task, [cString(path)]);
  const r = task.sys.call(call, [addr!]);
  if (r < 0n) {
    throw new CkptError(
      'ESYS',
      `pid ${task.savedPid}: cannot ${what} ${path}: ${call}() failed with errno ${-r}`,
      {
        pid: task.savedPid,
        path,
        syscall: call,
        errno: Number(-r),
      },
    );
  }
}

function restoreFs(ctx: RestartCtx, task: RestartTask): void {
  const { cwd, root, umask } = ctx.read(fsRecord);
  inDirectory(task, 'chdir', cwd, 'return to its working directory');
  if (root !== '/') inDirectory(task, 'chroot', root, 'return to its root directory');
  task.sys.check('umask', [umask], 'restoring the umask');
}

/** The fs phase (order 350: after the fd table). */
export const fsPhase: TaskPhase = {
  name: 'fs',
  order: 350,
  checkpoint: checkpointFs,
  restore: restoreFs,
};
