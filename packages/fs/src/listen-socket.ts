/**
 * Sockets that wait for others: listening TCP and unix stream/seqpacket
 * sockets, unconnected UDP and unix sockets, and sockets made but not
 * bound yet (IPv4/IPv6, unix, netlink). Such a socket holds no connection,
 * only its address and options, so restart makes a new one inside the task
 * and binds it to the same address, if it had one (`python3 -m http.server`
 * comes back serving on its port). Datagram sockets connected to a peer
 * are of the same kind: a connected UDP socket (a resolver, squid's
 * pinger) and a unix datagram socket connected to a named socket outside
 * the tree (syslog(3)'s /dev/log) are connected to the same address again
 * after bind; where that fails (no syslog daemon here) the socket stays
 * unconnected, with a warning.
 *
 * Saved: family, type, protocol, the address (getsockname on a copy of the
 * fd), the peer of a connected datagram socket, SO_REUSEADDR,
 * SO_REUSEPORT, IPV6_V6ONLY, O_NONBLOCK; for an IPv4 or IPv6 socket, the
 * int options the program changed (socket-options.ts: IP_PKTINFO, buffer
 * sizes, TCP_DEFER_ACCEPT...); for a unix socket, the mode of its file.
 * Refused: a unix datagram socket with datagrams queued (they would be
 * lost), and other connected sockets (see socket-info.ts). Connections
 * waiting to be accepted by a listening socket, and datagrams waiting in a
 * UDP socket, cannot be saved (nothing can put them back as they came): a
 * checkpoint that kills the tree warns that those clients get a reset, or
 * that those datagrams are lost, as UDP may lose them. A listener's
 * backlog (sock_diag shows it) is given to listen(2) again. The address must be free at restart (the original
 * gone); a unix socket's stale file is replaced.
 */
import {
  chmodSync,
  closeSync,
  lstatSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  statSync,
  unlinkSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import {
  attachSocketFilter,
  bindToDevice,
  boundDevice,
  type CheckpointCtx,
  CkptError,
  connectSocket,
  endTcpTimeWait,
  errnoText,
  type FileHandler,
  type FileInfo,
  grabFd,
  type RestartCtx,
  type RestartTask,
  readableBytes,
  socketFilter,
  socketName,
  socketOption,
  socketPeer,
  stage,
  unixSockets,
  withFdCopy,
} from '@ckpt/core';
import { moveAboveTable, restoringTask } from './file-object.js';
import { reopenFlags } from './flags.js';
import { FileKind, fileSocketRecord } from './records.js';
import { tcpBacklogs, unixDiag } from './sock-diag.js';
import { sockaddrText } from './socket-info.js';
import { changedSocketOptions, optionBytes, settingFor } from './socket-options.js';
import { describeSocket, socketEntry } from './socket-tables.js';

const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_TYPE = 3;
const SO_REUSEPORT = 15;
const SO_PROTOCOL = 38;
const SO_DOMAIN = 39;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;
const AF_UNIX = 1;
const AF_INET = 2;
const AF_INET6 = 10;
const AF_NETLINK = 16;
const SS_UNCONNECTED = 1;
const UNIX_DGRAM = 2;
const O_NONBLOCK = 0o4000;
const TCP_LISTEN = 10;
const UNIX_STREAM = 1;
const UNIX_SEQPACKET = 5;
/** Offset of sun_path in a sockaddr_un. */
const SUN_PATH = 2;
/** sizeof(sun_path), its NUL included. */
const SUN_PATH_MAX = 108;

type Classification =
  | {
      listens: boolean;
      /**
       * What is lost with a checkpoint that kills the tree: connections a
       * listening TCP socket has waiting to be accepted, or bytes of
       * datagrams waiting in a UDP socket.
       */
      pending?: number;
    }
  | { refuse: string }
  | undefined;

/**
 * Classifications by file: `match` and `checkpoint` ask about the same
 * file of a frozen tree, and each answer may cost an fd copy and calls.
 */
const classified = new WeakMap<FileInfo, Classification>();

/** What kind of waiting socket `file` is, or why it cannot be restored (undefined: not one at all). */
function classify(file: FileInfo): Classification {
  if (classified.has(file)) return classified.get(file);
  const c = classifyNow(file);
  classified.set(file, c);
  return c;
}

function classifyNow(file: FileInfo): Classification {
  if (file.target.kind !== 'socket') return undefined;
  const e = socketEntry(file);
  if (!e) return idleUnlisted(file);
  const what = () => describeSocket(file);
  if (e.proto === 'unix') {
    if (e.listening) {
      return e.type === UNIX_STREAM || e.type === UNIX_SEQPACKET ? { listens: true } : undefined;
    }
    // Bound or not, with nothing queued and no peer (or, for a datagram
    // socket, a named one outside the tree: the files phase sent any
    // other connected unix socket elsewhere): a new socket will do.
    const dgram = e.type === UNIX_DGRAM;
    if (e.state !== SS_UNCONNECTED && !dgram) return undefined;
    return withFdCopy(file.pid, file.fd, (fd) => {
      const peer = socketPeer(fd);
      if (peer !== undefined && !(dgram && peer.length > SUN_PATH)) return undefined;
      const queued = dgram ? readableBytes(fd) : 0;
      return queued > 0 ? { refuse: `${what()} has datagrams queued` } : { listens: false };
    });
  }
  if (e.proto === 'TCP') {
    if (e.state !== TCP_LISTEN) return undefined;
    return { listens: true, pending: e.rxQueue };
  }
  // UDP, connected to a peer or not. Datagrams waiting in it are not
  // saved (nothing can put them back as their senders sent them): UDP may
  // lose datagrams, and its programs live with that (see `pending`).
  return { listens: false, pending: e.rxQueue };
}

/**
 * A socket no /proc/net table lists: an IPv4/IPv6 socket never bound nor
 * connected (`socket()` and nothing else yet), or a netlink socket not
 * bound yet. A new socket of the same kind stands for it.
 */
function idleUnlisted(file: FileInfo): { listens: boolean } | undefined {
  return withFdCopy(file.pid, file.fd, (fd) => {
    const family = socketOption(fd, SOL_SOCKET, SO_DOMAIN);
    if (family !== AF_INET && family !== AF_INET6 && family !== AF_NETLINK) return undefined;
    // A netlink socket always has a peer address: port 0 is the kernel, i.e. none chosen.
    const peer = socketPeer(fd);
    const connected = peer !== undefined && !(family === AF_NETLINK && isUnbound(family, peer));
    if (!isUnbound(family, socketName(fd)) || connected) return undefined;
    return { listens: false };
  });
}

/** A sockaddr that names no address: port 0 on the any-address, no unix path, netlink port 0. */
function isUnbound(family: number, addr: Buffer): boolean {
  if (family === AF_UNIX) return addr.length <= SUN_PATH;
  if (family === AF_NETLINK) return addr.length < 8 || addr.readUInt32LE(4) === 0;
  // sockaddr_in: family, port (2..4), address (4..8); sockaddr_in6: address at 8..24.
  const port = addr.length >= 4 ? addr.readUInt16BE(2) : 0;
  const ip = family === AF_INET ? addr.subarray(4, 8) : addr.subarray(8, 24);
  return port === 0 && ip.every((b) => b === 0);
}

/** The path of a bound unix socket's file, from its sockaddr_un ("" when abstract or unbound). */
function unixPath(addr: Buffer): string {
  if (addr.length <= SUN_PATH || addr[SUN_PATH] === 0) return '';
  const end = addr.indexOf(0, SUN_PATH);
  return addr.toString('utf8', SUN_PATH, end < 0 ? addr.length : end);
}

/**
 * Why the listening or unconnected socket `file` cannot be restored (a
 * queue that is not empty), for the unsupported-file error; undefined for
 * any other file.
 */
export function whyNotRestored(file: FileInfo): string | undefined {
  const c = classify(file);
  return c && 'refuse' in c ? c.refuse : undefined;
}

export const listenSocketFile: FileHandler = {
  kind: 'listen-socket',
  id: FileKind.LISTEN_SOCKET,
  match: (f) => {
    const c = classify(f);
    return c !== undefined && 'listens' in c;
  },
  checkpoint(ctx: CheckpointCtx, _task, file) {
    const c = classify(file);
    if (!c || 'refuse' in c) {
      throw new CkptError('EUNEXPECTED', `pid ${file.pid} fd ${file.fd}: its socket changed`, {
        pid: file.pid,
        fd: file.fd,
      });
    }
    if (c.pending && ctx.leave === 'kill') {
      const socket = describeSocket(file);
      ctx.log.warn(
        c.listens
          ? `pid ${file.pid} fd ${file.fd}: ${socket} has ${c.pending} connection(s) waiting to be accepted, which cannot be saved: their clients get a reset, as when a server restarts`
          : `pid ${file.pid} fd ${file.fd}: ${socket} has ${c.pending} bytes of datagrams waiting, which cannot be saved: they are lost, as UDP may lose them`,
      );
    }
    withFdCopy(file.pid, file.fd, (fd) => {
      const family = socketOption(fd, SOL_SOCKET, SO_DOMAIN);
      const name = socketName(fd);
      // An unbound socket is restored unbound: binding it to "any" would
      // take a port and make the program's own bind() fail later.
      const addr = isUnbound(family, name) ? Buffer.alloc(0) : name;
      const path = family === AF_UNIX ? unixPath(addr) : '';
      const dir = path && !path.startsWith('/') ? relativeSocketDir(file, path) : '';
      const { file: now, mode } = path
        ? socketFileNow(ctx, file, dir ? join(dir, path) : path)
        : { file: '', mode: 0 };
      ctx.write(fileSocketRecord, {
        family,
        type: socketOption(fd, SOL_SOCKET, SO_TYPE),
        protocol: socketOption(fd, SOL_SOCKET, SO_PROTOCOL),
        addr,
        listens: c.listens,
        backlog: c.listens ? listenBacklog(ctx, file, family) : 0,
        reuseAddr: socketOption(fd, SOL_SOCKET, SO_REUSEADDR) !== 0,
        reusePort: socketOption(fd, SOL_SOCKET, SO_REUSEPORT) !== 0,
        v6only: family === AF_INET6 && socketOption(fd, IPPROTO_IPV6, IPV6_V6ONLY) !== 0,
        flags: reopenFlags(file.info.flags),
        mode,
        file: now,
        dir,
        options:
          family === AF_INET || family === AF_INET6 || family === AF_UNIX
            ? changedSocketOptions(
                fd,
                family,
                socketOption(fd, SOL_SOCKET, SO_TYPE),
                socketOption(fd, SOL_SOCKET, SO_PROTOCOL),
              )
            : [],
        peer: connectedPeer(fd, family, c.listens),
        device: family === AF_NETLINK ? '' : boundDevice(fd),
        filter: savedFilter(file, fd),
      });
    });
  },
  restore(ctx, task) {
    const rec = ctx.read(fileSocketRecord);
    const { above } = restoringTask(ctx, 'a socket');
    // A relative path is bound from its directory; the file is handled by
    // its absolute name.
    const bound = rec.family === AF_UNIX ? unixPath(rec.addr) : '';
    const path = rec.dir && bound ? join(rec.dir, bound) : bound;
    const what = rec.peer.length
      ? `recreating the socket connected to ${peerText(rec)}`
      : `recreating a socket ${path ? `at ${path}` : `(family ${rec.family})`}`;
    if (path) replaceStaleSocketFile(task, path, what);
    if (rec.file && rec.file !== path) replaceStaleSocketFile(task, rec.file, what);
    const one = (v: boolean) => {
      const b = Buffer.alloc(4);
      b.writeInt32LE(v ? 1 : 0);
      return b;
    };
    const settings = rec.options.map(settingFor);
    const [on, reuse, v6only, addr, dir, ...values] = stage(task, [
      one(true),
      one(rec.reuseAddr),
      one(rec.v6only),
      rec.addr,
      Buffer.from(`${rec.dir}\0`),
      ...settings.map(optionBytes),
    ]);
    const created = Number(
      task.sys.check(
        'socket',
        [rec.family, rec.type | (rec.flags & O_NONBLOCK), rec.protocol],
        what,
      ),
    );
    const fd = moveAboveTable(task, created, above, what);
    if (rec.device || rec.filter.length > 0) {
      // From ckpt's side, before bind: a device-bound socket binds its
      // address on that device only.
      withFdCopy(task.pid, fd, (copy) => {
        if (rec.device) bindToDevice(copy, rec.device);
        if (rec.filter.length > 0) attachSocketFilter(copy, rec.filter);
      });
    }
    const opt = (level: number, name: number, value: bigint, size = 4) => ({
      name: 'setsockopt' as const,
      args: [fd, level, name, value, size],
      what: `${what}: socket option ${level}/${name}`,
    });
    // The program's own options, before bind (IP_FREEBIND, IP_TRANSPARENT act there).
    const own = settings.map((o, i) => opt(o.level, o.name, values[i]!, optionBytes(o).length));
    if (rec.addr.length === 0) {
      // Never bound: only its options.
      task.sys.checkBatch([
        ...own,
        ...(rec.reuseAddr ? [opt(SOL_SOCKET, SO_REUSEADDR, on!)] : []),
        ...(rec.reusePort ? [opt(SOL_SOCKET, SO_REUSEPORT, on!)] : []),
        ...(rec.family === AF_INET6 ? [opt(IPPROTO_IPV6, IPV6_V6ONLY, v6only!)] : []),
      ]);
      reconnect(ctx, task, fd, rec, what);
      return fd;
    }
    if (!rec.reuseAddr && rec.listens && (rec.family === AF_INET || rec.family === AF_INET6)) {
      // The original's closed connections may still hold the port in
      // TIME_WAIT, and SO_REUSEADDR gets a bind past them only when they
      // had it too (from this listener): they are ended first.
      endTcpTimeWait(task.pid, rec.addr.readUInt16BE(2));
    }
    task.sys.checkBatch([
      ...own,
      // Bound with SO_REUSEADDR whatever it had: the original's closed
      // connections may still hold the port (TIME_WAIT).
      opt(SOL_SOCKET, SO_REUSEADDR, on!),
      ...(rec.reusePort ? [opt(SOL_SOCKET, SO_REUSEPORT, on!)] : []),
      ...(rec.family === AF_INET6 ? [opt(IPPROTO_IPV6, IPV6_V6ONLY, v6only!)] : []),
      // The task's cwd at checkpoint: the fs phase gives it the same.
      ...(rec.dir && bound
        ? [{ name: 'chdir' as const, args: [dir!], what: `${what}: entering ${rec.dir}` }]
        : []),
      {
        name: 'bind',
        args: [fd, addr!, rec.addr.length],
        what: `${what}: binding it${boundTo(rec)}`,
      },
      ...(rec.listens
        ? [
            {
              name: 'listen' as const,
              args: [fd, rec.backlog || somaxconn()],
              what: `${what}: listening`,
            },
          ]
        : []),
      opt(SOL_SOCKET, SO_REUSEADDR, reuse!),
    ]);
    if (path) settleSocketFile(task, path, rec, what);
    reconnect(ctx, task, fd, rec, what);
    return fd;
  },
};

/**
 * The peer a datagram socket (UDP, unix) is connected to, empty if none.
 * Not a netlink socket's: its peer address is the kernel's, always there.
 */
function connectedPeer(fd: number, family: number, listens: boolean): Buffer {
  if (listens || (family !== AF_UNIX && family !== AF_INET && family !== AF_INET6)) {
    return Buffer.alloc(0);
  }
  return socketPeer(fd) ?? Buffer.alloc(0);
}

/** The classic BPF filter of socket `fd` (a copy of `file`'s); an eBPF one is refused. */
function savedFilter(file: FileInfo, fd: number): Buffer {
  const prog = socketFilter(fd);
  if (prog === 'ebpf') {
    throw new CkptError(
      'ENOTSUP',
      `pid ${file.pid} fd ${file.fd}: an eBPF program is attached to its socket (SO_ATTACH_BPF), which cannot be read back`,
      { pid: file.pid, fd: file.fd },
    );
  }
  return prog;
}

/**
 * Connect the restored datagram socket `fd` to its saved peer, if it had
 * one: from ckpt's side, once every task is restored (the peer may be a
 * socket of the tree that a later task binds). A peer that is not there
 * (no syslog daemon on this machine) leaves it unconnected, with a
 * warning: its sends fail until it connects again, as syslog(3) does on
 * such a failure.
 */
function reconnect(
  ctx: RestartCtx,
  task: RestartTask,
  fd: number,
  rec: { family: number; peer: Buffer },
  what: string,
): void {
  if (rec.peer.length === 0) return;
  const copy = grabFd(task.pid, fd);
  const pid = task.pid;
  ctx.deferqueue.add(
    copy,
    (c) => {
      try {
        const err = connectSocket(c, peerAddress(pid, rec));
        if (err !== 0) {
          ctx.log.warn(
            `pid ${task.savedPid}: ${what}: connecting it again failed (${errnoText(err)}); it is left unconnected`,
          );
        }
      } finally {
        closeSync(c);
      }
    },
    (c) => closeSync(c),
  );
}

/**
 * The address to connect ckpt's copy to: a unix path as the task sees it
 * (through /proc/PID/root where its root is not ckpt's: a chroot), any
 * other address as saved.
 */
function peerAddress(pid: number, rec: { family: number; peer: Buffer }): Buffer {
  const path = rec.family === AF_UNIX ? unixPath(rec.peer) : '';
  if (!path || !isChrooted(pid)) return rec.peer;
  const seen = Buffer.from(`/proc/${pid}/root${path}\0`);
  if (seen.length > SUN_PATH_MAX) return rec.peer;
  const addr = Buffer.alloc(SUN_PATH + seen.length);
  addr.writeUInt16LE(AF_UNIX, 0);
  seen.copy(addr, SUN_PATH);
  return addr;
}

/** The peer of a connected datagram socket as text: an address, a path, or @name (abstract). */
function peerText(rec: { family: number; peer: Buffer }): string {
  if (rec.family !== AF_UNIX) return sockaddrText(rec.peer);
  const path = unixPath(rec.peer);
  return path || `@${rec.peer.toString('utf8', SUN_PATH + 1).replace(/\0+$/, '')}`;
}

/** " to 127.0.0.1:5432 (still taken by the original?)" for an IPv4/IPv6 address, for bind's error. */
function boundTo(rec: { family: number; addr: Buffer }): string {
  if (rec.family !== AF_INET && rec.family !== AF_INET6) return '';
  return ` to ${sockaddrText(rec.addr)} (if the address is in use: is the original still running? stop it, or restart where the port is free; connections it closed may hold it for a minute in TIME_WAIT where the kernel cannot end them)`;
}

/** The backlog listening socket `file` (of `family`) was given, as sock_diag shows it; 0 if unknown. */
function listenBacklog(ctx: CheckpointCtx, file: FileInfo, family: number): number {
  const ino = file.target.inode ?? file.stat.ino;
  if (family === AF_UNIX) return unixDiag(ctx, file.pid).get(ino)?.wqueue ?? 0;
  if (family === AF_INET || family === AF_INET6) return tcpBacklogs(ctx, file.pid).get(ino) ?? 0;
  return 0;
}

/** The most connections a listen queue may hold here (what restart listens with when the backlog is unknown). */
function somaxconn(): number {
  try {
    return Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8').trim()) || 4096;
  } catch {
    return 4096;
  }
}

/**
 * Where the file a unix socket bound at `path` is now, and its mode:
 * `path`; another name in the same directory, found by the inode sock_diag
 * reports, when the program renamed it; '' when it removed it. A socket's
 * path names the file from the root its program had when it bound it:
 * that may be ckpt's root where the task is chrooted now (bound before
 * chroot, as privilege-separated daemons such as openntpd do), and restart
 * binds it from there (the files come back before the task's root). One
 * found only inside the task's chroot is refused: restart would bind it
 * outside.
 */
function socketFileNow(
  ctx: CheckpointCtx,
  file: FileInfo,
  path: string,
): { file: string; mode: number } {
  const ino = unixDiag(ctx, file.pid).get(file.target.inode ?? file.stat.ino)?.vfsIno;
  const taskRoot = `/proc/${file.pid}/root`;
  const chrooted = isChrooted(file.pid);
  const inTask = findSocketFile(taskRoot, path, ino);
  const outside = chrooted ? findSocketFile('', path, ino) : undefined;
  if (inTask !== undefined && chrooted && outside === undefined) {
    throw new CkptError(
      'ENOTSUP',
      `pid ${file.pid} fd ${file.fd}: unix socket ${path} was bound inside the process's chroot; restart would bind it outside, which is not supported yet`,
      { pid: file.pid, fd: file.fd, path },
    );
  }
  const [found, root] = outside !== undefined ? [outside, ''] : [inTask, taskRoot];
  if (found === undefined) return { file: '', mode: 0 };
  return { file: found, mode: lstatSync(`${root}${found}`).mode & 0o7777 };
}

/**
 * The directory a unix socket bound at relative `path` names its file
 * from: the process's cwd (where a daemon that binds relative names, as
 * postfix's master in its queue directory, stays).
 * @throws CkptError ENOTSUP for a chrooted process (its cwd is not a path restart could use)
 */
function relativeSocketDir(file: FileInfo, path: string): string {
  if (isChrooted(file.pid)) {
    throw new CkptError(
      'ENOTSUP',
      `pid ${file.pid} fd ${file.fd}: unix socket ${path} was bound with a relative path by a chrooted process, which is not supported yet`,
      { pid: file.pid, fd: file.fd, path },
    );
  }
  return readlinkSync(`/proc/${file.pid}/cwd`);
}

/** Whether `pid`'s root directory is another than ckpt's (a chroot). */
function isChrooted(pid: number): boolean {
  const root = statSync(`/proc/${pid}/root`);
  const mine = statSync('/');
  return root.dev !== mine.dev || root.ino !== mine.ino;
}

/**
 * The socket file of inode `ino` bound at `path`, under `root`: `path`
 * itself, or a name in its directory (renamed); undefined if not there.
 * Without `ino` (sock_diag did not say), whatever is at `path`.
 */
function findSocketFile(root: string, path: string, ino: number | undefined): string | undefined {
  const at = lstatSync(`${root}${path}`, { throwIfNoEntry: false });
  if (at && (!ino || (at.isSocket() && at.ino === ino))) return path;
  if (!ino) return undefined;
  const dir = dirname(path);
  try {
    for (const name of readdirSync(`${root}${dir}`)) {
      const st = lstatSync(`${root}${dir}/${name}`, { throwIfNoEntry: false });
      if (st?.isSocket() && st.ino === ino) return dir === '/' ? `/${name}` : `${dir}/${name}`;
    }
  } catch {
    // The directory went too.
  }
  return undefined;
}

/** After bind(): give the socket's file its mode, and its later name or removal (see `file`). */
function settleSocketFile(
  task: RestartTask,
  path: string,
  rec: { mode: number; file: string },
  what: string,
): void {
  const seen = (p: string) => `/proc/${task.pid}/root${p}`;
  try {
    if (rec.file === '') {
      unlinkSync(seen(path));
      return;
    }
    if (rec.file !== path) renameSync(seen(path), seen(rec.file));
    chmodSync(seen(rec.file), rec.mode);
  } catch (e) {
    throw new CkptError(
      'ESYS',
      `${what}: putting its file at ${rec.file || '(removed)'}: ${(e as Error).message}`,
      { pid: task.savedPid, path },
      { cause: e },
    );
  }
}

/**
 * Remove the socket file the original left at `path` (as the task sees
 * it); refuse anything else there, and a socket file a live socket is
 * still bound to (the original, running beside a --no-pids copy).
 */
function replaceStaleSocketFile(task: RestartTask, path: string, what: string): void {
  const seen = `/proc/${task.pid}/root${path}`;
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(seen);
  } catch {
    return; // nothing there
  }
  if (st.isSocket()) {
    const user = [...unixSockets(task.pid)].find(([, d]) => d.vfsIno !== 0 && d.vfsIno === st.ino);
    if (user) {
      throw new CkptError(
        'EBUSY',
        `${what}: ${path} belongs to socket:[${user[0]}], which is still open (the original still running?); stop the process that holds it, or restart elsewhere`,
        { pid: task.savedPid, path },
      );
    }
  }
  if (!st.isSocket()) {
    throw new CkptError(
      'EEXIST',
      `${what}: ${path} exists and is not a socket; remove it or restart elsewhere`,
      {
        pid: task.savedPid,
        path,
      },
    );
  }
  unlinkSync(seen);
}
