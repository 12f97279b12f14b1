/**
 * inotify instances (`tail -f` follows its file with one): every watch with
 * its mask and its watch descriptor, found by path again at restart.
 *
 * fdinfo shows each watch's descriptor, mask and the watched file's handle;
 * the checkpoint opens the file by handle to learn its path (a watched file
 * deleted since is refused). Restart adds the watches in descriptor order
 * and gets the same descriptors back: the kernel hands them out cyclically,
 * one past the last, so a gap is skipped by adding and removing a watch.
 * Events queued but not read yet are lost (reading them would take them
 * from a task that is left running); the checkpoint warns when there are.
 */
import {
  type CheckpointCtx,
  CkptError,
  cString,
  type FileHandler,
  type FileInfo,
  isSyscallError,
  pathOfHandle,
  type RestartTask,
  stage,
  unreadBytes,
} from '@ckpt/core';
import { moveAboveTable, restoringTask } from './file-object.js';
import { reopenFlags } from './flags.js';
import { FileKind, fileInotifyRecord } from './records.js';

const O_NONBLOCK = 0o4000;
const F_SETFL = 4;
/** How many descriptors restart may skip to give a watch its own. */
const MAX_SKIP = 1 << 16;

/** `inotify wd:W ino:I sdev:D mask:M ignored_mask:G fhandle-bytes:B fhandle-type:T f_handle:H`. */
const WATCH =
  /^inotify wd:([0-9a-f]+) ino:[0-9a-f]+ sdev:([0-9a-f]+) mask:([0-9a-f]+) ignored_mask:[0-9a-f]+ fhandle-bytes:([0-9a-f]+) fhandle-type:([0-9a-f]+) f_handle:([0-9a-f]+)/;

function watchesOf(file: FileInfo) {
  return file.info.extra.flatMap((line) => {
    const m = WATCH.exec(line);
    if (!m) return [];
    const [, wd, sdev, mask, bytes, type, handle] = m;
    const dev = Number.parseInt(sdev!, 16);
    const path = pathOfHandle(
      file.pid,
      { major: dev >>> 20, minor: dev & 0xfffff },
      Number.parseInt(type!, 16),
      Buffer.from(handle!, 'hex').subarray(0, Number.parseInt(bytes!, 16)),
    );
    if (path === undefined) {
      throw new CkptError(
        'ENOTSUP',
        `pid ${file.pid} fd ${file.fd}: inotify watch ${Number.parseInt(wd!, 16)} is on a file deleted since; it cannot be restored`,
        { pid: file.pid, fd: file.fd },
      );
    }
    return [{ wd: Number.parseInt(wd!, 16), mask: Number.parseInt(mask!, 16), path }];
  });
}

/** Warn when events wait unread in the instance: restart cannot bring them back. */
function warnUnread(ctx: CheckpointCtx, file: FileInfo): void {
  const n = unreadBytes(file.pid, file.fd) ?? 0;
  if (n > 0) {
    ctx.log.warn(
      `pid ${file.pid} fd ${file.fd}: ${n} bytes of inotify events not read yet are not saved`,
    );
  }
}

/** Read every queued event of inotify `fd` (restored with open flags `flags`) and drop them. */
function drain(task: RestartTask, fd: number, flags: number): void {
  const what = 'dropping the events of skipped inotify watches';
  const buf = task.sys.scratch(4096);
  task.sys.check('fcntl', [fd, F_SETFL, flags | O_NONBLOCK], what);
  while (!isSyscallError(task.sys.call('read', [fd, buf, 4096])));
  task.sys.check('fcntl', [fd, F_SETFL, flags], what);
}

export const inotifyFile: FileHandler = {
  kind: 'inotify',
  id: FileKind.INOTIFY,
  match: (f) => f.target.kind === 'anon_inode' && f.target.anonType === 'inotify',
  checkpoint(ctx, _task, file) {
    const watches = watchesOf(file).sort((a, b) => a.wd - b.wd);
    warnUnread(ctx, file);
    ctx.write(fileInotifyRecord, { flags: reopenFlags(file.info.flags), watches });
  },
  restore(ctx, task) {
    const rec = ctx.read(fileInotifyRecord);
    const { above } = restoringTask(ctx, 'an inotify instance');
    const what = 'creating an inotify instance';
    const created = Number(task.sys.check('inotify_init1', [rec.flags & O_NONBLOCK], what));
    const fd = moveAboveTable(task, created, above, what);
    let next = 1;
    let skipped = false;
    for (const w of rec.watches) {
      const [path] = stage(task, [cString(w.path)]);
      const add = `watching ${w.path} (inotify watch ${w.wd})`;
      if (w.wd < next || w.wd - next > MAX_SKIP) {
        throw new CkptError('EBADREC', `${add}: watch descriptors out of order`, {
          recordType: fileInotifyRecord.type,
        });
      }
      // Descriptors below this one that are free: taken and given back.
      for (; next < w.wd; next++) {
        skipped = true;
        const skip = task.sys.check('inotify_add_watch', [fd, path!, w.mask], add);
        task.sys.check('inotify_rm_watch', [fd, skip], add);
      }
      const wd = Number(task.sys.check('inotify_add_watch', [fd, path!, w.mask], add));
      if (wd !== w.wd) {
        throw new CkptError('ESYS', `${add}: got watch descriptor ${wd}`, {
          pid: task.savedPid,
          path: w.path,
        });
      }
      next = wd + 1;
    }
    // Each watch given back queued an IN_IGNORED event: read them out.
    if (skipped) drain(task, fd, rec.flags);
    return fd;
  },
};
