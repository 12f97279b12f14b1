/**
 * pidfds (pidfd_open(2), clone's CLONE_PIDFD: how programs wait for or
 * signal a child without pid races) that refer to a process of the tree:
 * saved as the pid fdinfo names, opened again inside the task with
 * pidfd_open once every task exists (the tree is built before any file is
 * restored). A pidfd for a process outside the tree, or for one that has
 * been reaped, is refused: nothing at restart could stand for it.
 */
import { CkptError, type FileHandler, type FileInfo, pidSeenBy, readStatus } from '@ckpt/core';
import { moveAboveTable, restoringTask } from './file-object.js';
import { FileKind, filePidfdRecord } from './records.js';

const O_NONBLOCK = 0o4000;
/** PIDFD_THREAD: a pidfd for one thread, not its process. */
const O_EXCL = 0o200;

/** The pid fdinfo's `Pid:` line names (-1 once the process is reaped). */
function targetOf(file: FileInfo): number {
  const line = file.info.extra.find((l) => l.startsWith('Pid:'));
  return line === undefined ? -1 : Number(line.slice(4).trim());
}

/** The process (thread group) that thread `tid` belongs to; `tid` itself when unknown. */
function threadGroupOf(tid: number): number {
  try {
    return readStatus(tid).tgid;
  } catch {
    return tid;
  }
}

export const pidfdFile: FileHandler = {
  kind: 'pidfd',
  id: FileKind.PIDFD,
  match: (f) => f.target.kind === 'anon_inode' && f.target.anonType === 'pidfd',
  checkpoint(ctx, _task, file) {
    const pid = targetOf(file);
    const where = `pid ${file.pid} fd ${file.fd}`;
    if (pid <= 0) {
      throw new CkptError(
        'ENOTSUP',
        `${where}: a pidfd for a process that has ended and been reaped; it cannot be restored`,
        { pid: file.pid, fd: file.fd },
      );
    }
    const tgid = threadGroupOf(pid);
    if (tgid !== pid && ctx.pids.includes(tgid)) {
      throw new CkptError(
        'ENOTSUP',
        `${where}: a pidfd for thread ${pid} of pid ${tgid} (PIDFD_THREAD) is not supported yet`,
        { pid: file.pid, fd: file.fd },
      );
    }
    if (!ctx.pids.includes(pid)) {
      throw new CkptError(
        'ENOTSUP',
        `${where}: a pidfd for pid ${pid}, which is not part of the checkpointed tree; it cannot be restored`,
        { pid: file.pid, fd: file.fd },
      );
    }
    ctx.write(filePidfdRecord, { pid, flags: file.info.flags & (O_NONBLOCK | O_EXCL) });
  },
  restore(ctx, task) {
    const rec = ctx.read(filePidfdRecord);
    const { above } = restoringTask(ctx, 'a pidfd');
    if (task.pid !== task.savedPid) {
      throw new CkptError(
        'ENOTSUP',
        `pid ${task.savedPid}: a pidfd for pid ${rec.pid} cannot follow --no-pids, which renumbers it`,
        { pid: task.savedPid },
      );
    }
    const what = `opening a pidfd for pid ${rec.pid}`;
    const fd = Number(task.sys.check('pidfd_open', [pidSeenBy(task, rec.pid), rec.flags], what));
    return moveAboveTable(task, fd, above, what);
  },
};
