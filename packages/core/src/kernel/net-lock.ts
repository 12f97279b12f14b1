/**
 * The network lock: while a checkpointed TCP connection has no socket (from
 * the `--kill` of its process until restart rebuilds it), the peer's
 * packets for it are dropped, so that the kernel does not answer them with
 * a reset that would end the connection. The peer retransmits them, and
 * the restored socket gets them. (CRIU does the same with netfilter.)
 *
 * The lock is an nftables table `inet ckpt` with two sets of connections
 * (peer address . peer port . local address . local port), one per IP
 * version, and an input rule dropping packets whose addresses are in one.
 * A checkpoint adds its connections just before it kills the tree; restart
 * removes them once the sockets exist again, and the table once both sets
 * are empty (a checkpoint locking at that very moment on the same machine
 * could lose its lock: the table is recreated by the next lock). It goes
 * through the `nft` program (package nftables); without it, connections
 * are not held and ckpt says so.
 */
import { spawnSync } from 'node:child_process';

const TABLE = 'inet ckpt';
const NFT_TIMEOUT_MS = 10_000;

/** One end pair of a TCP connection, as its raw sockaddrs give it. */
export interface LockedConnection {
  /** Own address (raw sockaddr_in / sockaddr_in6). */
  addr: Buffer;
  /** The peer's address. */
  peer: Buffer;
}

/** An address as nftables reads it, and its IP version (an IPv4-mapped IPv6 address is IPv4 on the wire). */
function endpoint(sa: Buffer): { version: 4 | 6; text: string } {
  const port = sa.readUInt16BE(2);
  if (sa.readUInt16LE(0) === 2)
    return { version: 4, text: `${[...sa.subarray(4, 8)].join('.')} . ${port}` };
  const ip = sa.subarray(8, 24);
  const mapped = ip.subarray(0, 10).every((b) => b === 0) && ip.readUInt16BE(10) === 0xffff;
  if (mapped) return { version: 4, text: `${[...ip.subarray(12, 16)].join('.')} . ${port}` };
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(ip.readUInt16BE(i).toString(16));
  return { version: 6, text: `${groups.join(':')} . ${port}` };
}

/** The set element of connection `c`: packets from the peer to us. */
function element(c: LockedConnection): { set: string; text: string } {
  const peer = endpoint(c.peer);
  const own = endpoint(c.addr);
  return { set: `tcp${own.version}`, text: `${peer.text} . ${own.text}` };
}

function nftError(e: Error): string {
  return (e as NodeJS.ErrnoException).code === 'ENOENT'
    ? 'nft not found (install the nftables package)'
    : e.message;
}

function nft(script: string): { ok: boolean; message: string } {
  const r = spawnSync('nft', ['-f', '-'], {
    input: script,
    encoding: 'utf8',
    timeout: NFT_TIMEOUT_MS,
  });
  if (r.error) return { ok: false, message: nftError(r.error) };
  return { ok: r.status === 0, message: r.stderr.trim().split('\n')[0] ?? '' };
}

/** The table, sets and rules, made if missing (every statement is idempotent). */
const SETUP = `add table ${TABLE}
add set ${TABLE} tcp4 { type ipv4_addr . inet_service . ipv4_addr . inet_service; }
add set ${TABLE} tcp6 { type ipv6_addr . inet_service . ipv6_addr . inet_service; }
add chain ${TABLE} input { type filter hook input priority filter; policy accept; }
flush chain ${TABLE} input
add rule ${TABLE} input ip saddr . tcp sport . ip daddr . tcp dport @tcp4 drop
add rule ${TABLE} input ip6 saddr . tcp sport . ip6 daddr . tcp dport @tcp6 drop
`;

function elementLines(verb: 'add' | 'delete', conns: LockedConnection[]): string {
  return conns
    .map((c) => {
      const e = element(c);
      return `${verb} element ${TABLE} ${e.set} { ${e.text} }\n`;
    })
    .join('');
}

/**
 * Drop the peers' packets for `conns` from now on. Returns undefined on
 * success, else why not (the connections are then not held back).
 */
export function lockConnections(conns: LockedConnection[]): string | undefined {
  if (conns.length === 0) return undefined;
  const r = nft(SETUP + elementLines('add', conns));
  return r.ok ? undefined : r.message;
}

/**
 * Let the peers' packets for `conns` through again, if this machine holds
 * them; the table goes when it holds nothing more. Returns undefined on
 * success, else why not.
 */
export function unlockConnections(conns: LockedConnection[]): string | undefined {
  if (conns.length === 0) return undefined;
  // No nft, or no table: nothing is locked here (restart on another machine).
  if (!listTable()) return undefined;
  // Added first, an element absent here deletes without error.
  const r = nft(elementLines('add', conns) + elementLines('delete', conns));
  if (!r.ok) return r.message;
  if (lockedConnectionCount() === 0) nft(`delete table ${TABLE}\n`);
  return undefined;
}

/** How many connections the table holds on this machine (0 if there is none). */
export function lockedConnectionCount(): number {
  let n = 0;
  for (const item of listTable() ?? []) n += item.set?.elem?.length ?? 0;
  return n;
}

/** The table as `nft -j` lists it (its items), or undefined if there is none (or no nft). */
function listTable(): { set?: { elem?: unknown[] } }[] | undefined {
  const r = spawnSync('nft', ['-j', 'list', 'table', ...TABLE.split(' ')], {
    encoding: 'utf8',
    timeout: NFT_TIMEOUT_MS,
  });
  if (r.error || r.status !== 0) return undefined;
  return JSON.parse(r.stdout).nftables ?? [];
}

/**
 * `ckpt check`: can this machine hold TCP connections back (nft there and
 * nf_tables usable)? Throws why not.
 */
export function probeNetLock(): string {
  const r = spawnSync('nft', ['list', 'tables'], { encoding: 'utf8', timeout: NFT_TIMEOUT_MS });
  if (r.error) throw new Error(nftError(r.error));
  if (r.status !== 0) throw new Error(`nft list tables: ${r.stderr.trim().split('\n')[0]}`);
  return 'available (the peers of TCP connections are held back between checkpoint --kill and restart)';
}
