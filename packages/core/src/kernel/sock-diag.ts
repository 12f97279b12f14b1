/**
 * Sockets as the kernel's sock_diag netlink interface lists them: each unix
 * socket's peer (the other end of a socketpair or connection), how much
 * waits in its receive queue and the inode of the file it is bound to, and
 * the backlog of listening sockets, which /proc/net does not show.
 */
import { closeSync } from 'node:fs';
import { ownNamespace, readNamespace } from '../proc/ns.js';
import { errno, libc, sysError } from './libc.js';
import { inNamespaceOf } from './setns.js';

const AF_NETLINK = 16;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_SOCK_DIAG = 4;
const SOCK_DIAG_BY_FAMILY = 20;
const NLM_F_REQUEST = 1;
const NLM_F_DUMP = 0x300;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const AF_UNIX = 1;
const UDIAG_SHOW_VFS = 0x2;
const UDIAG_SHOW_PEER = 0x4;
const UDIAG_SHOW_RQLEN = 0x10;
const UNIX_DIAG_VFS = 1;
const UNIX_DIAG_PEER = 2;
const UNIX_DIAG_RQLEN = 4;
const UNIX_DIAG_SHUTDOWN = 6;
const HDR = 16;

/** A unix socket, as sock_diag lists it. */
export interface UnixSocketDiag {
  /** SOCK_STREAM 1, SOCK_DGRAM 2, SOCK_SEQPACKET 5. */
  type: number;
  /** TCP-like state: 1 established, 10 listening, 7 unconnected. */
  state: number;
  /** Inode of the socket at the other end; 0 when not connected. */
  peer: number;
  /** Bytes (stream) or datagrams waiting to be read; for a listener, connections waiting. */
  rqueue: number;
  /** For a listener: its backlog (what listen(2) was given, capped at net.core.somaxconn). */
  wqueue: number;
  /** Inode of the file bind() made (wherever it is now); 0 when not bound to a path. */
  vfsIno: number;
  /**
   * sk_shutdown: 1 no more reads, 2 no more writes (3 for a stream or
   * seqpacket socket whose peer was closed).
   */
  shutdown: number;
}

const align4 = (n: number) => (n + 3) & ~3;

function openDiagSocket(): number {
  const fd = libc().socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) throw sysError('socket', errno(), 'opening a sock_diag netlink socket');
  return fd;
}

/** `body` behind a netlink header of `type` and `flags`. */
function netlinkMessage(type: number, flags: number, body: Buffer): Buffer {
  const msg = Buffer.alloc(HDR + body.length);
  msg.writeUInt32LE(msg.length, 0);
  msg.writeUInt16LE(type, 4);
  msg.writeUInt16LE(flags, 6);
  body.copy(msg, HDR);
  return msg;
}

/** A diag socket in the network namespace of `pid` (ckpt's own without one). */
function diagSocketOf(pid: number | undefined): number {
  const elsewhere = pid !== undefined && readNamespace(pid, 'net').inode !== ownNamespace('net');
  return elsewhere ? inNamespaceOf(pid, 'net', `of pid ${pid}`, openDiagSocket) : openDiagSocket();
}

/**
 * Send sock_diag `request` (its netlink header is filled in here) from a
 * diag socket in the network namespace of `pid` (ckpt's own without one:
 * sock_diag answers for the namespace its socket was made in) and hand
 * each message of the dump to `each` (the buffer and the offsets of its
 * payload and end).
 */
function dump(
  pid: number | undefined,
  request: Buffer,
  what: string,
  each: (buf: Buffer, msg: number, end: number) => void,
): void {
  const lib = libc();
  const fd = diagSocketOf(pid);
  try {
    const req = netlinkMessage(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, request);
    if (lib.send(fd, req, req.length, 0) < 0) throw sysError('send', errno(), 'asking sock_diag');
    const buf = Buffer.alloc(1 << 16);
    for (;;) {
      const n = Number(lib.recv(fd, buf, buf.length, 0));
      if (n < 0) throw sysError('recv', errno(), 'reading sock_diag');
      for (let at = 0; at + HDR <= n; ) {
        const len = buf.readUInt32LE(at);
        const type = buf.readUInt16LE(at + 4);
        if (type === NLMSG_DONE) return;
        if (type === NLMSG_ERROR) throw sysError('sock_diag', -buf.readInt32LE(at + HDR), what);
        each(buf, at + HDR, at + len);
        if (len < HDR) break;
        at += align4(len);
      }
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Every unix socket of the network namespace of `pid` (ckpt's own without
 * one), by inode.
 */
export function unixSockets(pid?: number): Map<number, UnixSocketDiag> {
  const req = Buffer.alloc(24);
  req.writeUInt8(AF_UNIX, 0);
  req.writeUInt32LE(0xffffffff, 4); // every state
  req.writeUInt32LE(UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN, 12);
  req.writeUInt32LE(0xffffffff, 16);
  req.writeUInt32LE(0xffffffff, 20);
  const out = new Map<number, UnixSocketDiag>();
  dump(pid, req, 'listing unix sockets', (buf, msg, end) => {
    const entry: UnixSocketDiag = {
      type: buf.readUInt8(msg + 1),
      state: buf.readUInt8(msg + 2),
      peer: 0,
      rqueue: 0,
      wqueue: 0,
      vfsIno: 0,
      shutdown: 0,
    };
    for (let a = msg + 16; a + 4 <= end; ) {
      const alen = buf.readUInt16LE(a);
      const atype = buf.readUInt16LE(a + 2);
      if (alen < 4) break;
      if (atype === UNIX_DIAG_VFS) entry.vfsIno = buf.readUInt32LE(a + 4);
      if (atype === UNIX_DIAG_PEER) entry.peer = buf.readUInt32LE(a + 4);
      if (atype === UNIX_DIAG_RQLEN) {
        entry.rqueue = buf.readUInt32LE(a + 4);
        entry.wqueue = buf.readUInt32LE(a + 8);
      }
      if (atype === UNIX_DIAG_SHUTDOWN) entry.shutdown = buf.readUInt8(a + 4);
      a += align4(alen);
    }
    out.set(buf.readUInt32LE(msg + 4), entry);
  });
  return out;
}

const AF_INET = 2;
const AF_INET6 = 10;
const IPPROTO_TCP = 6;
const TCP_LISTEN = 10;
/** Offset of idiag_wqueue and idiag_inode in a struct inet_diag_msg. */
const IDIAG_WQUEUE = 60;
const IDIAG_INODE = 68;

/** A struct inet_diag_req_v2 (family, protocol, ext, pad, states, sockid) for TCP sockets in `states`. */
function tcpDiagRequest(family: number, states: number): Buffer {
  const req = Buffer.alloc(56);
  req.writeUInt8(family, 0);
  req.writeUInt8(IPPROTO_TCP, 1);
  req.writeUInt32LE(states, 4);
  return req;
}

/**
 * The backlog of every listening TCP socket (IPv4 and IPv6) of the network
 * namespace of `pid` (ckpt's own without one), by inode: what listen(2)
 * was given, capped at net.core.somaxconn. No /proc file shows it.
 */
export function tcpListenBacklogs(pid?: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const family of [AF_INET, AF_INET6]) {
    const req = tcpDiagRequest(family, 1 << TCP_LISTEN);
    dump(pid, req, 'listing listening TCP sockets', (buf, msg) => {
      out.set(buf.readUInt32LE(msg + IDIAG_INODE), buf.readUInt32LE(msg + IDIAG_WQUEUE));
    });
  }
  return out;
}

const TCP_TIME_WAIT = 6;
const SOCK_DESTROY = 21;
const NLM_F_ACK = 4;
/** Offset and size of the socket id (struct inet_diag_sockid) in a request and in a message. */
const SOCKID_IN_REQ = 8;
const SOCKID_IN_MSG = 4;
const SOCKID_SIZE = 48;

/**
 * End the TIME_WAIT connections on local TCP port `port` in the network
 * namespace of `pid` (as `ss -K` does; the kernel needs
 * CONFIG_INET_DIAG_DESTROY). A listener that did not have SO_REUSEADDR
 * cannot be bound again while one of its closed connections waits there:
 * the kernel lets a bind past a TIME_WAIT only when both had it. Returns
 * how many were ended.
 */
export function endTcpTimeWait(pid: number, port: number): number {
  const ids: { family: number; id: Buffer }[] = [];
  for (const family of [AF_INET, AF_INET6]) {
    const req = tcpDiagRequest(family, 1 << TCP_TIME_WAIT);
    dump(pid, req, 'listing TIME_WAIT TCP sockets', (buf, msg) => {
      if (buf.readUInt16BE(msg + SOCKID_IN_MSG) !== port) return;
      ids.push({
        family,
        id: Buffer.from(buf.subarray(msg + SOCKID_IN_MSG, msg + SOCKID_IN_MSG + SOCKID_SIZE)),
      });
    });
  }
  if (ids.length === 0) return 0;
  const lib = libc();
  const fd = diagSocketOf(pid);
  let ended = 0;
  try {
    const reply = Buffer.alloc(1024);
    for (const { family, id } of ids) {
      const body = tcpDiagRequest(family, 1 << TCP_TIME_WAIT);
      id.copy(body, SOCKID_IN_REQ);
      const req = netlinkMessage(SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, body);
      if (lib.send(fd, req, req.length, 0) < 0) continue;
      const n = Number(lib.recv(fd, reply, reply.length, 0));
      // The ack: NLMSG_ERROR carrying 0 on success.
      if (n >= HDR + 4 && reply.readUInt16LE(4) === NLMSG_ERROR && reply.readInt32LE(HDR) === 0)
        ended++;
    }
  } finally {
    closeSync(fd);
  }
  return ended;
}
