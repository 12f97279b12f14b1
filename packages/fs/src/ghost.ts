/**
 * Deleted files ("ghost files", as CRIU calls them): a regular file
 * unlinked while a task still has it open (Python's tempfile.TemporaryFile,
 * O_TMPFILE, a log rotated away) or mapped shared (an unlinked POSIX
 * semaphore or shm_open object, Python multiprocessing's heap). Its name is
 * gone, so its contents are saved: a `ghost` object in the objhash, keyed
 * by device and inode, written once by whoever meets it first (an fd here,
 * a mapping in the memory phase); every open file and mapping of it names
 * it by objref.
 *
 * Restart creates a file at the same path (so /proc shows the same
 * "PATH (deleted)"; another name in that directory, or in /dev/shm, when
 * the path is taken or its directory is gone), unlinks it at once, fills it,
 * and keeps an fd on it until the restart ends: tasks get the file through
 * that fd (pidfd_getfd). An open file is then reopened through
 * /proc/self/fd with its own flags and offset (its own open file
 * description, as it had); a mapping maps it.
 *
 * A memfd ("/memfd:NAME (deleted)") is the same kind of object, created
 * with memfd_create under its name instead of at a path, and sealed again
 * (F_ADD_SEALS) once filled. The open file memfd_create made is not a
 * reopen: see {@link takeMemfd} for which fd gets it.
 */
import {
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  ftruncateSync,
  openSync,
  unlinkSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import {
  addSeals,
  type CheckpointCtx,
  CkptError,
  closeInTask,
  copyFdFromCkpt,
  dataChunks,
  type FileHandler,
  getSeals,
  memfdCreate,
  type ObjectOps,
  openInTask,
  type RecordValue,
  type RestartCtx,
  type RestartTask,
  readAt,
  writeAt,
} from '@ckpt/core';
import {
  F_SETFL,
  major,
  minor,
  O_ACCMODE,
  O_LARGEFILE,
  O_RDWR,
  reopenFlags,
  SETFL_FLAGS,
} from './flags.js';
import { isMessageQueue } from './path-file.js';
import { FileKind, fileGhostRecord, ghostDataRecord, ghostFileRecord } from './records.js';

/** Name of the object type (the objhash's `type`). */
export const GHOST_OBJECT = 'ghost';
/** How /proc names a memfd: "/memfd:" and its name. */
const MEMFD_PREFIX = '/memfd:';
/** Data chunk per ghost_data record. */
const CHUNK = 4 << 20;
/** Largest amount of data a deleted file may hold to be saved in the image. */
export const GHOST_LIMIT = 256 << 20;
const SEEK_SET = 0;
const O_DIRECTORY = 0o200000;

/** What the checkpoint side knows of a deleted file when it first meets it. */
export interface SavedGhost {
  /** The task it was found in, for messages. */
  pid: number;
  /** A path ckpt opens to read it: /proc/PID/fd/N or /proc/PID/map_files/START-END. */
  source: string;
  /** Its path before it was deleted. */
  path: string;
  /** What holds it, for messages: "fd 3", "the mapping 0x…-0x…". */
  where: string;
  /** It is a task's executable: restored read-only (see ghostFileRecord's readOnly). */
  readOnly?: boolean;
}

/** A deleted file recreated at restart. */
export interface RestoredGhost {
  /** ckpt's fd on it, open until the restart ends. */
  fd: number;
  path: string;
  savedInode: bigint;
  /**
   * A memfd: ckpt's fd on the open file memfd_create made (the same as `fd`
   * unless that one is read-only), until an fd of a task takes it.
   */
  created?: number;
}

/**
 * Reference the deleted file of device `dev` (major, minor) and inode `ino`,
 * saving its contents on first appearance; returns its objref.
 */
export function checkpointGhost(
  ctx: CheckpointCtx,
  dev: { major: number; minor: number },
  ino: number,
  saved: SavedGhost,
): number {
  return ctx.checkpointObj(GHOST_OBJECT, `${dev.major}:${dev.minor}:${ino}`, saved);
}

/**
 * The deleted file `objref` as an fd in `task` (the same open file as
 * ckpt's: read-write, offset shared), for the caller to map or reopen and
 * then close.
 */
export function ghostFdInTask(
  ctx: RestartCtx,
  task: RestartTask,
  objref: number,
  what: string,
): { fd: number; ghost: RestoredGhost } {
  const ghost = ctx.fetchObj<RestoredGhost>(objref, GHOST_OBJECT);
  return { fd: copyFdFromCkpt(task, ghost.fd, what), ghost };
}

function openOrThrow(path: string, what: string, pid: number): number {
  try {
    return openSync(path, 'r');
  } catch (e) {
    throw new CkptError('ESYS', `${what}: cannot open ${path}: ${(e as Error).message}`, {
      pid,
      path,
    });
  }
}

/** Create the file for `path`, unlinked: at `path`, else next to it, else in /dev/shm. */
function createUnlinked(ctx: RestartCtx, path: string, what: string): number {
  const candidates = [
    path,
    `${path}.ckpt-${process.pid}`,
    join('/dev/shm', `ckpt-${process.pid}-${basename(path)}`),
  ];
  for (const at of candidates) {
    let fd: number;
    try {
      fd = openSync(at, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600);
    } catch {
      continue; // taken, or its directory is gone: the next name
    }
    unlinkSync(at);
    if (at !== path)
      ctx.log.warn(`${what}: recreated as ${at} (deleted): ${path} is taken or gone`);
    return fd;
  }
  throw new CkptError(
    'ESYS',
    `${what}: cannot create a file at ${path}, next to it or in /dev/shm`,
    {
      path,
    },
  );
}

/** ObjectOps of deleted files. */
export const ghostObject: ObjectOps<SavedGhost | RestoredGhost> = {
  name: GHOST_OBJECT,
  id: 308,
  checkpoint(ctx, obj) {
    const { pid, source, path, where, readOnly } = obj as SavedGhost;
    const what = `pid ${pid}: saving deleted file ${path} (${where})`;
    const fd = openOrThrow(source, what, pid);
    try {
      const st = fstatSync(fd);
      const size = BigInt(st.size);
      const chunks = dataChunks(fd, size, what, CHUNK);
      const total = chunks.reduce((n, c) => n + BigInt(c.length), 0n);
      if (total > BigInt(GHOST_LIMIT)) {
        throw new CkptError(
          'ENOTSUP',
          `${what}: it holds ${total} bytes of data, more than the ${GHOST_LIMIT} bytes ckpt saves of a deleted file`,
          { pid, path },
        );
      }
      ctx.write(ghostFileRecord, {
        inode: BigInt(st.ino),
        path,
        mode: st.mode & 0o7777,
        size,
        chunks: chunks.length,
        seals: path.startsWith(MEMFD_PREFIX) ? getSeals(fd) : 0,
        readOnly: readOnly === true,
      });
      for (const c of chunks) {
        // Truncated meanwhile: the rest reads as zeros.
        ctx.write(ghostDataRecord, { offset: c.offset, data: readAt(fd, c.offset, c.length) });
      }
    } finally {
      closeSync(fd);
    }
  },
  restore(ctx) {
    const rec = ctx.read(ghostFileRecord);
    const what = `restoring deleted file ${rec.path} (inode ${rec.inode} at checkpoint)`;
    const memfd = rec.path.startsWith(MEMFD_PREFIX);
    const fd = memfd
      ? memfdCreate(rec.path.slice(MEMFD_PREFIX.length))
      : createUnlinked(ctx, rec.path, what);
    try {
      fillGhost(ctx, fd, rec, what, memfd);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    let kept = fd;
    if (rec.readOnly) {
      kept = openSync(`/proc/self/fd/${fd}`, 'r');
      // A memfd's own open file is kept for the fd that had it (takeMemfd).
      if (memfd) ctx.deferqueue.add(fd, closeSync, closeSync);
      else closeSync(fd);
    }
    // Closed when the restart ends, whichever way.
    ctx.deferqueue.add(kept, closeSync, closeSync);
    return {
      fd: kept,
      path: rec.path,
      savedInode: rec.inode,
      ...(memfd ? { created: fd } : {}),
    };
  },
  describe(obj) {
    return 'source' in obj
      ? `deleted file ${obj.path} (${obj.where} of pid ${obj.pid})`
      : `deleted file ${obj.path} (inode ${obj.savedInode} at checkpoint)`;
  },
};

/**
 * An open regular file whose name was deleted: its contents are a ghost
 * object; the open file is reopened from it with its flags and offset.
 */
export const ghostFile: FileHandler = {
  kind: 'ghost',
  id: FileKind.GHOST,
  // An unlinked message queue looks like a deleted regular file.
  match: (f) =>
    f.target.kind === 'path' &&
    f.target.deleted === true &&
    f.stat.type === 'regular' &&
    !isMessageQueue(f),
  checkpoint(ctx, _task, file) {
    const path = file.target.path ?? file.target.text;
    const objref = checkpointGhost(
      ctx,
      { major: major(file.stat.dev), minor: minor(file.stat.dev) },
      file.stat.ino,
      { pid: file.pid, source: `/proc/${file.pid}/fd/${file.fd}`, path, where: `fd ${file.fd}` },
    );
    // O_TMPFILE (which includes O_DIRECTORY) made it; reopened, it is a file.
    const flags = reopenFlags(file.info.flags) & ~O_DIRECTORY;
    ctx.write(fileGhostRecord, { ghost: objref, flags, pos: file.info.pos });
  },
  restore(ctx, task) {
    const rec = ctx.read(fileGhostRecord);
    const what = `pid ${task.savedPid}: reopening a deleted file`;
    const ghost = ctx.fetchObj<RestoredGhost>(rec.ghost, GHOST_OBJECT);
    const fd = takeMemfd(task, ghost, rec.flags, what) ?? reopenGhost(task, ghost, rec.flags, what);
    if (rec.pos !== 0n) {
      task.sys.check(
        'lseek',
        [fd, rec.pos, SEEK_SET],
        `restoring offset ${rec.pos} of deleted file ${ghost.path}`,
      );
    }
    return fd;
  },
};

/** A new open file description of `ghost` in `task` with `flags`, as the task had. */
function reopenGhost(task: RestartTask, ghost: RestoredGhost, flags: number, what: string): number {
  const copy = copyFdFromCkpt(task, ghost.fd, what);
  try {
    return openInTask(task, `/proc/self/fd/${copy}`, flags);
  } finally {
    closeInTask(task, copy);
  }
}

/**
 * The open file memfd_create made, for the first read-write fd of a memfd
 * (flags set as saved; the caller moves the offset), or undefined.
 *
 * That open file does not count as a writer of the memfd (the kernel makes
 * it without an open), while a read-write reopen through /proc does: one
 * fails with ETXTBSY once the memfd is a task's executable (PR_SET_MM_MAP,
 * exec), and keeps a later exec of it from running. A program that exec'd
 * its memfd and kept it open (runc, which re-execs itself so) held that very
 * file: a second writable one would have failed the exec. A memfd nobody
 * executes behaves the same either way.
 */
function takeMemfd(
  task: RestartTask,
  ghost: RestoredGhost,
  flags: number,
  what: string,
): number | undefined {
  const extra = flags & ~(O_ACCMODE | O_LARGEFILE | SETFL_FLAGS);
  if (ghost.created === undefined || (flags & O_ACCMODE) !== O_RDWR || extra !== 0) {
    return undefined;
  }
  const fd = copyFdFromCkpt(task, ghost.created, what);
  ghost.created = undefined;
  // memfd_create's file has none of them set.
  if ((flags & SETFL_FLAGS) !== 0) {
    task.sys.check('fcntl', [fd, F_SETFL, flags & SETFL_FLAGS], `${what}: setting its flags`);
  }
  return fd;
}

/** Write the saved data of ghost `rec` into `fd`, size it, and seal a memfd. */
function fillGhost(
  ctx: RestartCtx,
  fd: number,
  rec: RecordValue<typeof ghostFileRecord>,
  what: string,
  memfd: boolean,
): void {
  fchmodSync(fd, rec.mode);
  for (let i = 0; i < rec.chunks; i++) {
    const chunk = ctx.read(ghostDataRecord);
    if (chunk.offset + BigInt(chunk.data.length) > rec.size) {
      throw new CkptError('EBADREC', `${what}: data past its size ${rec.size}`, {
        recordType: ghostDataRecord.type,
      });
    }
    writeAt(fd, chunk.data, chunk.offset);
  }
  ftruncateSync(fd, Number(rec.size));
  // Sealed last: a seal may forbid the writes that filled it.
  if (memfd) addSeals(fd, rec.seals);
  else if (rec.seals !== 0) {
    throw new CkptError('EBADREC', `${what}: seals on a file that is not a memfd`, {
      recordType: ghostFileRecord.type,
    });
  }
}
