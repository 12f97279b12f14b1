/**
 * Files that restart reopens by path: regular files, directories and the
 * simple character devices. Both directions of the file_name record live
 * here; the handlers in regular.ts and devices.ts only choose the path and
 * type.
 */
import { type Stats, statfsSync, statSync } from 'node:fs';
import {
  type CheckpointCtx,
  CkptError,
  type FileInfo,
  isCkptError,
  openInTask,
  type RestartCtx,
  type RestartTask,
} from '@ckpt/core';
import { major, minor, reopenFlags } from './flags.js';
import { fileNameRecord, PATH_TYPE_NAMES, PathType } from './records.js';

const SEEK_SET = 0;

type PathTypeId = (typeof PathType)[keyof typeof PathType];

/** statfs f_type of a POSIX message queue (mqueue filesystem). */
const MQUEUE_MAGIC = 0x19800202;

/** True when `file` is a POSIX message queue (mq_open: the mqueue filesystem). */
function isMessageQueue(file: FileInfo): boolean {
  try {
    return statfsSync(`/proc/${file.pid}/fd/${file.fd}`).type === MQUEUE_MAGIC;
  } catch {
    return false; // gone meanwhile: whatever comes next says so
  }
}

/** Refuse a POSIX message queue (open or unlinked), naming pid, fd and queue. */
export function refuseMessageQueue(file: FileInfo, path: string): void {
  if (!isMessageQueue(file)) return;
  throw new CkptError(
    'ENOTSUP',
    `pid ${file.pid} fd ${file.fd} is a POSIX message queue (${path}); ckpt cannot checkpoint message queues yet`,
    { pid: file.pid, fd: file.fd, path },
  );
}

/** Write the file_name record of `file`, to be reopened at `path`. */
export function savePathFile(
  ctx: CheckpointCtx,
  file: FileInfo,
  path: string,
  type: PathTypeId,
): void {
  // Its path leads nowhere once the queue is open: mq_open's fds live on the
  // kernel's internal mqueue mount.
  refuseMessageQueue(file, path);
  ctx.write(fileNameRecord, {
    path,
    type,
    flags: reopenFlags(file.info.flags),
    pos: file.info.pos,
    rdevMajor: type === PathType.CHR ? major(file.stat.rdev) : 0,
    rdevMinor: type === PathType.CHR ? minor(file.stat.rdev) : 0,
  });
}

type FileName = ReturnType<typeof fileNameRecord.decode>;

function typeOf(s: Stats): number | undefined {
  if (s.isFile()) return PathType.REGULAR;
  if (s.isDirectory()) return PathType.DIRECTORY;
  if (s.isCharacterDevice()) return PathType.CHR;
  return undefined;
}

/**
 * Refuse to reopen a path that is no longer what was saved: opening a FIFO
 * or a device in its place could block the task or talk to hardware. The
 * path is looked up through /proc/PID/root, i.e. as the task sees it.
 */
function checkStillSame(task: RestartTask, rec: FileName): void {
  const what = PATH_TYPE_NAMES[rec.type] ?? `type ${rec.type}`;
  let s: Stats;
  // Outside the try: asking for the pid completes a background round trip,
  // whose own error must not pass for this file's.
  const pid = task.pid;
  try {
    s = statSync(`/proc/${pid}/root${rec.path}`);
  } catch (e) {
    throw new CkptError(
      'ENOENT',
      `pid ${task.savedPid}: cannot reopen ${rec.path} (${what}): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}; restore the file or restart elsewhere`,
      { pid: task.savedPid, path: rec.path },
    );
  }
  const now = typeOf(s);
  const sameDevice =
    rec.type !== PathType.CHR ||
    (major(s.rdev) === rec.rdevMajor && minor(s.rdev) === rec.rdevMinor);
  if (now !== rec.type || !sameDevice) {
    const was = rec.type === PathType.CHR ? `${what} ${rec.rdevMajor}:${rec.rdevMinor}` : what;
    const is =
      now === PathType.CHR
        ? `chr ${major(s.rdev)}:${minor(s.rdev)}`
        : now
          ? PATH_TYPE_NAMES[now]
          : 'another kind of file';
    throw new CkptError(
      'EINVAL',
      `pid ${task.savedPid}: ${rec.path} was a ${was} at checkpoint and is now a ${is}`,
      {
        pid: task.savedPid,
        path: rec.path,
      },
    );
  }
}

/**
 * Read a file_name record and reopen the file inside `task` with its saved
 * flags; with `seek`, move to the saved position. Returns the new fd.
 */
export function reopenPathFile(ctx: RestartCtx, task: RestartTask, seek: boolean): number {
  const rec = ctx.read(fileNameRecord);
  checkStillSame(task, rec);
  let fd: number;
  try {
    fd = openInTask(task, rec.path, rec.flags);
  } catch (e) {
    if (isCkptError(e)) e.context.pid = task.savedPid;
    throw e;
  }
  if (seek && rec.pos !== 0n) {
    task.sys.check('lseek', [fd, rec.pos, SEEK_SET], `restoring offset ${rec.pos} of ${rec.path}`);
  }
  return fd;
}
