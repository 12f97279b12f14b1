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

/** Column of the inode in /proc/net/TABLE: unix 6, packet 8, the others 9. */
function inodeColumn(table: string): number {
  return table === 'unix' ? 6 : table === 'packet' ? 8 : 9;
}

/** The lines of a /proc/net table's text, split into fields, by inode (the first line of each). */
function parseTable(text: string, column: number): Map<number, string[]> {
  const byInode = new Map<number, string[]>();
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    const inode = Number(f[column]);
    if (!Number.isNaN(inode) && !byInode.has(inode)) byInode.set(inode, f);
  }
  return byInode;
}

/** Describe an inet socket from its fields in /proc/net/tcp{,6}, udp{,6}, ... */
function describeInet(f: readonly string[], proto: string): string {
  const local = decodeInetAddress(f[1] ?? '');
  const remote = decodeInetAddress(f[2] ?? '');
  const state = Number.parseInt(f[3] ?? '', 16);
  if (proto === 'TCP' && state === 10) return `TCP socket listening on ${local}`;
  if (proto === 'TCP') return `TCP socket ${local} -> ${remote} (${TCP_STATES[state] ?? state})`;
  return isUnconnected(remote)
    ? `${proto} socket on ${local}`
    : `${proto} socket ${local} -> ${remote}`;
}

/** Describe a unix socket from its fields in /proc/net/unix. */
function describeUnix(f: readonly string[]): string {
  const type = UNIX_TYPES[Number.parseInt(f[4] ?? '', 16)] ?? 'unix';
  const listening = (Number.parseInt(f[3] ?? '', 16) & UNIX_ACCEPTCON) !== 0;
  const path = f[7];
  const where = path ? ` at ${path}` : ' (unnamed)';
  return `unix ${type} socket${listening ? ' listening' : ''}${where}`;
}

/** A remote address that names no peer. */
function isUnconnected(remote: string): boolean {
  return remote.startsWith('0.0.0.0:0') || remote.startsWith('[::]:0');
}

/** Describe the socket with `inode` from the text of /proc/net/tcp{,6} or udp{,6}. */
export function findInetSocket(text: string, inode: number, proto: string): string | undefined {
  const f = parseTable(text, 9).get(inode);
  return f && describeInet(f, proto);
}

/** Describe the socket with `inode` from the text of /proc/net/unix. */
export function findUnixSocket(text: string, inode: number): string | undefined {
  const f = parseTable(text, 6).get(inode);
  return f && describeUnix(f);
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

/**
 * The socket tables of the network namespace of `pid` (/proc/PID/net/unix,
 * tcp, tcp6, udp, ...), each read and indexed by inode when first asked:
 * one object answers about every socket of a checkpoint in that namespace
 * (see socket-tables.ts), which reading the tables for each socket made
 * take time in the square of their number.
 */
export class SocketTables {
  private readonly tables = new Map<string, Map<number, string[]>>();

  constructor(readonly pid: number) {}

  /** The fields of socket `inode`'s line in /proc/PID/net/TABLE, if it lists it. */
  private line(table: string, inode: number): string[] | undefined {
    let byInode = this.tables.get(table);
    if (!byInode) {
      byInode = parseTable(readNet(this.pid, table), inodeColumn(table));
      this.tables.set(table, byInode);
    }
    return byInode.get(inode);
  }

  /**
   * A few words on the socket `inode`: "TCP socket listening on
   * 127.0.0.1:8080", "unix stream socket (unnamed)", or just "socket"
   * when no table lists it (netlink, packet, …).
   */
  describe(inode: number): string {
    const unix = this.line('unix', inode);
    if (unix) return describeUnix(unix);
    for (const [table, proto] of INET_TABLES) {
      const f = this.line(table, inode);
      if (f) return describeInet(f, proto);
    }
    for (const table of ['netlink', 'packet']) {
      if (this.line(table, inode)) return `${table} socket`;
    }
    return 'socket';
  }

  /** The line for socket `inode` (TCP, UDP or unix), if any table lists it. */
  entry(inode: number): SocketEntry | undefined {
    const u = this.line('unix', inode);
    if (u) {
      return {
        proto: 'unix',
        type: Number.parseInt(u[4] ?? '', 16),
        listening: (Number.parseInt(u[3] ?? '', 16) & UNIX_ACCEPTCON) !== 0,
        state: Number.parseInt(u[5] ?? '', 16),
        path: u[7] ?? '',
      };
    }
    for (const [table, proto] of INET_TABLES) {
      if (proto !== 'TCP' && proto !== 'UDP') continue;
      const f = this.line(table, inode);
      if (!f) continue;
      return {
        proto,
        state: Number.parseInt(f[3] ?? '', 16),
        rxQueue: Number.parseInt((f[4] ?? '').split(':')[1] ?? '0', 16),
        connected: !isUnconnected(decodeInetAddress(f[2] ?? '')),
      };
    }
    return undefined;
  }
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
 * Every TCP socket with a peer (and listener) of `pid`'s network namespace,
 * by "local peer" (as {@link sockaddrText} prints them): its state in
 * words. Read once, it answers about every connection a restart makes.
 */
export function tcpConnections(pid: number): Map<string, string> {
  const out = new Map<string, string>();
  for (const table of ['tcp', 'tcp6']) {
    for (const line of readNet(pid, table).split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 4) continue;
      const key = `${decodeInetAddress(f[1]!)} ${decodeInetAddress(f[2]!)}`;
      if (out.has(key)) continue;
      const state = Number.parseInt(f[3]!, 16);
      out.set(key, TCP_STATES[state] ?? String(state));
    }
  }
  return out;
}
