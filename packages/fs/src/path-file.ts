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
  isMessageQueueFd,
  openInTask,
  type RestartCtx,
  type RestartTask,
} from '@ckpt/core';
import { major, minor, reopenFlags } from './flags.js';
import { fileNameRecord, PATH_TYPE_NAMES, PathType } from './records.js';

const SEEK_SET = 0;

type PathTypeId = (typeof PathType)[keyof typeof PathType];

/**
 * True when `file` is a POSIX message queue (mq_open: the mqueue
 * filesystem). Those are @ckpt/ipc's; the path handlers leave them alone.
 */
export function isMessageQueue(file: FileInfo): boolean {
  // The mqueue filesystem has an anonymous device (major 0): files on a
  // disk need no statfs (the path handlers ask about every file).
  return (
    file.target.kind === 'path' && major(file.stat.dev) === 0 && isMessageQueueFd(file.pid, file.fd)
  );
}

/** The error for a POSIX message queue no loaded plugin handles, naming pid, fd and queue. */
export function messageQueueUnsupported(file: FileInfo): CkptError {
  const path = file.target.path ?? file.target.text;
  return new CkptError(
    'ENOTSUP',
    `pid ${file.pid} fd ${file.fd} is a POSIX message queue (${path}); no loaded plugin saves message queues (@ckpt/ipc does)`,
    { pid: file.pid, fd: file.fd, path },
  );
}

const PROC_SUPER_MAGIC = 0x9fa0;
const SYSFS_MAGIC = 0x62656572;

/**
 * Whether `path` still leads to the inode `dev`/`ino` (an open file's, a
 * working directory's), looked up as ckpt sees it (/proc shows paths from
 * ckpt's root) or from the task's root (a container's own mounts). It does
 * not when a mount now covers a directory above it: reopened by path, the
 * task would get another file.
 */
export function pathReaches(pid: number, path: string, dev: number, ino: number): boolean {
  for (const p of [path, `/proc/${pid}/root${path}`]) {
    try {
      const s = statSync(p);
      if (s.dev === dev && s.ino === ino) return true;
    } catch {
      // not there from this side
    }
  }
  return false;
}

/**
 * Refuse a file its path no longer reaches (see {@link pathReaches}).
 * /proc and /sys files are exempt: their inodes are made afresh at each
 * lookup, and reopening by path is what they are for.
 */
function refuseUnreachable(file: FileInfo, path: string): void {
  if (pathReaches(file.pid, path, file.stat.dev, file.stat.ino)) return;
  let fsType = 0;
  try {
    fsType = statfsSync(`/proc/${file.pid}/fd/${file.fd}`).type;
  } catch {
    return; // gone meanwhile: whatever comes next says so
  }
  if (fsType === PROC_SUPER_MAGIC || fsType === SYSFS_MAGIC) return;
  throw new CkptError(
    'ENOTSUP',
    `pid ${file.pid} fd ${file.fd}: ${path} now leads to another file (a mount covers it, or it was replaced); reopened by path, the task would get that file, so it cannot be restored`,
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
  refuseUnreachable(file, path);
  ctx.write(fileNameRecord, {
    path,
    type,
    flags: reopenFlags(file.info.flags),
    pos: file.info.pos,
    rdevMajor: type === PathType.CHR ? major(file.stat.rdev) : 0,
    rdevMinor: type === PathType.CHR ? minor(file.stat.rdev) : 0,
    dev: BigInt(file.stat.dev),
    ino: BigInt(file.stat.ino),
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
function checkStillSame(ctx: RestartCtx, task: RestartTask, rec: FileName): void {
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
  // Replaced since (mv and a new file, an editor's save): the task reads
  // on in another file. Only on the same boot do the numbers still tell,
  // and not on a filesystem restart made again (a container's tmpfs).
  if (
    ctx.sameBoot &&
    !ctx.onRecreatedMount(rec.path) &&
    rec.type === PathType.REGULAR &&
    (BigInt(s.dev) !== rec.dev || BigInt(s.ino) !== rec.ino)
  ) {
    ctx.log.warn(
      `pid ${task.savedPid}: ${rec.path} is not the file it had open at checkpoint (replaced since: inode ${rec.ino}, now ${s.ino}); it reopens the file there now, at offset ${rec.pos}`,
    );
  }
}

/**
 * Under --no-pids, a file under /proc/PID of the task itself (a program
 * that keeps /proc/self/status open) moves to its new pid; one under
 * another pid of the tree cannot follow (its new pid is not known here)
 * and is refused rather than reopened on whatever now has the old pid.
 */
function renumberProcPath(task: RestartTask, rec: FileName): FileName {
  if (task.pid === task.savedPid) return rec;
  const m = /^\/proc\/(\d+)(\/.*)?$/.exec(rec.path);
  if (!m) return rec;
  if (Number(m[1]) === task.savedPid) return { ...rec, path: `/proc/${task.pid}${m[2] ?? ''}` };
  throw new CkptError(
    'ENOTSUP',
    `pid ${task.savedPid}: ${rec.path} names pid ${m[1]}, which --no-pids renumbers; restart without --no-pids`,
    { pid: task.savedPid, path: rec.path },
  );
}

/**
 * Read a file_name record and reopen the file inside `task` with its saved
 * flags; with `seek`, move to the saved position. Returns the new fd.
 */
export function reopenPathFile(ctx: RestartCtx, task: RestartTask, seek: boolean): number {
  const rec = renumberProcPath(task, ctx.read(fileNameRecord));
  checkStillSame(ctx, task, rec);
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
