/**
 * What a socket is: the protocol, state and addresses the kernel lists for
 * its inode in /proc/PID/net/* (the task's network namespace), for
 * messages and to tell the sockets ckpt restores (listening and unconnected
 * ones, see listen-socket.ts) from the others.
 */
import { readFileSync } from 'node:fs';

/** TCP states of /proc/net/tcp (include/net/tcp_states.h). */
const TCP_STATES: Record<number, string> = {
  1: 'established',
  2: 'syn-sent',
  3: 'syn-recv',
  4: 'fin-wait1',
  5: 'fin-wait2',
  6: 'time-wait',
  7: 'closed',
  8: 'close-wait',
  9: 'last-ack',
  10: 'listening',
  11: 'closing',
};
const UNIX_TYPES: Record<number, string> = { 1: 'stream', 2: 'datagram', 5: 'seqpacket' };
/** __SO_ACCEPTCON in /proc/net/unix's Flags: a listening socket. */
const UNIX_ACCEPTCON = 0x10000;

/** "0100007F:1F90" (IPv4) or 32 hex digits:port (IPv6), as /proc/net/tcp prints them. */
export function decodeInetAddress(hex: string): string {
  const [addr = '', port = ''] = hex.split(':');
  const p = Number.parseInt(port, 16);
  if (addr.length === 8) {
    // One 32-bit word in host (little-endian) order.
    const b = Buffer.alloc(4);
    b.writeUInt32LE(Number.parseInt(addr, 16) >>> 0);
    return `${[...b].join('.')}:${p}`;
  }
  const b = Buffer.alloc(16);
  for (let i = 0; i < 4; i++) {
    b.writeUInt32LE(Number.parseInt(addr.slice(8 * i, 8 * i + 8), 16) >>> 0, 4 * i);
  }
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return `[${compressIpv6(groups)}]:${p}`;
}

/** Join eight IPv6 groups, the longest run of two or more zeros as `::`. */
function compressIpv6(groups: readonly string[]): string {
  let best = { at: -1, len: 0 };
  for (let i = 0; i < groups.length; ) {
    let j = i;
    while (j < groups.length && groups[j] === '0') j++;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j === i ? i + 1 : j;
  }
  if (best.len < 2) return groups.join(':');
  const head = groups.slice(0, best.at).join(':');
  const tail = groups.slice(best.at + best.len).join(':');
  return `${head}::${tail}`;
}

/** Describe the socket with `inode` from the text of /proc/net/tcp{,6} or udp{,6}. */
export function findInetSocket(text: string, inode: number, proto: string): string | undefined {
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (Number(f[9]) !== inode) continue;
    const local = decodeInetAddress(f[1] ?? '');
    const remote = decodeInetAddress(f[2] ?? '');
    const state = Number.parseInt(f[3] ?? '', 16);
    if (proto === 'TCP' && state === 10) return `TCP socket listening on ${local}`;
    if (proto === 'TCP') return `TCP socket ${local} -> ${remote} (${TCP_STATES[state] ?? state})`;
    return remote.startsWith('0.0.0.0:0') || remote.startsWith('[::]:0')
      ? `${proto} socket on ${local}`
      : `${proto} socket ${local} -> ${remote}`;
  }
  return undefined;
}

/** Describe the socket with `inode` from the text of /proc/net/unix. */
export function findUnixSocket(text: string, inode: number): string | undefined {
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (Number(f[6]) !== inode) continue;
    const type = UNIX_TYPES[Number.parseInt(f[4] ?? '', 16)] ?? 'unix';
    const listening = (Number.parseInt(f[3] ?? '', 16) & UNIX_ACCEPTCON) !== 0;
    const path = f[7];
    const where = path ? ` at ${path}` : ' (unnamed)';
    return `unix ${type} socket${listening ? ' listening' : ''}${where}`;
  }
  return undefined;
}

const INET_TABLES: readonly [string, string][] = [
  ['tcp', 'TCP'],
  ['tcp6', 'TCP'],
  ['udp', 'UDP'],
  ['udp6', 'UDP'],
  ['raw', 'raw IP'],
  ['raw6', 'raw IP'],
  // Datagram sockets of IPPROTO_ICMP (unprivileged ping): not restored yet.
  ['icmp', 'ICMP datagram'],
  ['icmp6', 'ICMP datagram'],
];

/** The text of /proc/PID/net/TABLE (the task's network namespace), '' if it cannot be read. */
export function readNet(pid: number, table: string): string {
  try {
    return readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
  } catch {
    return '';
  }
}

/**
 * A few words on the socket `inode` held by `pid`: "TCP socket listening
 * on 127.0.0.1:8080", "unix stream socket (unnamed)", or just "socket"
 * when no table lists it (netlink, packet, …).
 */
export function describeSocket(pid: number, inode: number): string {
  const unix = findUnixSocket(readNet(pid, 'unix'), inode);
  if (unix) return unix;
  for (const [table, proto] of INET_TABLES) {
    const found = findInetSocket(readNet(pid, table), inode, proto);
    if (found) return found;
  }
  for (const table of ['netlink', 'packet']) {
    const text = readNet(pid, table);
    const col = table === 'netlink' ? 9 : 8;
    if (text.split('\n').some((l) => Number(l.trim().split(/\s+/)[col]) === inode)) {
      return `${table} socket`;
    }
  }
  return 'socket';
}

/** A socket's line in /proc/PID/net/*, as far as restoring it goes. */
export type SocketEntry =
  | {
      proto: 'TCP' | 'UDP';
      /** TCP state (10: listening); 7 (closed) for an unconnected UDP socket. */
      state: number;
      /** Bytes queued to be read; for a listening TCP socket, connections to accept. */
      rxQueue: number;
      connected: boolean;
    }
  | {
      proto: 'unix';
      type: number;
      listening: boolean;
      /** SS_UNCONNECTED 1, SS_CONNECTING 2, SS_CONNECTED 3 (a datagram socket may be connected and show 1). */
      state: number;
      path: string;
    };

/** /proc/PID/net's line for socket `inode` (TCP, UDP or unix), if any lists it. */
export function socketEntry(pid: number, inode: number): SocketEntry | undefined {
  for (const line of readNet(pid, 'unix').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (Number(f[6]) !== inode) continue;
    return {
      proto: 'unix',
      type: Number.parseInt(f[4] ?? '', 16),
      listening: (Number.parseInt(f[3] ?? '', 16) & UNIX_ACCEPTCON) !== 0,
      state: Number.parseInt(f[5] ?? '', 16),
      path: f[7] ?? '',
    };
  }
  for (const [table, proto] of INET_TABLES) {
    if (proto !== 'TCP' && proto !== 'UDP') continue;
    for (const line of readNet(pid, table).split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (Number(f[9]) !== inode) continue;
      const remote = decodeInetAddress(f[2] ?? '');
      return {
        proto,
        state: Number.parseInt(f[3] ?? '', 16),
        rxQueue: Number.parseInt((f[4] ?? '').split(':')[1] ?? '0', 16),
        connected: !(remote.startsWith('0.0.0.0:0') || remote.startsWith('[::]:0')),
      };
    }
  }
  return undefined;
}

/** "127.0.0.1:8080" or "[::1]:8080" for a raw sockaddr_in or sockaddr_in6, as the tables print addresses. */
export function sockaddrText(addr: Buffer): string {
  const port = addr.readUInt16BE(2);
  if (addr.readUInt16LE(0) === 2) return `${[...addr.subarray(4, 8)].join('.')}:${port}`;
  const groups: string[] = [];
  for (let i = 8; i < 24; i += 2) groups.push(addr.readUInt16BE(i).toString(16));
  return `[${compressIpv6(groups)}]:${port}`;
}

/**
 * The state of the TCP socket (seen from `pid`'s network namespace) with
 * local address `local` and peer `peer` (as {@link sockaddrText} prints
 * them), if one exists: a connection still open there.
 */
export function tcpConnectionState(pid: number, local: string, peer: string): string | undefined {
  for (const table of ['tcp', 'tcp6']) {
    for (const line of readNet(pid, table).split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 4) continue;
      if (decodeInetAddress(f[1]!) === local && decodeInetAddress(f[2]!) === peer) {
        const state = Number.parseInt(f[3]!, 16);
        return TCP_STATES[state] ?? String(state);
      }
    }
  }
  return undefined;
}
