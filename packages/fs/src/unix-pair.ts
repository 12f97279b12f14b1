/**
 * Connected unix stream sockets whose two ends are both in the tree: a
 * socketpair (Python asyncio's self-pipe, a parent and its child talking)
 * or a connection accepted inside it. Like a pipe (see pipe.ts), it is one
 * `unix-pair` object holding both ends and the bytes waiting in each end's
 * receive queue (peeked from a copy of the fd: nothing is consumed from a
 * tree left running), and each end's peer credentials. Restart makes the
 * pair for the first task that holds an end, so that each end reports the
 * saved credentials (unix-peer-creds.ts), writes each end's bytes into the
 * other end so that they wait where they did, and hands each end to the
 * task that had it.
 *
 * sock_diag (not /proc) tells each socket's peer. A pair with an end
 * outside the tree, a datagram or seqpacket pair with messages queued, and
 * file descriptors in flight (SCM_RIGHTS not received yet, seen while
 * peeking) are refused. A connection accepted from a listening socket
 * comes back as a socketpair: the same bytes and peer, without the
 * listener's name on the accepted end.
 *
 * A stream or seqpacket socket whose other end was closed (the JDK keeps
 * one, dup2()ed over every channel it closes) is a pair with one end
 * missing, inode 0: restart makes the pair, writes the bytes still to be
 * read, and closes the missing end, so reads give them and then the end
 * of file, and writes fail with EPIPE, as before.
 */
import { closeSync, readlinkSync, writeSync } from 'node:fs';
import {
  type CheckpointCtx,
  CkptError,
  closeInTask,
  type FileHandler,
  type FileInfo,
  grabFd,
  listFds,
  type ObjectOps,
  peekUnixQueue,
  type RestartTask,
  readComm,
  scanProcesses,
  socketPeer,
  withFdCopy,
} from '@ckpt/core';
import { copyFromHolder, moveAboveTable, restoringTask } from './file-object.js';
import { F_DUPFD_CLOEXEC, reopenFlags } from './flags.js';
import { FileKind, fileUnixRecord, unixPairRecord } from './records.js';
import { unixDiag } from './sock-diag.js';
import { changedSocketOptions, setSavedOptions } from './socket-options.js';
import { treeFds } from './tree-fds.js';
import { makePairWithCreds, readPeerCred } from './unix-peer-creds.js';

const UNIX_OBJECT = 'unix-pair';
const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_DGRAM = 2;
const TCP_ESTABLISHED = 1;
/** sk_shutdown of a stream socket whose peer was closed: neither reads nor writes. */
const SHUTDOWN_BOTH = 3;
/** The inode of a missing end (its socket was closed). */
const CLOSED_END = 0;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;

/** What the checkpoint hands the object: where each end is (pid, fd), ends ordered by inode. */
interface SavedPair {
  type: number;
  ends: { inode: number; pid: number; fd: number }[];
}

/** A restored pair: both ends, held above its fd table by the task that made it, until handed out. */
interface RestoredPair {
  holder: RestartTask;
  fds: (number | undefined)[];
  inodes: bigint[];
}

/** The first fd of the tree on socket `inode`, if any. */
function findHolder(ctx: CheckpointCtx, inode: number): { pid: number; fd: number } | undefined {
  const t = treeFds(ctx).find((t) => t.target.kind === 'socket' && t.target.inode === inode);
  return t && { pid: t.pid, fd: t.fd };
}

/**
 * "pid N (comm) fd M" of a process outside the tree that holds socket
 * `inode`, if one does (a scan of every process: only for a refusal).
 */
function holderOutside(inode: number): string | undefined {
  const link = `socket:[${inode}]`;
  for (const { pid } of scanProcesses()) {
    if (pid === process.pid) continue;
    try {
      for (const fd of listFds(pid)) {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === link) {
          return `pid ${pid} (${readComm(pid)}) fd ${fd}`;
        }
      }
    } catch {
      // gone, or its fds went away meanwhile
    }
  }
  return undefined;
}

/** Whether the unix socket `file` is connected to a socket with a name (a path or an abstract one). */
function hasNamedPeer(file: FileInfo): boolean {
  // sockaddr_un: family (2 bytes), then the name.
  return withFdCopy(file.pid, file.fd, (fd) => (socketPeer(fd)?.length ?? 0) > 2);
}

/**
 * The bytes waiting in socket `fd` of `pid` (`count` of them), peeked.
 * @throws CkptError ENOTSUP when file descriptors wait with them (SCM_RIGHTS
 *   sent, not received yet): ckpt cannot save those, and the receiver would
 *   get the bytes without them
 */
function peekQueue(pid: number, fd: number, count: number, what: string): Buffer {
  if (count === 0) return Buffer.alloc(0);
  return withFdCopy(pid, fd, (mine) => {
    const buf = Buffer.alloc(count);
    const { bytes, fdsInFlight } = peekUnixQueue(mine, buf);
    if (fdsInFlight > 0) {
      throw new CkptError(
        'ENOTSUP',
        `${what} has ${fdsInFlight} file descriptor${fdsInFlight === 1 ? '' : 's'} in flight (sent with SCM_RIGHTS, not received yet), which ckpt cannot save; checkpoint once the receiver has taken ${fdsInFlight === 1 ? 'it' : 'them'}`,
        { pid, fd },
      );
    }
    if (bytes !== count) {
      throw new CkptError('EUNEXPECTED', `${what}: peeked ${bytes} of its ${count} queued bytes`, {
        pid,
        fd,
      });
    }
    return buf;
  });
}

export const unixPairObject: ObjectOps<SavedPair | RestoredPair> = {
  name: UNIX_OBJECT,
  id: 309,
  checkpoint(ctx, obj) {
    const { type, ends } = obj as SavedPair;
    const d = unixDiag(ctx, ends.find((e) => e.inode !== CLOSED_END)!.pid);
    const queues = ends.map((e) => {
      const q = e.inode === CLOSED_END ? 0 : (d.get(e.inode)?.rqueue ?? 0);
      const what = `pid ${e.pid} fd ${e.fd}: unix socket ${e.inode}`;
      return peekQueue(e.pid, e.fd, q, what);
    });
    ctx.write(unixPairRecord, {
      type,
      inodes: ends.map((e) => BigInt(e.inode)),
      queues,
      peerCreds: ends.map((e) =>
        e.inode === CLOSED_END ? { pid: 0, uid: 0, gid: 0 } : readPeerCred(e.pid, e.fd),
      ),
    });
  },
  restore(ctx) {
    const rec = ctx.read(unixPairRecord);
    const { task, above } = restoringTask(ctx, `unix socket pair ${rec.inodes.join('-')}`);
    const what = `recreating unix socket pair ${rec.inodes.join('-')}`;
    // A missing end's credentials do not matter: the live end's count.
    const live = rec.peerCreds[rec.inodes[0] === BigInt(CLOSED_END) ? 1 : 0]!;
    const creds = rec.inodes.includes(BigInt(CLOSED_END)) ? [live, live] : rec.peerCreds;
    const fds = makePairWithCreds(ctx, task, rec.type, creds, what).map((fd) =>
      moveAboveTable(task, fd, above, what),
    );
    // End i's queued bytes are written by the other end, so they wait at i.
    for (const [i, data] of rec.queues.entries()) {
      if (data.length === 0) continue;
      withFdCopy(task.pid, fds[1 - i]!, (w) => {
        let put = 0;
        while (put < data.length) put += writeSync(w, data, put);
      });
    }
    // A missing end is closed once it has written: its peer sees it closed.
    const ends: (number | undefined)[] = fds.map((fd, i) => {
      if (rec.inodes[i] !== BigInt(CLOSED_END)) return fd;
      closeInTask(task, fd);
      return undefined;
    });
    return { holder: task, fds: ends, inodes: rec.inodes };
  },
  describe(p) {
    const inodes = 'ends' in p ? p.ends.map((e) => BigInt(e.inode)) : p.inodes;
    return inodes[0] === BigInt(CLOSED_END)
      ? `unix socket ${inodes[1]} (its other end closed)`
      : `unix socket pair ${inodes.join('-')}`;
  },
};

/**
 * For a connected unix socket: whether the files phase restores it as a
 * pair (`pair`), or why it cannot be restored; undefined for any other
 * file, and for one whose peer is outside the tree on fds 0-2 (stdio,
 * reconnected like a terminal).
 */
export function connectedUnix(
  ctx: CheckpointCtx,
  file: FileInfo,
): 'pair' | { refuse: string } | undefined {
  if (file.target.kind !== 'socket') return undefined;
  const ino = file.target.inode ?? file.stat.ino;
  const me = unixDiag(ctx, file.pid).get(ino);
  if (!me || me.state !== TCP_ESTABLISHED) return undefined;
  if (me.peer === 0) {
    // A datagram socket a client connected to shows established, but has
    // no peer of its own (rsyslogd's /dev/log): a waiting socket.
    if (me.type === SOCK_DGRAM) return undefined;
    // A closed peer leaves a stream socket shut down both ways; one still
    // waiting to be accepted has no peer yet and is not shut down.
    if (me.shutdown === SHUTDOWN_BOTH) return 'pair';
    if (file.fd <= 2) return undefined;
    return {
      refuse: `unix socket ${ino} is connected, but the listening socket it connected to has not accepted it yet`,
    };
  }
  const inTree = findHolder(ctx, me.peer) !== undefined;
  if (!inTree && file.fd <= 2) return undefined;
  const peer = unixDiag(ctx, file.pid).get(me.peer);
  // A datagram socket connected to a named one, with nothing queued: one
  // outside the tree (syslog(3)'s /dev/log), or a server socket of the tree
  // that is not connected back (smbd to cleanupd's): not a pair, but a
  // socket connected again by name once every task has its sockets.
  if (
    me.type === SOCK_DGRAM &&
    me.rqueue === 0 &&
    (!inTree || peer?.peer !== ino) &&
    hasNamedPeer(file)
  ) {
    return undefined;
  }
  if (!inTree) {
    const holder = holderOutside(me.peer);
    return {
      refuse: `unix socket ${ino} is connected to socket ${me.peer}, which no process of the checkpointed tree holds${holder ? ` (${holder} does)` : ''}`,
    };
  }
  if (me.type !== SOCK_STREAM && (me.rqueue > 0 || (peer?.rqueue ?? 0) > 0)) {
    return {
      refuse: `unix ${me.type === SOCK_DGRAM ? 'datagram' : 'seqpacket'} socket ${ino} has messages queued`,
    };
  }
  return 'pair';
}

/** Connected unix sockets with both ends in the tree (chosen by the files phase, never by match). */
export const unixPairFile: FileHandler = {
  kind: 'unix-pair',
  id: FileKind.UNIX_PAIR,
  match: () => false,
  checkpoint(ctx, _task, file) {
    const ino = file.target.inode ?? file.stat.ino;
    const me = unixDiag(ctx, file.pid).get(ino)!;
    const mine = { inode: ino, pid: file.pid, fd: file.fd };
    const other =
      me.peer === CLOSED_END
        ? { inode: CLOSED_END, pid: 0, fd: -1 }
        : { inode: me.peer, ...findHolder(ctx, me.peer)! };
    const ends = ino < me.peer ? [mine, other] : [other, mine];
    const objref = ctx.checkpointObj(UNIX_OBJECT, `unix:${ends[0]!.inode}:${ends[1]!.inode}`, {
      type: me.type,
      ends,
    } satisfies SavedPair);
    ctx.write(fileUnixRecord, {
      pair: objref,
      end: ino < me.peer ? 0 : 1,
      flags: reopenFlags(file.info.flags),
      options: withFdCopy(file.pid, file.fd, (fd) => changedSocketOptions(fd, AF_UNIX, me.type, 0)),
    });
  },
  restore(ctx, task) {
    const rec = ctx.read(fileUnixRecord);
    const pair = ctx.fetchObj<RestoredPair>(rec.pair, UNIX_OBJECT);
    const src = pair.fds[rec.end];
    const what = `restoring unix socket ${pair.inodes[rec.end]}`;
    if (src === undefined) {
      throw new CkptError('EBADREC', `${what}: that end was restored already`, {
        pid: task.savedPid,
        recordType: fileUnixRecord.type,
      });
    }
    const fd =
      pair.holder === task
        ? Number(task.sys.check('fcntl', [src, F_DUPFD_CLOEXEC, 0], what))
        : copyFromHolder(task, { fd: src, holder: pair.holder, holderFd: src }, src);
    task.sys.check('fcntl', [fd, F_SETFL, rec.flags & O_NONBLOCK], what);
    if (rec.options.length > 0) {
      // After the bytes waiting at each end were written (a smaller send
      // buffer could not have taken them).
      const copy = grabFd(task.pid, fd);
      try {
        setSavedOptions(copy, rec.options, what);
      } finally {
        closeSync(copy);
      }
    }
    // One open file per socket: the holder's copy is no longer needed.
    pair.fds[rec.end] = undefined;
    closeInTask(pair.holder, src);
    return fd;
  },
};
