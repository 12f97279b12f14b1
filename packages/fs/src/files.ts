/**
 * The files phase: the fd table. Checkpoint saves each open file
 * description once, through the objhash (fds that share one, by dup or
 * F_DUPFD, refer to the same object), then one file_desc record per fd.
 * Restart empties the fd table the task inherited from the restore stub,
 * reopens each file once and places it at each of its fds with its
 * close-on-exec flag. The task's file locks follow its table (locks.ts).
 */
import {
  type CheckpointCtx,
  type CheckpointTask,
  CkptError,
  closeInTask,
  DescriptionIndex,
  type FileHandler,
  type FileInfo,
  type RestartCtx,
  type RestartTask,
  readOpenFiles,
  SHAREABLE_WITH_PARENT,
  type SyscallRequest,
  type TaskPhase,
} from '@ckpt/core';
import { externalFile } from './external.js';
import {
  postCopyFromHolder,
  type RestoredFile,
  restoringInto,
  tableComplete,
} from './file-object.js';
import { F_DUPFD_CLOEXEC, F_SETFD, FD_CLOEXEC, O_CLOEXEC } from './flags.js';
import { unsupported } from './handlers.js';
import { locksOf, retakeLocks } from './locks.js';
import { isTreePipe, pipeFile } from './pipe.js';
import { isTreePty, ptyFile, restoreControllingTerminal } from './pty.js';
import { fileDescRecord, fileLocksRecord, fileTableRecord } from './records.js';
import { plannedIn } from './socket-tables.js';
import { connectedUnix, unixPairFile } from './unix-pair.js';

/** The largest fd close_range takes (~0U). */
const MAX_FD = 0xffff_ffff;

interface PlannedFd {
  file: FileInfo;
  handler: FileHandler;
  /** Identity of the open file description: the objhash key. */
  key: string;
}

/**
 * Per checkpoint, the first fd seen of each open file description, by
 * dev:ino: only fds of the same inode can share a description, so kcmp
 * runs against those alone, in kcmp order (a few calls find one among
 * thousands of separate opens of one file).
 */
const seenByInode = new WeakMap<CheckpointCtx, Map<string, DescriptionIndex<FileInfo>>>();

/** The objhash key of `file`'s open file description: "pid:fd" of its first fd seen. */
function descriptionKey(ctx: CheckpointCtx, file: FileInfo): string {
  let byInode = seenByInode.get(ctx);
  if (!byInode) {
    byInode = new Map();
    seenByInode.set(ctx, byInode);
  }
  const inode = `${file.stat.dev}:${file.stat.ino}`;
  let firsts = byInode.get(inode);
  if (!firsts) {
    firsts = new DescriptionIndex();
    byInode.set(inode, firsts);
  }
  const first = firsts.add(file);
  return `${first.pid}:${first.fd}`;
}

/** Find every fd's handler first, so an unsupported file fails before anything is written. */
function plan(ctx: CheckpointCtx, task: CheckpointTask): PlannedFd[] {
  return readOpenFiles(task.pid).map((open) => {
    const file: FileInfo = { ...open, pid: task.pid };
    plannedIn(ctx, file);
    // A pipe read from inside the tree is restored as a pipe; one whose
    // readers are all outside leads outside (the external handler's). A
    // unix socket connected to another in the tree is restored as a pair,
    // a pty slave whose master the tree holds as a pty.
    const unix = connectedUnix(ctx, file);
    if (unix !== undefined && unix !== 'pair') {
      throw new CkptError(
        'ENOTSUP',
        `pid ${file.pid} fd ${file.fd}: ${unix.refuse}; it cannot be restored`,
        { pid: file.pid, fd: file.fd },
      );
    }
    const handler =
      unix === 'pair'
        ? unixPairFile
        : isTreePipe(ctx, file)
          ? pipeFile
          : isTreePty(ctx, file)
            ? ptyFile
            : ctx.registry.fileHandlerFor(file);
    if (!handler) throw unsupported(file);
    // An external fd is reconnected by its own number, so fds sharing its
    // description are saved apart (each finds its counterpart at restart).
    const key =
      handler === externalFile ? `${task.pid}:${file.fd}:external` : descriptionKey(ctx, file);
    return { file, handler, key };
  });
}

/** Where `prepare` keeps a task's plan in `task.data`. */
const PLAN = 'files:plan';

function checkpointFiles(ctx: CheckpointCtx, task: CheckpointTask): void {
  const fds = (task.data.get(PLAN) as PlannedFd[] | undefined) ?? plan(ctx, task);
  ctx.write(fileTableRecord, { fds: fds.map((p) => p.file.fd) });
  for (const { file, handler, key } of fds) {
    const objref = ctx.checkpointObj('file', key, { task, file, handler });
    ctx.write(fileDescRecord, { fd: file.fd, objref, cloexec: file.info.cloexec });
  }
  ctx.write(fileLocksRecord, {
    locks: locksOf(
      ctx,
      fds.map((p) => p.file),
    ),
  });
}

function checkAscending(fds: readonly number[]): void {
  for (let i = 1; i < fds.length; i++) {
    if (fds[i]! <= fds[i - 1]!) {
      throw new CkptError('EBADREC', `the fd table lists fd ${fds[i]} after fd ${fds[i - 1]}`, {
        recordType: fileTableRecord.type,
      });
    }
  }
}

function restoreFiles(ctx: RestartCtx, task: RestartTask): void {
  const { fds } = ctx.read(fileTableRecord);
  checkAscending(fds);
  if (task.sharesWithParent & SHAREABLE_WITH_PARENT.CLONE_FILES) {
    // One fd table with the parent, which restored it: read the records only.
    for (const want of fds) {
      const desc = ctx.read(fileDescRecord);
      if (desc.fd !== want) {
        const where = `file_desc record for fd ${desc.fd} where the fd table lists fd ${want}`;
        throw new CkptError('EBADREC', where, { recordType: fileDescRecord.type });
      }
      ctx.fetchObj<RestoredFile>(desc.objref, 'file');
    }
    // Their locks are the parent's too: one owner, the shared table.
    ctx.read(fileLocksRecord);
    return;
  }
  // Start from an empty table: nothing of the stub's (stdio on /dev/null)
  // survives, and files reopen at the lowest free fds. Every fd but ckpt's
  // pidfd, without looking at the table (posted: the memory phase's round
  // trip may still be running in the task).
  task.sys.post(closeAllBut(task.ckptPidfd));
  const inImage = new Set(fds);
  const above = fds.length === 0 ? 0 : fds[fds.length - 1]! + 1;
  if (inImage.has(task.ckptPidfd)) {
    // The program had an fd where ckpt keeps its pidfd: move ckpt's out of the way.
    const what = `moving ckpt's pidfd above fd ${above - 1}`;
    const moved = Number(task.sys.check('fcntl', [task.ckptPidfd, F_DUPFD_CLOEXEC, above], what));
    closeInTask(task, task.ckptPidfd);
    task.ckptPidfd = moved;
  }
  const temporaries = new Set<number>();
  const fromHolder = new Map<RestoredFile, RestoredFile>();
  let holdsFiles = false;
  restoringInto(ctx, task, above, () => {
    for (const want of fds) {
      const desc = ctx.read(fileDescRecord);
      if (desc.fd !== want) {
        const where = `file_desc record for fd ${desc.fd} where the fd table lists fd ${want}`;
        throw new CkptError('EBADREC', where, { recordType: fileDescRecord.type });
      }
      const shared = ctx.fetchObj<RestoredFile>(desc.objref, 'file');
      if (shared.holder === undefined || shared.holder === task) {
        shared.holder = task;
        holdsFiles = true;
        place(task, shared, desc, inImage, above, temporaries);
        // The first fd placed is where the holder keeps it for good.
        shared.holderFd ??= desc.fd;
        continue;
      }
      // Restored by an earlier task: copy it from there, once per task;
      // later fds on it are duplicates of this one.
      const mine = fromHolder.get(shared);
      if (mine) {
        place(task, mine, desc, inImage, above, temporaries);
        continue;
      }
      postCopyFromHolder(ctx, task, shared, desc.fd, desc.cloexec, above);
      fromHolder.set(shared, { fd: desc.fd });
    }
    // Every fd is in place (the calls placing them are posted, and run first).
    tableComplete(ctx);
    restoreControllingTerminal(ctx, task);
  });
  retakeLocks(task, ctx.read(fileLocksRecord).locks);
  closeAll(
    task,
    [...temporaries].filter((fd) => !inImage.has(fd)),
  );
  // Later tasks may copy fds from this one: they must be in place now.
  // Otherwise the posted calls run with the task's next injected call.
  if (holdsFiles) task.sys.batch([]);
}

/** close_range calls that close every fd but `keep`. */
function closeAllBut(keep: number): SyscallRequest[] {
  const calls: SyscallRequest[] = [{ name: 'close_range', args: [keep + 1, MAX_FD, 0] }];
  if (keep > 0) calls.unshift({ name: 'close_range', args: [0, keep - 1, 0] });
  return calls;
}

/**
 * Close `fds` in the task, ignoring errors (as `closeInTask` does):
 * posted, they run with the task's next injected call.
 */
function closeAll(task: RestartTask, fds: readonly number[]): void {
  task.sys.post(fds.map((fd) => ({ name: 'close' as const, args: [fd] })));
}

/**
 * Put `file` at fd `desc.fd`. Fds are placed in ascending order, so a file
 * opened below its fd sits in a hole of the table; one opened above it
 * (a handler that used several fds) may sit on an fd still to be placed,
 * and moves above the whole table first so that no later dup3 clobbers it.
 */
function place(
  task: RestartTask,
  file: RestoredFile,
  desc: { fd: number; cloexec: boolean },
  inImage: ReadonlySet<number>,
  above: number,
  temporaries: Set<number>,
): void {
  const what = `placing fd ${desc.fd}`;
  if (file.fd === desc.fd) {
    task.sys.postChecked([
      { name: 'fcntl', args: [desc.fd, F_SETFD, desc.cloexec ? FD_CLOEXEC : 0], what },
    ]);
    return;
  }
  if (file.fd > desc.fd && inImage.has(file.fd)) {
    const moved = Number(task.sys.check('fcntl', [file.fd, F_DUPFD_CLOEXEC, above], what));
    closeInTask(task, file.fd);
    file.fd = moved;
  }
  task.sys.postChecked([
    { name: 'dup3', args: [file.fd, desc.fd, desc.cloexec ? O_CLOEXEC : 0], what },
  ]);
  temporaries.add(file.fd);
}

/** The files phase (order 300: after memory, before cwd/root and signals). */
export const filesPhase: TaskPhase = {
  name: 'files',
  order: 300,
  // Planned before anything is saved: a file no handler takes refuses the
  // checkpoint before gigabytes of memory are written for nothing.
  prepare: (ctx, task) => {
    task.data.set(PLAN, plan(ctx, task));
  },
  checkpoint: checkpointFiles,
  restore: restoreFiles,
};
