/**
 * TCP repair mode (TCP_REPAIR, Linux 3.5+, needs CAP_NET_ADMIN): reading an
 * established connection's state out of a socket and putting it into a
 * new one, on one of ckpt's own fds (a copy of the task's).
 *
 * A socket in repair mode sends nothing: closing it sends neither FIN nor
 * RST, connect() makes it established without a handshake, and data
 * written to its receive queue is queued as if it had arrived. The state
 * that makes a connection: the next sequence number of each queue
 * (TCP_QUEUE_SEQ), the bytes in each queue (peeked), the options agreed
 * at the handshake (MSS, window scaling, SACK, timestamps and the
 * timestamp clock), and the windows (TCP_REPAIR_WINDOW).
 */
import { CkptError } from '../errors.js';
import { errno, libc, sysError } from './libc.js';
import {
  setSocketOption,
  socketName,
  socketOption,
  socketOptionBytes,
  socketPeer,
} from './sockets.js';

const SOL_SOCKET = 1;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const SO_SNDBUFFORCE = 32;
const SO_RCVBUFFORCE = 33;
const SOL_TCP = 6;
const TCP_MAXSEG = 2;
const TCP_INFO = 11;
const TCP_REPAIR = 19;
const TCP_REPAIR_QUEUE = 20;
const TCP_QUEUE_SEQ = 21;
const TCP_REPAIR_OPTIONS = 22;
const TCP_TIMESTAMP = 24;
const TCP_REPAIR_WINDOW = 29;
const TCP_RECV_QUEUE = 1;
const TCP_SEND_QUEUE = 2;
const SIOCINQ = 0x541b;
const SIOCOUTQ = 0x5411;
const SIOCOUTQNSD = 0x894b;
const MSG_OOB = 1;
const MSG_PEEK = 2;
const MSG_DONTWAIT = 0x40;
const SO_OOBINLINE = 10;
const SO_PEEK_OFF = 42;
/** tcp_info.tcpi_options bits. */
const TCPI_OPT_TIMESTAMPS = 1;
const TCPI_OPT_SACK = 2;
const TCPI_OPT_WSCALE = 4;
/** TCP option kinds, as TCP_REPAIR_OPTIONS takes them. */
const TCPOPT_MAXSEG = 2;
const TCPOPT_WINDOW = 3;
const TCPOPT_SACK_PERMITTED = 4;
const TCPOPT_TIMESTAMP = 8;
/** struct tcp_repair_window: snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup. */
const REPAIR_WINDOW_SIZE = 20;
/** tcp_info.tcpi_state of an established connection. */
export const TCP_ESTABLISHED = 1;

/** How to leave repair mode (TCP_REPAIR's values). */
export const TcpRepair = {
  ON: 1,
  /** Off, and send a window probe: the peer hears from the connection again. */
  OFF: 0,
  /** Off, quietly. */
  OFF_NO_PROBE: -1,
} as const;

/** An established connection's state, as {@link readTcpState} reads it. */
export interface TcpState {
  /** Own and peer address, raw sockaddr (sockaddr_in or sockaddr_in6). */
  addr: Buffer;
  peer: Buffer;
  /** Sequence number after the last byte queued to send (write_seq). */
  sendSeq: number;
  /** Sequence number after the last byte received (rcv_nxt). */
  recvSeq: number;
  /** Bytes sent but not acknowledged, and not sent yet, in order. */
  sendQueue: Buffer;
  /** How many bytes at the end of `sendQueue` were never sent. */
  sendUnsent: number;
  /** Bytes received but not read by the program. */
  recvQueue: Buffer;
  /**
   * An urgent (out-of-band) byte the program had not read yet, left out of
   * {@link recvQueue}: a receive queue cannot be given an urgent mark
   * again, so it is lost (the data around it is kept).
   */
  lostUrgentByte?: number;
  mss: number;
  /** tcpi_options (timestamps 1, SACK 2, window scaling 4). */
  options: number;
  sendWscale: number;
  recvWscale: number;
  /** The timestamp clock, read with TCP_TIMESTAMP. */
  timestamp: number;
  /** struct tcp_repair_window, raw. */
  window: Buffer;
}

function ioctlInt(fd: number, request: number, what: string): number {
  const b = Buffer.alloc(4);
  if (libc().ioctlBuf(fd, request, b) < 0) throw sysError('ioctl', errno(), what);
  return b.readInt32LE(0);
}

/** Put socket `fd` into or out of repair mode (see {@link TcpRepair}). */
export function setTcpRepair(fd: number, mode: number): void {
  setSocketOption(fd, SOL_TCP, TCP_REPAIR, mode, `switching TCP repair mode to ${mode}`);
}

/** The TCP state of socket `fd` (tcpi_state: 1 established, 10 listening...). */
export function tcpStateOf(fd: number): number {
  return socketOptionBytes(fd, SOL_TCP, TCP_INFO, 'reading TCP_INFO', 8)[0]!;
}

/** Peek `length` bytes of one queue of a socket in repair mode. */
function peekQueue(fd: number, queue: number, length: number): { seq: number; data: Buffer } {
  setSocketOption(fd, SOL_TCP, TCP_REPAIR_QUEUE, queue, 'choosing a TCP queue');
  const seq = socketOption(fd, SOL_TCP, TCP_QUEUE_SEQ, 'reading a TCP queue sequence number') >>> 0;
  const data = Buffer.alloc(length);
  let got = 0;
  if (length > 0) {
    got = Number(libc().recv(fd, data, length, MSG_PEEK | MSG_DONTWAIT));
    if (got < 0) throw sysError('recv', errno(), 'peeking at a TCP queue');
  }
  if (got !== length) {
    throw new CkptError(
      'EAGAIN',
      `a TCP queue held ${got} bytes where ${length} were counted; the connection changed while it was read`,
    );
  }
  return { seq, data };
}

/**
 * Peek the whole receive queue of a socket in repair mode, past an urgent
 * mark too. The kernel counts (SIOCINQ) and reads only up to a pending
 * urgent byte, and a peek always starts over at the queue's head: so the
 * urgent byte is made inline for a while (counted and read like any
 * other) and SO_PEEK_OFF carries each peek on from the last. Unless the
 * program reads urgent data inline itself, the byte at the mark is left
 * out, as its reads skip it.
 */
function peekRecvQueue(fd: number): { seq: number; data: Buffer; lostUrgentByte?: number } {
  // An urgent byte not read yet (recv(MSG_OOB) refuses one read already).
  const oob = Buffer.alloc(1);
  const unreadUrgent = Number(libc().recv(fd, oob, 1, MSG_OOB | MSG_PEEK | MSG_DONTWAIT)) === 1;
  const inline = socketOption(fd, SOL_SOCKET, SO_OOBINLINE, 'reading SO_OOBINLINE') !== 0;
  if (!inline) setSocketOption(fd, SOL_SOCKET, SO_OOBINLINE, 1, 'reading urgent data inline');
  try {
    setSocketOption(fd, SOL_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE, 'choosing a TCP queue');
    const seq =
      socketOption(fd, SOL_TCP, TCP_QUEUE_SEQ, 'reading a TCP queue sequence number') >>> 0;
    const length = ioctlInt(fd, SIOCINQ, 'counting the bytes of a TCP receive queue');
    const data = Buffer.alloc(length);
    let got = 0;
    /** Where the first peek stopped short: the urgent mark. */
    let mark: number | undefined;
    setSocketOption(fd, SOL_SOCKET, SO_PEEK_OFF, 0, 'peeking on from the last peek');
    try {
      while (got < length) {
        const n = Number(
          libc().recv(fd, data.subarray(got), length - got, MSG_PEEK | MSG_DONTWAIT),
        );
        if (n < 0) throw sysError('recv', errno(), 'peeking at a TCP queue');
        if (n === 0) break;
        got += n;
        if (got < length) mark ??= got;
      }
    } finally {
      setSocketOption(fd, SOL_SOCKET, SO_PEEK_OFF, -1, 'ending peeks at an offset');
    }
    if (got !== length) {
      throw new CkptError(
        'EAGAIN',
        `a TCP queue held ${got} bytes where ${length} were counted; the connection changed while it was read`,
      );
    }
    if (inline || mark === undefined) return { seq, data };
    const kept = Buffer.concat([data.subarray(0, mark), data.subarray(mark + 1)]);
    return unreadUrgent ? { seq, data: kept, lostUrgentByte: oob[0]! } : { seq, data: kept };
  } finally {
    if (!inline) setSocketOption(fd, SOL_SOCKET, SO_OOBINLINE, 0, 'reading urgent data inline');
  }
}

/**
 * Read the state of the established connection on `fd`, which must be in
 * repair mode already (see {@link setTcpRepair}): nothing moves then.
 */
export function readTcpState(fd: number): TcpState {
  const info = socketOptionBytes(fd, SOL_TCP, TCP_INFO, 'reading TCP_INFO', 8);
  const outq = ioctlInt(fd, SIOCOUTQ, 'counting the bytes of a TCP send queue');
  const unsent = ioctlInt(fd, SIOCOUTQNSD, 'counting the unsent bytes of a TCP send queue');
  const send = peekQueue(fd, TCP_SEND_QUEUE, outq);
  const recv = peekRecvQueue(fd);
  const peer = socketPeer(fd);
  if (!peer) throw new CkptError('EAGAIN', 'the TCP connection has no peer any more');
  return {
    addr: socketName(fd),
    peer,
    sendSeq: send.seq,
    recvSeq: recv.seq,
    sendQueue: send.data,
    sendUnsent: Math.min(unsent, outq),
    recvQueue: recv.data,
    ...(recv.lostUrgentByte === undefined ? {} : { lostUrgentByte: recv.lostUrgentByte }),
    mss: socketOption(fd, SOL_TCP, TCP_MAXSEG, 'reading TCP_MAXSEG'),
    options: info[5]!,
    sendWscale: info[6]! & 0xf,
    recvWscale: info[6]! >> 4,
    timestamp: socketOption(fd, SOL_TCP, TCP_TIMESTAMP, 'reading TCP_TIMESTAMP') >>> 0,
    window: socketOptionBytes(
      fd,
      SOL_TCP,
      TCP_REPAIR_WINDOW,
      'reading TCP_REPAIR_WINDOW',
      REPAIR_WINDOW_SIZE,
    ),
  };
}

/**
 * Make room for `bytes` in the socket buffer `option` measures: a new
 * socket's default is smaller than a queue that had grown with the
 * connection, and nothing drains a queue in repair mode. Forced (root's
 * SO_SNDBUFFORCE/SO_RCVBUFFORCE), which also stops the kernel resizing it.
 */
function makeRoom(fd: number, option: number, force: number, bytes: number, what: string): void {
  // The kernel doubles what is set, for its bookkeeping; half is data.
  const room = Math.floor(socketOption(fd, SOL_SOCKET, option) / 2);
  if (bytes + (bytes >> 2) <= room) return;
  setSocketOption(fd, SOL_SOCKET, force, bytes + (bytes >> 1) + 65536, what);
}

function fill(fd: number, queue: number, data: Buffer, what: string): void {
  if (data.length === 0) return;
  if (queue === TCP_SEND_QUEUE) makeRoom(fd, SO_SNDBUF, SO_SNDBUFFORCE, data.length, what);
  else makeRoom(fd, SO_RCVBUF, SO_RCVBUFFORCE, data.length, what);
  setSocketOption(fd, SOL_TCP, TCP_REPAIR_QUEUE, queue, what);
  // A queue takes at most what fits in one skb chain per call: go on
  // with the rest, in smaller pieces if the kernel refuses a large one.
  // Never waiting: nothing would make room.
  let off = 0;
  let piece = data.length;
  while (off < data.length) {
    const n = Number(
      libc().send(fd, data.subarray(off), Math.min(piece, data.length - off), MSG_DONTWAIT),
    );
    if (n > 0) {
      off += n;
      continue;
    }
    if (piece > 1024) {
      piece >>= 1;
      continue;
    }
    throw sysError('send', errno(), what);
  }
}

/**
 * Make the new TCP socket `fd`, in repair mode, the connection `state`
 * describes: bound to its address, established with its peer, its queues
 * refilled. It stays in repair mode: the caller leaves it (see
 * {@link setTcpRepair}) when the connection may speak again.
 */
export function writeTcpState(fd: number, state: TcpState): void {
  const call = (ok: boolean, name: string, what: string) => {
    if (!ok) throw sysError(name, errno(), what);
  };
  // Repair mode binds even where a listening socket holds the port.
  call(libc().bind(fd, state.addr, state.addr.length) === 0, 'bind', 'binding a TCP connection');
  // Each queue starts where its first saved byte was.
  const startAt = (queue: number, next: number, queued: Buffer) => {
    setSocketOption(fd, SOL_TCP, TCP_REPAIR_QUEUE, queue, 'choosing a TCP queue');
    setSocketOption(
      fd,
      SOL_TCP,
      TCP_QUEUE_SEQ,
      (next - queued.length) | 0,
      'setting a sequence number',
    );
  };
  startAt(TCP_RECV_QUEUE, state.recvSeq, state.recvQueue);
  // The part never sent is sent after repair mode (sendUnsent).
  const sent = state.sendQueue.subarray(0, state.sendQueue.length - state.sendUnsent);
  startAt(TCP_SEND_QUEUE, state.sendSeq - state.sendUnsent, sent);
  // No handshake: established at once.
  call(
    libc().connect(fd, state.peer, state.peer.length) === 0,
    'connect',
    'connecting a TCP connection in repair mode',
  );
  const opts: [number, number][] = [];
  if (state.options & TCPI_OPT_SACK) opts.push([TCPOPT_SACK_PERMITTED, 0]);
  if (state.options & TCPI_OPT_WSCALE)
    opts.push([TCPOPT_WINDOW, state.sendWscale + (state.recvWscale << 16)]);
  if (state.options & TCPI_OPT_TIMESTAMPS) opts.push([TCPOPT_TIMESTAMP, 0]);
  opts.push([TCPOPT_MAXSEG, state.mss]);
  const b = Buffer.alloc(opts.length * 8);
  opts.forEach(([code, value], i) => {
    b.writeUInt32LE(code, i * 8);
    b.writeUInt32LE(value >>> 0, i * 8 + 4);
  });
  call(
    libc().setsockopt(fd, SOL_TCP, TCP_REPAIR_OPTIONS, b, b.length) === 0,
    'setsockopt',
    'setting the TCP options agreed at the handshake',
  );
  if (state.options & TCPI_OPT_TIMESTAMPS) {
    setSocketOption(
      fd,
      SOL_TCP,
      TCP_TIMESTAMP,
      state.timestamp | 0,
      'setting the TCP timestamp clock',
    );
  }
  fill(fd, TCP_RECV_QUEUE, state.recvQueue, 'refilling a TCP receive queue');
  // What was sent comes back as sent and not yet acknowledged: the kernel
  // retransmits what the peer has not acknowledged. Room for all of it.
  makeRoom(fd, SO_SNDBUF, SO_SNDBUFFORCE, state.sendQueue.length, 'refilling a TCP send queue');
  fill(fd, TCP_SEND_QUEUE, sent, 'refilling a TCP send queue');
  call(
    libc().setsockopt(fd, SOL_TCP, TCP_REPAIR_WINDOW, state.window, state.window.length) === 0,
    'setsockopt',
    'setting the TCP windows',
  );
}

const SEND_WAIT_MS = 5000;
const EAGAIN = 11;

/**
 * Once out of repair mode: queue `data`, the bytes the connection had
 * never sent, as the program's own send would (the send buffer was made
 * large enough at restore; should it be full, waits for room a while).
 */
export function sendUnsent(fd: number, data: Buffer): void {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + SEND_WAIT_MS;
  let off = 0;
  while (off < data.length) {
    const n = Number(libc().send(fd, data.subarray(off), data.length - off, MSG_DONTWAIT));
    if (n > 0) {
      off += n;
      continue;
    }
    const err = errno();
    if (err !== EAGAIN || Date.now() > deadline) {
      throw sysError(
        'send',
        err,
        `sending the ${data.length - off} bytes a TCP connection had not sent yet`,
      );
    }
    Atomics.wait(pause, 0, 0, 1);
  }
}
