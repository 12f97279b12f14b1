/**
 * Pipes inside the tree (the seed's "support for open pipes"). A pipe is
 * identified by its inode; the first of its ends met saves the pipe once,
 * as a `pipe` object: capacity (F_GETPIPE_SZ), how many open file
 * descriptions of each end the tree holds, and the buffered data, read
 * with tee(2) from a copy of a read end in ckpt, so the data stays in the
 * pipe of a process left running.
 *
 * A pipe is restored inside the tree when some task of the tree holds its
 * read end; a pipe only written by the tree leads outside (external).
 *
 * Restart: the first task that references the pipe creates it (injected
 * pipe2), sets its capacity and refills it (ckpt writes the data into a
 * copy of the write end). Both ends stay open in that task, above its fd
 * table, until every open file description of that end in the tree has
 * been restored from it (F_DUPFD in that task, pidfd_getfd in others);
 * the last one closes it, so a reader sees EOF once the restored writers
 * are gone.
 *
 * A FIFO (named pipe) that the tree reads is the same object, found by its
 * inode with a stat of the tree's file fds, plus its path. Restart opens
 * the path O_RDWR in the first task that references it (a reader and a
 * writer, so opening either end does not block), sets the size and
 * refills it through that fd, and opens each end by path in its task with
 * its flags; the O_RDWR fd is closed once every end is open again. A FIFO
 * only written by the tree leads outside, like such a pipe.
 */
import { closeSync, readSync, statSync, writeSync } from 'node:fs';
import {
  type CheckpointCtx,
  CkptError,
  closeInTask,
  F_GETPIPE_SZ,
  F_SETPIPE_SZ,
  type FileHandler,
  type FileInfo,
  fcntl,
  grabFd,
  type ObjectOps,
  openInTask,
  pipe2,
  type RecordValue,
  type RestartCtx,
  type RestartTask,
  readFdinfo,
  sameFile,
  tee,
  withFdCopy,
} from '@ckpt/core';
import { copyFromHolder, moveAboveTable, restoringTask } from './file-object.js';
import { F_DUPFD_CLOEXEC, O_ACCMODE, O_CLOEXEC, O_NONBLOCK } from './flags.js';
import { FileKind, filePipeRecord, pipeBufRecord } from './records.js';
import { treeFds } from './tree-fds.js';

const F_SETFL = 4;
const O_DIRECT = 0o40000;
const O_WRONLY = 1;
const O_RDWR = 2;

interface PipeFd {
  pid: number;
  fd: number;
}

/** Every fd of the tree on a pipe, by inode and end. */
interface PipeEnds {
  /** Fds that read it (a FIFO's O_RDWR ones too). */
  reads: PipeFd[];
  writes: PipeFd[];
}

function addEnd(map: Map<number, PipeEnds>, inode: number, end: PipeFd): void {
  const ends = map.get(inode) ?? { reads: [], writes: [] };
  map.set(inode, ends);
  const read = (readFdinfo(end.pid, end.fd).flags & O_ACCMODE) !== O_WRONLY;
  (read ? ends.reads : ends.writes).push(end);
}

const scans = new WeakMap<CheckpointCtx, Map<number, PipeEnds>>();

/** The pipe fds of every task of the tree, by inode and end, found once per checkpoint. */
function treePipes(ctx: CheckpointCtx): Map<number, PipeEnds> {
  let map = scans.get(ctx);
  if (map) return map;
  map = new Map();
  for (const { pid, fd, target } of treeFds(ctx)) {
    if (target.kind === 'pipe' && target.inode !== undefined)
      addEnd(map, target.inode, { pid, fd });
  }
  scans.set(ctx, map);
  return map;
}

const fifoScans = new WeakMap<CheckpointCtx, Map<number, PipeEnds>>();

/**
 * The FIFO fds of every task of the tree, by inode, found when the files
 * phase first meets a FIFO (a stat per file fd of the tree).
 */
function treeFifos(ctx: CheckpointCtx): Map<number, PipeEnds> {
  let map = fifoScans.get(ctx);
  if (map) return map;
  map = new Map();
  for (const { pid, fd, target } of treeFds(ctx)) {
    if (target.kind !== 'path' || target.deleted) continue;
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    if (st.isFIFO()) addEnd(map, st.ino, { pid, fd });
  }
  fifoScans.set(ctx, map);
  return map;
}

/** The tree's ends of the pipe or FIFO of `file`, and its inode; undefined for other files. */
function endsOf(ctx: CheckpointCtx, file: FileInfo): { inode: number; ends: PipeEnds } | undefined {
  const { target, stat } = file;
  if (target.kind === 'pipe' && target.inode !== undefined) {
    const ends = treePipes(ctx).get(target.inode);
    return ends && { inode: target.inode, ends };
  }
  if (stat.type !== 'fifo' || target.kind !== 'path' || target.deleted) return undefined;
  const ends = treeFifos(ctx).get(stat.ino);
  return ends && { inode: stat.ino, ends };
}

/**
 * True when `file` is an end of a pipe, or of a FIFO reopened by its
 * path, that some task of the tree reads.
 */
export function isTreePipe(ctx: CheckpointCtx, file: FileInfo): boolean {
  return (endsOf(ctx, file)?.ends.reads.length ?? 0) > 0;
}

/** How many distinct open file descriptions `fds` are (kcmp). */
function descriptions(fds: readonly PipeFd[]): number {
  const firsts: PipeFd[] = [];
  for (const f of fds) {
    if (!firsts.some((g) => sameFile(g.pid, g.fd, f.pid, f.fd))) firsts.push(f);
  }
  return firsts.length;
}

/** The data buffered in the pipe of `reader` (a read end), left in place. */
function peekPipe(reader: PipeFd, size: number): Buffer {
  const r = grabFd(reader.pid, reader.fd);
  let tr = -1;
  let tw = -1;
  try {
    [tr, tw] = pipe2(O_CLOEXEC | O_NONBLOCK);
    // The copy must hold every buffer of the source in one tee: tee
    // always starts at the head of the source.
    if (fcntl(tw, F_GETPIPE_SZ) < size) fcntl(tw, F_SETPIPE_SZ, size);
    const n = tee(r, tw, size);
    const data = Buffer.alloc(n);
    let got = 0;
    while (got < n) got += readSync(tr, data, got, n - got, null);
    return data;
  } finally {
    for (const fd of [r, tr, tw]) if (fd >= 0) closeSync(fd);
  }
}

/** What the pipe handler hands to checkpointObj: the pipe's inode, and a FIFO's path. */
interface SavedPipe {
  ctx: CheckpointCtx;
  inode: number;
  ends: PipeEnds;
  pid: number;
  fd: number;
  path: string;
}

/**
 * A restored pipe: its ends, kept in `holder` until every description of
 * them is restored. A FIFO's holder keeps one O_RDWR fd (`fds.read`) that
 * lets the ends be opened by path without blocking.
 */
export interface RestoredPipe {
  holder: RestartTask;
  inode: bigint;
  fds: { read?: number; write?: number };
  left: { read: number; write: number };
  /** A FIFO's path; empty for a pipe. */
  path: string;
}

/** ObjectOps of pipes (linux-cr kept pipes by inode: CKPT_OBJ_INODE, hence id 1). */
export const pipeObject: ObjectOps<SavedPipe | RestoredPipe> = {
  name: 'pipe',
  id: 1,
  checkpoint(ctx, obj) {
    const { inode, ends, pid, fd, path } = obj as SavedPipe;
    const reader = ends.reads[0]!;
    const size = withFdCopy(reader.pid, reader.fd, (probe) => fcntl(probe, F_GETPIPE_SZ));
    let data: Buffer;
    try {
      data = peekPipe(reader, size);
    } catch (e) {
      throw new CkptError(
        'ESYS',
        `pid ${pid} fd ${fd}: reading the data of pipe:[${inode}]: ${(e as Error).message}`,
        { pid, fd },
      );
    }
    ctx.write(pipeBufRecord, {
      inode: BigInt(inode),
      size,
      readers: descriptions(ends.reads),
      writers: descriptions(ends.writes),
      data,
      path,
    });
  },
  restore(ctx) {
    const rec = ctx.read(pipeBufRecord);
    if (rec.path !== '') return restoreFifo(ctx, rec);
    const { task, above } = restoringTask(ctx, `pipe:[${rec.inode}]`);
    const what = `creating pipe:[${rec.inode}]`;
    const addr = task.sys.scratch(8);
    task.sys.check('pipe2', [addr, O_CLOEXEC], what);
    const pair = task.mem.read(addr, 8);
    // Keep both ends above the fd table: placing its fds must not close them.
    const ends = [pair.readInt32LE(0), pair.readInt32LE(4)].map((fd) =>
      moveAboveTable(task, fd, above, what),
    );
    const [read, write] = ends as [number, number];
    task.sys.check('fcntl', [write, F_SETPIPE_SZ, rec.size], `${what}: setting its size`);
    refill(task, write, rec.data);
    const pipe: RestoredPipe = {
      holder: task,
      inode: rec.inode,
      fds: { read, write },
      left: { read: rec.readers, write: rec.writers },
      path: '',
    };
    if (rec.writers === 0) release(pipe, 'write');
    return pipe;
  },
  describe(p) {
    return `pipe:[${p.inode}]`;
  },
};

/** Write `data` into the pipe through fd `fd` of `task` (a copy of it in ckpt). */
function refill(task: RestartTask, fd: number, data: Buffer): void {
  if (data.length === 0) return;
  withFdCopy(task.pid, fd, (w) => {
    let put = 0;
    while (put < data.length) put += writeSync(w, data, put);
  });
}

/**
 * A FIFO: its path opened O_RDWR in the task being restored (a reader and
 * a writer at once, so opening either end by path does not block), kept
 * above its fd table until every end is reopened; its size and data set
 * through that fd.
 */
function restoreFifo(ctx: RestartCtx, rec: RecordValue<typeof pipeBufRecord>): RestoredPipe {
  const { task, above } = restoringTask(ctx, `FIFO ${rec.path}`);
  const what = `reopening FIFO ${rec.path}`;
  const rw = moveAboveTable(task, openInTask(task, rec.path, O_RDWR | O_CLOEXEC), above, what);
  task.sys.check('fcntl', [rw, F_SETPIPE_SZ, rec.size], `${what}: setting its size`);
  refill(task, rw, rec.data);
  return {
    holder: task,
    inode: rec.inode,
    fds: { read: rw },
    left: { read: rec.readers, write: rec.writers },
    path: rec.path,
  };
}

/** Close the holder's copy of an end once nothing else needs it. */
function release(pipe: RestoredPipe, end: 'read' | 'write'): void {
  const fd = pipe.fds[end];
  if (fd === undefined) return;
  delete pipe.fds[end];
  closeInTask(pipe.holder, fd);
}

/** Pipe ends of pipes that the tree reads (chosen by the files phase, never by match). */
export const pipeFile: FileHandler = {
  kind: 'pipe',
  id: FileKind.PIPE,
  match: () => false,
  checkpoint(ctx, _task, file) {
    const { inode, ends } = endsOf(ctx, file)!;
    const fifo = file.target.kind === 'path';
    const pipe = ctx.checkpointObj('pipe', `${fifo ? 'fifo' : 'pipe'}:${inode}`, {
      ctx,
      inode,
      ends,
      pid: file.pid,
      fd: file.fd,
      path: fifo ? file.target.path! : '',
    } satisfies SavedPipe);
    ctx.write(filePipeRecord, {
      pipe,
      read: (file.info.flags & O_ACCMODE) !== O_WRONLY,
      flags: file.info.flags & ~O_CLOEXEC,
    });
  },
  restore(ctx, task) {
    const rec = ctx.read(filePipeRecord);
    const pipe = ctx.fetchObj<RestoredPipe>(rec.pipe, 'pipe');
    const end = rec.read ? 'read' : 'write';
    if (pipe.path !== '') return reopenFifoEnd(task, pipe, end, rec.flags);
    const src = pipe.fds[end];
    if (src === undefined) {
      throw new CkptError(
        'EBADREC',
        `pipe:[${pipe.inode}] has more open ${end} ends in the image than its pipe_buf record counts`,
        { pid: task.savedPid, recordType: filePipeRecord.type },
      );
    }
    const what = `restoring the ${end} end of pipe:[${pipe.inode}]`;
    const fd =
      pipe.holder === task
        ? Number(task.sys.check('fcntl', [src, F_DUPFD_CLOEXEC, 0], what))
        : copyFromHolder(task, { fd: src, holder: pipe.holder, holderFd: src }, src);
    task.sys.check('fcntl', [fd, F_SETFL, rec.flags & (O_NONBLOCK | O_DIRECT)], what);
    pipe.left[end]--;
    if (pipe.left[end] <= 0) release(pipe, end);
    return fd;
  },
};

/**
 * An end of a FIFO: its path opened in `task` with the saved access mode
 * (the holder's O_RDWR fd keeps the open from blocking), then its flags;
 * the holder's fd is closed once every end is reopened.
 */
function reopenFifoEnd(
  task: RestartTask,
  pipe: RestoredPipe,
  end: 'read' | 'write',
  flags: number,
): number {
  const what = `reopening the ${end} end of FIFO ${pipe.path}`;
  const fd = openInTask(task, pipe.path, (flags & O_ACCMODE) | O_NONBLOCK | O_CLOEXEC);
  task.sys.check('fcntl', [fd, F_SETFL, flags & (O_NONBLOCK | O_DIRECT)], what);
  pipe.left[end]--;
  if (pipe.left.read <= 0 && pipe.left.write <= 0) release(pipe, 'read');
  return fd;
}
