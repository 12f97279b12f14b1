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
  isSyscallError,
  type RestartCtx,
  type RestartTask,
  readCwd,
  readRoot,
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

function restoreFs(ctx: RestartCtx, task: RestartTask): void {
  const { cwd, root, umask } = ctx.read(fsRecord);
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
        dirs.forEach(({ call, path, what }, i) => {
          const r = results[i]!;
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
        });
        const r = results[dirs.length]!;
        if (isSyscallError(r)) {
          throw new CkptError(
            'ESYS',
            `restoring the umask in pid ${task.pid} failed: umask() returned errno ${-r}`,
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
