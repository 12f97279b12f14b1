/**
 * Established TCP connections, through TCP repair mode (core's
 * kernel/tcp-repair.ts; CRIU's `--tcp-established`). The connection goes
 * on after restart with the same peer, which sees nothing but a pause: no
 * handshake, no FIN, no RST.
 *
 * Checkpoint: a copy of the task's socket is put in repair mode and its
 * state read (addresses, sequence numbers, both queues, the options agreed
 * at the handshake, the windows) with the options the program changed
 * (socket-options.ts: TCP_NODELAY, keepalive, IP_TOS...) and
 * SO_REUSEADDR (read before repair mode, which forces it on; leaving repair
 * mode clears it, so it is set again after, here and at restart). The tree
 * is frozen, so only the peer could move it meanwhile, and a socket in
 * repair mode takes nothing in. When the tree goes on running, repair
 * mode ends at once (quietly); when it is killed (`--kill`), the socket
 * stays in repair mode so that its close when the task dies says nothing
 * to the peer, which would otherwise see the connection end. If the
 * checkpoint fails, repair mode ends and the tree goes on as before.
 *
 * Restart: the task makes a new socket; ckpt puts it in repair mode on
 * its own copy, binds it to the old address (repair mode binds even where
 * a listening socket holds the port), sets the sequence numbers,
 * "connects" without a handshake, sets the options, refills the queues
 * and the windows. It leaves repair mode only when every task is restored
 * (deferqueue, with a window probe that tells the peer where it stands);
 * a restart that fails closes it still in repair mode, quietly, so a
 * second attempt can take the connection over.
 *
 * While the connection has no socket (from the kill to the restart), the
 * peer's packets for it are dropped (core's kernel/net-lock.ts), not answered with a
 * reset; the peer retransmits them. Restart lets them through again before
 * the sockets leave repair mode.
 *
 * Limits: only established connections (a connection being set up or
 * closed is refused, naming its state); the peer must still be there.
 * Without `nft`, the peer's packets are not held back (ckpt warns): one
 * sent meanwhile gets a reset. Data the connection had queued but not sent
 * yet is queued again once out of repair mode (CRIU does the same), so it
 * goes out at once rather than as a retransmission after a timeout.
 */
import { closeSync } from 'node:fs';
import {
  type CheckpointCtx,
  CkptError,
  type FileHandler,
  type FileInfo,
  type GuardedSocket,
  grabFd,
  guardLockedConnections,
  type LockedConnection,
  lockConnections,
  lockedConnectionCount,
  ownNamespace,
  type RestartCtx,
  readNamespace,
  readTcpState,
  sendUnsent,
  setSocketOption,
  setTcpRepair,
  shutdownReading,
  socketName,
  socketOption,
  socketPeer,
  TCP_ESTABLISHED,
  TcpRepair,
  tcpStateOf,
  unlockConnections,
  withFdCopy,
  writeTcpState,
} from '@ckpt/core';
import { moveAboveTable, restoringTask } from './file-object.js';
import { reopenFlags } from './flags.js';
import { FileKind, fileTcpRecord } from './records.js';
import { perNamespace } from './sock-diag.js';
import { sockaddrText, tcpConnections } from './socket-info.js';
import { changedSocketOptions, optionBytes } from './socket-options.js';
import { describeSocket, socketEntry } from './socket-tables.js';
import { treeFds } from './tree-fds.js';

const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_DOMAIN = 39;
const SO_PROTOCOL = 38;
const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_STREAM = 1;
const IPPROTO_TCP = 6;
const O_NONBLOCK = 0o4000;
/** The peer closed its end (its FIN received), the program has not closed its own. */
const TCP_CLOSE_WAIT = 8;
/** Offset of rcv_wup in struct tcp_repair_window (snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup). */
const REPAIR_WINDOW_RCV_WUP = 16;

/** States restored: established, and closed by the peer only (the end of input to give the program). */
function isSaved(state: number | undefined): boolean {
  return state === TCP_ESTABLISHED || state === TCP_CLOSE_WAIT;
}

/**
 * The TCP state of `file` if it is a TCP socket connected in any state
 * (not listening, not idle), read from the socket itself; else undefined.
 */
function connectionState(file: FileInfo): number | undefined {
  if (file.target.kind !== 'socket') return undefined;
  const e = socketEntry(file);
  if (e?.proto !== 'TCP' || e.state === 10 || !e.connected) return undefined;
  return withFdCopy(file.pid, file.fd, tcpStateOf);
}

/** Why `file`, a TCP connection, cannot be saved; undefined if it can (or is none). */
export function whyNotTcp(file: FileInfo): string | undefined {
  const state = connectionState(file);
  if (state === undefined || isSaved(state)) return undefined;
  return `${describeSocket(file)} is being set up or closed; only established TCP connections (and those only the peer closed) are saved`;
}

/** The bytes at the end of a saved send queue that were never sent. */
function unsentPart(rec: { sendQueue: Buffer; sendUnsent: number }): Buffer {
  return rec.sendQueue.subarray(rec.sendQueue.length - rec.sendUnsent);
}

/**
 * Leave repair mode on ckpt's copy `fd` and close it. Leaving repair mode
 * clears SO_REUSEADDR (repair mode forces it while on): `reuseAddr` is set
 * again after. `unsent`, bytes the connection had never sent, then go out
 * as the program's send would have sent them.
 */
function endRepair(
  fd: number,
  mode: number,
  reuseAddr: boolean,
  unsent?: Buffer,
  peerClosed = false,
): void {
  try {
    setTcpRepair(fd, mode);
    if (reuseAddr) setSocketOption(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (peerClosed) shutdownReading(fd);
    if (unsent?.length) sendUnsent(fd, unsent);
  } finally {
    closeSync(fd);
  }
}

function checkpointTcp(ctx: CheckpointCtx, file: FileInfo): void {
  if (ctx.leave === 'kill') lockTreeConnections(ctx);
  const fd = grabFd(file.pid, file.fd);
  let repairing = false;
  // Read before repair mode, which forces it on.
  let reuseAddr = false;
  try {
    reuseAddr = socketOption(fd, SOL_SOCKET, SO_REUSEADDR) !== 0;
    setTcpRepair(fd, TcpRepair.ON);
    repairing = true;
    const state = tcpStateOf(fd);
    if (!isSaved(state)) {
      throw new CkptError('ENOTSUP', `pid ${file.pid} fd ${file.fd}: ${whyNotTcp(file)}`, {
        pid: file.pid,
        fd: file.fd,
      });
    }
    const s = readTcpState(fd);
    if (s.lostUrgentByte !== undefined) {
      ctx.log.warn(
        `pid ${file.pid} fd ${file.fd}: an urgent (out-of-band) byte (0x${s.lostUrgentByte.toString(16)}) its TCP peer sent is not read yet; a restored connection cannot hold it as urgent data, so a restart from this image loses it (the data around it is kept)`,
      );
    }
    // The peer's FIN took a sequence number after the last byte: restored
    // without it (repair mode cannot queue a FIN), reading is shut instead.
    const peerClosed = state === TCP_CLOSE_WAIT;
    if (peerClosed) {
      s.recvSeq = (s.recvSeq - 1) >>> 0;
      // struct tcp_repair_window's rcv_wup may not be after rcv_nxt.
      s.window = Buffer.from(s.window);
      if (((s.window.readUInt32LE(REPAIR_WINDOW_RCV_WUP) - s.recvSeq) | 0) > 0) {
        s.window.writeUInt32LE(s.recvSeq, REPAIR_WINDOW_RCV_WUP);
      }
    }
    const family = socketOption(fd, SOL_SOCKET, SO_DOMAIN);
    ctx.write(fileTcpRecord, {
      family,
      flags: reopenFlags(file.info.flags),
      addr: s.addr,
      peer: s.peer,
      sendSeq: s.sendSeq,
      recvSeq: s.recvSeq,
      mss: s.mss,
      options: s.options,
      sendWscale: s.sendWscale,
      recvWscale: s.recvWscale,
      timestamp: s.timestamp,
      window: s.window,
      reuseAddr,
      sendUnsent: s.sendUnsent,
      sendQueue: s.sendQueue,
      recvQueue: s.recvQueue,
      socketOptions: changedSocketOptions(fd, family, SOCK_STREAM, IPPROTO_TCP, { buffers: false }),
      peerClosed,
    });
  } catch (e) {
    if (repairing) endRepair(fd, TcpRepair.OFF_NO_PROBE, reuseAddr);
    else closeSync(fd);
    throw e;
  }
  if (ctx.leave !== 'kill') {
    endRepair(fd, TcpRepair.OFF_NO_PROBE, reuseAddr);
    return;
  }
  // Killed with the tree, it must then be in repair mode, so that its
  // close sends the peer nothing. Until then it is not: its state is read,
  // and the lock keeps the peer's packets out meanwhile, but should ckpt
  // itself be killed, the tree goes on at once, before anyone could take
  // the socket out of repair mode again (the guardian only unlocks).
  try {
    setTcpRepair(fd, TcpRepair.OFF_NO_PROBE);
    if (reuseAddr) setSocketOption(fd, SOL_SOCKET, SO_REUSEADDR, 1);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  ctx.deferqueue.add(
    fd,
    (copy) => {
      try {
        setTcpRepair(copy, TcpRepair.ON);
      } finally {
        closeSync(copy);
      }
    },
    (copy) => closeSync(copy),
  );
}

/**
 * The TCP connections of `pid`'s network namespace ("local peer": state),
 * read once per restart: an original still open was there before the
 * restart began, and reading the tables for each of a thousand
 * connections took most of its time.
 */
function openConnections(ctx: RestartCtx, pid: number): Map<string, string> {
  return perNamespace(ctx, pid, 'tcp-connections', tcpConnections);
}

/** Whether `pid` is in ckpt's network namespace (where the network lock works). */
function inOwnNetns(pid: number): boolean {
  return readNamespace(pid, 'net').inode === ownNamespace('net');
}

/** The checkpoints that have locked their tree's connections. */
const locked = new WeakSet<CheckpointCtx>();

/**
 * Before the first connection of a checkpoint that kills its tree is read:
 * hold back the peers' packets for every TCP connection of the tree (in
 * ckpt's network namespace: one of the tree's own dies with it, and the
 * lock is for ckpt's). Bytes a peer sends from then on are not taken in
 * and acknowledged after the socket's queues were read, which would lose
 * them (the frozen tree's sockets still receive); the peer retransmits
 * them to the restored socket. Should the checkpoint fail, they are let
 * through again.
 */
function lockTreeConnections(ctx: CheckpointCtx): void {
  if (locked.has(ctx)) return;
  locked.add(ctx);
  const conns = new Map<string, LockedConnection>();
  const sockets: GuardedSocket[] = [];
  for (const { pid, fd, target } of treeFds(ctx)) {
    if (target.kind !== 'socket' || !inOwnNetns(pid)) continue;
    const conn = withFdCopy(pid, fd, tcpConnectionOf);
    if (!conn) continue;
    conns.set(`${conn.addr.toString('hex')} ${conn.peer.toString('hex')}`, conn);
    sockets.push({ pid, fd });
  }
  if (conns.size === 0) return;
  const all = [...conns.values()];
  // Should ckpt itself be killed from now on, the guardian undoes this.
  guardLockedConnections(all, sockets);
  const why = lockConnections(all);
  if (why !== undefined) {
    ctx.log.warn(
      `${all.length} TCP connection(s) not held back while the process is gone (${why}): a packet the peer sends before the restart is lost, or gets a reset, which ends the connection`,
    );
    return;
  }
  ctx.deferqueue.add(
    all,
    () => {},
    (held) => unlockConnections(held),
  );
}

/** The addresses of ckpt's copy `fd` if it is a TCP connection this checkpoint saves; else undefined. */
function tcpConnectionOf(fd: number): LockedConnection | undefined {
  const family = socketOption(fd, SOL_SOCKET, SO_DOMAIN);
  if (family !== AF_INET && family !== AF_INET6) return undefined;
  if (socketOption(fd, SOL_SOCKET, SO_PROTOCOL) !== IPPROTO_TCP) return undefined;
  if (!isSaved(tcpStateOf(fd))) return undefined;
  const peer = socketPeer(fd);
  return peer ? { addr: socketName(fd), peer } : undefined;
}

/**
 * Gather restored connection `conn`. Once every task is restored, the
 * peer's packets for every gathered connection are let through, before any
 * socket leaves repair mode (so that its window probe is answered).
 */
function unlockWhenRestored(ctx: RestartCtx, conn: LockedConnection): void {
  const gathered = restoredConnections.get(ctx);
  if (gathered) {
    gathered.push(conn);
    return;
  }
  const conns = [conn];
  restoredConnections.set(ctx, conns);
  ctx.deferqueue.add(
    conns,
    () => {
      const why = unlockConnections(conns);
      if (why !== undefined) {
        ctx.log.warn(
          `the peers' packets of the restored TCP connections are still dropped here (${why}); \`nft delete table inet ckpt\` lets them through`,
        );
      }
    },
    // A failed restart: still held, for the next attempt.
    () => {
      if (lockedConnectionCount() === 0) return;
      ctx.log.warn(
        `the peers' packets of the image's TCP connections are still held back here, for the next restart; \`nft delete table inet ckpt\` lets them through (the peers then get a reset)`,
      );
    },
  );
}

/** The connections each restart has restored so far. */
const restoredConnections = new WeakMap<RestartCtx, LockedConnection[]>();

export const tcpSocketFile: FileHandler = {
  kind: 'tcp',
  id: FileKind.TCP,
  match: (f) => isSaved(connectionState(f)),
  checkpoint(ctx, _task, file) {
    checkpointTcp(ctx, file);
  },
  restore(ctx, task) {
    const rec = ctx.read(fileTcpRecord);
    const { above } = restoringTask(ctx, 'a TCP connection');
    const local = sockaddrText(rec.addr);
    const peer = sockaddrText(rec.peer);
    const what = `restoring the TCP connection ${local} -> ${peer}`;
    // Two sockets with one address pair would both be in the kernel's
    // tables: refuse while the original's is there.
    const existing = openConnections(ctx, task.pid).get(`${local} ${peer}`);
    if (existing !== undefined && existing !== 'time-wait') {
      throw new CkptError(
        'EBUSY',
        `${what}: that connection is still open here (${existing}; the original still running?); stop the process that holds it, or restart where it is not`,
        { pid: task.savedPid },
      );
    }
    const created = Number(
      task.sys.check(
        'socket',
        [rec.family, SOCK_STREAM | (rec.flags & O_NONBLOCK), IPPROTO_TCP],
        what,
      ),
    );
    const fd = moveAboveTable(task, created, above, what);
    const copy = grabFd(task.pid, fd);
    try {
      setTcpRepair(copy, TcpRepair.ON);
      writeTcpState(copy, {
        addr: rec.addr,
        peer: rec.peer,
        sendSeq: rec.sendSeq,
        recvSeq: rec.recvSeq,
        sendQueue: rec.sendQueue,
        sendUnsent: rec.sendUnsent,
        recvQueue: rec.recvQueue,
        mss: rec.mss,
        options: rec.options,
        sendWscale: rec.sendWscale,
        recvWscale: rec.recvWscale,
        timestamp: rec.timestamp,
        window: rec.window,
      });
      for (const o of rec.socketOptions) {
        try {
          setSocketOption(copy, o.level, o.name, optionBytes(o));
        } catch (e) {
          // One of the program's tunings: the connection works without it.
          ctx.log.warn(`${what}: ${(e as Error).message}; the connection goes on without it`);
        }
      }
    } catch (e) {
      closeSync(copy);
      throw new CkptError(
        'ESYS',
        `${what}: ${(e as Error).message}`,
        { pid: task.savedPid },
        { cause: e },
      );
    }
    // Quiet until every task is restored; then it speaks again.
    if (inOwnNetns(task.pid)) unlockWhenRestored(ctx, { addr: rec.addr, peer: rec.peer });
    ctx.deferqueue.add(
      copy,
      // SO_REUSEADDR too: without it, the port stays taken for a minute
      // after the connection closes (TIME_WAIT), and the program's
      // listener could not bind it again.
      (c) => endRepair(c, TcpRepair.OFF, rec.reuseAddr, unsentPart(rec), rec.peerClosed),
      (c) => closeSync(c),
    );
    return fd;
  },
};
