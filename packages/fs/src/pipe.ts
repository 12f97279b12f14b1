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
 */
import { closeSync, readSync, writeSync } from 'node:fs';
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
  pipe2,
  type RestartTask,
  readFdinfo,
  sameFile,
  tee,
} from '@ckpt/core';
import { copyFromHolder, moveAboveTable, restoringTask } from './file-object.js';
import { F_DUPFD_CLOEXEC, O_ACCMODE, O_CLOEXEC, O_NONBLOCK, O_RDONLY } from './flags.js';
import { FileKind, filePipeRecord, pipeBufRecord } from './records.js';
import { treeFds } from './tree-fds.js';

const F_SETFL = 4;
const O_DIRECT = 0o40000;

interface PipeFd {
  pid: number;
  fd: number;
}

/** Every fd of the tree on a pipe, by inode and end. */
interface PipeEnds {
  reads: PipeFd[];
  writes: PipeFd[];
}

const scans = new WeakMap<CheckpointCtx, Map<number, PipeEnds>>();

/** The pipe fds of every task of the tree, by inode and end, found once per checkpoint. */
function treePipes(ctx: CheckpointCtx): Map<number, PipeEnds> {
  let map = scans.get(ctx);
  if (map) return map;
  map = new Map();
  for (const { pid, fd, target } of treeFds(ctx)) {
    if (target.kind !== 'pipe' || target.inode === undefined) continue;
    const ends = map.get(target.inode) ?? { reads: [], writes: [] };
    map.set(target.inode, ends);
    const read = (readFdinfo(pid, fd).flags & O_ACCMODE) === O_RDONLY;
    (read ? ends.reads : ends.writes).push({ pid, fd });
  }
  scans.set(ctx, map);
  return map;
}

/** True when `file` is a pipe end whose pipe some task of the tree reads. */
export function isTreePipe(ctx: CheckpointCtx, file: FileInfo): boolean {
  const { target } = file;
  if (target.kind !== 'pipe' || target.inode === undefined) return false;
  return (treePipes(ctx).get(target.inode)?.reads.length ?? 0) > 0;
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

/** What the pipe handler hands to checkpointObj: the pipe's inode. */
interface SavedPipe {
  ctx: CheckpointCtx;
  inode: number;
  pid: number;
  fd: number;
}

/** A restored pipe: its ends, kept in `holder` until every description of them is restored. */
export interface RestoredPipe {
  holder: RestartTask;
  inode: bigint;
  fds: { read?: number; write?: number };
  left: { read: number; write: number };
}

/** ObjectOps of pipes (linux-cr kept pipes by inode: CKPT_OBJ_INODE, hence id 1). */
export const pipeObject: ObjectOps<SavedPipe | RestoredPipe> = {
  name: 'pipe',
  id: 1,
  checkpoint(ctx, obj) {
    const { inode, pid, fd } = obj as SavedPipe;
    const ends = treePipes(ctx).get(inode)!;
    const reader = ends.reads[0]!;
    const probe = grabFd(reader.pid, reader.fd);
    let size: number;
    try {
      size = fcntl(probe, F_GETPIPE_SZ);
    } finally {
      closeSync(probe);
    }
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
    });
  },
  restore(ctx) {
    const rec = ctx.read(pipeBufRecord);
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
    if (rec.data.length > 0) {
      const w = grabFd(task.pid, write);
      try {
        let put = 0;
        while (put < rec.data.length) put += writeSync(w, rec.data, put);
      } finally {
        closeSync(w);
      }
    }
    const pipe: RestoredPipe = {
      holder: task,
      inode: rec.inode,
      fds: { read, write },
      left: { read: rec.readers, write: rec.writers },
    };
    if (rec.writers === 0) release(pipe, 'write');
    return pipe;
  },
  describe(p) {
    return `pipe:[${p.inode}]`;
  },
};

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
    const inode = file.target.inode!;
    const pipe = ctx.checkpointObj('pipe', `pipe:${inode}`, {
      ctx,
      inode,
      pid: file.pid,
      fd: file.fd,
    } satisfies SavedPipe);
    ctx.write(filePipeRecord, {
      pipe,
      read: (file.info.flags & O_ACCMODE) === O_RDONLY,
      flags: file.info.flags & ~O_CLOEXEC,
    });
  },
  restore(ctx, task) {
    const rec = ctx.read(filePipeRecord);
    const pipe = ctx.fetchObj<RestoredPipe>(rec.pipe, 'pipe');
    const end = rec.read ? 'read' : 'write';
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
