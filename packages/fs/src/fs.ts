/**
 * The fs phase: cwd, root (chroot) and umask. Paths are as ckpt sees them
 * in /proc, i.e. from its own root, so restart changes directory first,
 * while the task still has ckpt's root, and chroots after. A working
 * directory that was deleted comes back deleted: an empty directory made
 * for the task to enter, then removed.
 */

import { mkdirSync, rmdirSync, statSync } from 'node:fs';
import {
  type CheckpointCtx,
  type CheckpointTask,
  CkptError,
  cString,
  errnoText,
  isSyscallError,
  type RestartCtx,
  type RestartTask,
  readCwd,
  readRoot,
  type TaskPhase,
} from '@ckpt/core';
import { pathReaches } from './path-file.js';
import { fsRecord } from './records.js';

const DELETED = ' (deleted)';

function checkpointFs(ctx: CheckpointCtx, task: CheckpointTask): void {
  const cwd = readCwd(task.pid);
  const root = readRoot(task.pid);
  if (root.endsWith(DELETED)) {
    throw new CkptError(
      'ENOTSUP',
      `pid ${task.pid}: its root directory ${root} was deleted; a deleted root is not supported`,
      { pid: task.pid, path: root.slice(0, -DELETED.length) },
    );
  }
  if (!cwd.endsWith(DELETED)) {
    const here = statSync(`/proc/${task.pid}/cwd`);
    if (!pathReaches(task.pid, cwd, here.dev, here.ino)) {
      throw new CkptError(
        'ENOTSUP',
        `pid ${task.pid}: its working directory ${cwd} now leads to another directory (a mount covers it); restored by path, the task would be elsewhere`,
        { pid: task.pid, path: cwd },
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

/**
 * A directory to stand for the deleted working directory `path` (saved
 * with " (deleted)"): made at its path if that is free, else next to it,
 * else in /tmp; removed once the task is in it, so the task's cwd is a
 * deleted, empty directory again.
 */
function standInDirectory(task: RestartTask, path: string): string {
  const candidates = [
    path,
    `${path}.ckpt-${process.pid}`,
    `/tmp/ckpt-cwd-${task.savedPid}-${process.pid}`,
  ];
  for (const dir of candidates) {
    try {
      mkdirSync(dir, 0o700);
      return dir;
    } catch {
      // taken, or its parent is gone too: the next one
    }
  }
  throw new CkptError(
    'ESYS',
    `pid ${task.savedPid}: cannot make a directory to stand for its deleted working directory ${path}`,
    { pid: task.savedPid, path },
  );
}

function restoreFs(ctx: RestartCtx, task: RestartTask): void {
  const saved = ctx.read(fsRecord);
  const { root, umask } = saved;
  const deletedCwd = saved.cwd.endsWith(DELETED);
  const cwd = deletedCwd ? standInDirectory(task, saved.cwd.slice(0, -DELETED.length)) : saved.cwd;
  // chdir, then chroot (paths are ckpt's, from ckpt's root), then umask:
  // posted, they run with the task's next injected calls.
  const dirs: { call: 'chdir' | 'chroot'; path: string; what: string }[] = [
    { call: 'chdir', path: cwd, what: 'return to its working directory' },
  ];
  if (root !== '/') dirs.push({ call: 'chroot', path: root, what: 'return to its root directory' });
  task.sys.post(
    [
      ...dirs.map((d, i) => ({ name: d.call, args: [{ data: i }] })),
      { name: 'umask', args: [umask] },
    ],
    {
      data: dirs.map((d) => cString(d.path)),
      done: (results) => {
        if (deletedCwd) rmdirSync(cwd);
        dirs.forEach(({ call, path, what }, i) => {
          const r = results[i]!;
          if (r < 0n) {
            throw new CkptError(
              'ESYS',
              `pid ${task.savedPid}: cannot ${what} ${path}: ${call}() failed with ${errnoText(Number(-r))}`,
              {
                pid: task.savedPid,
                path,
                syscall: call,
                errno: Number(-r),
              },
            );
          }
        });
        const r = results[dirs.length]!;
        if (isSyscallError(r)) {
          throw new CkptError(
            'ESYS',
            `restoring the umask in pid ${task.pid} failed: umask() returned ${errnoText(Number(-r))}`,
            { pid: task.pid, syscall: 'umask', errno: Number(-r) },
          );
        }
      },
    },
  );
}

/** The fs phase (order 350: after the fd table). */
export const fsPhase: TaskPhase = {
  name: 'fs',
  order: 350,
  checkpoint: checkpointFs,
  restore: restoreFs,
};
