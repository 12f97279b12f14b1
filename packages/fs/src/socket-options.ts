/**
 * The socket options a program set on a socket (a bound UDP or
 * listening TCP socket, a TCP connection, a netlink or unix socket): what differs from a new socket
 * of the same family, type and protocol is saved, and set again on the new
 * one (before it is bound).
 * dnsmasq, for one, drops every query whose IP_PKTINFO it does not get.
 *
 * Most are ints; the few that are not (see NOT_INT) are kept as the bytes
 * getsockopt gives, which setsockopt takes back as they are: a recv loop
 * with SO_RCVTIMEO (struct timeval) blocked for good after restart
 * without it.
 *
 * The buffer sizes read back twice what was set (the kernel's
 * bookkeeping): they are set again through SO_RCVBUFFORCE/SO_SNDBUFFORCE
 * with half, so the size is the same and fixed as it was.
 */
import { setSocketOption, socketOption, socketOptionBytes, withNewSocket } from '@ckpt/core';

const SOL_SOCKET = 1;
const SOL_IP = 0;
const SOL_IPV6 = 41;
const SOL_TCP = 6;
const SOL_NETLINK = 270;
const AF_INET = 2;
const AF_INET6 = 10;
const AF_NETLINK = 16;
const IPPROTO_TCP = 6;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const SO_SNDBUFFORCE = 32;
const SO_RCVBUFFORCE = 33;

/** Options kept, by level (SO_REUSEADDR, SO_REUSEPORT and IPV6_V6ONLY are saved on their own). */
const SOCKET_OPTIONS = [
  // SO_SNDBUF, SO_RCVBUF, SO_KEEPALIVE, SO_OOBINLINE, SO_BROADCAST, SO_PRIORITY,
  // SO_RCVLOWAT, SO_TIMESTAMP, SO_TIMESTAMPNS, SO_MARK, SO_RXQ_OVFL, SO_BUSY_POLL,
  // SO_PASSCRED, SO_PASSSEC (a unix or netlink socket's sender credentials),
  // SO_LINGER, SO_RCVTIMEO, SO_SNDTIMEO (not ints: see NOT_INT)
  [SOL_SOCKET, [7, 8, 9, 10, 6, 12, 18, 29, 35, 36, 40, 46, 16, 34, 13, 20, 21]],
] as const;
const IPV4_OPTIONS = [
  // IP_TOS, IP_TTL, IP_RECVOPTS, IP_RETOPTS, IP_PKTINFO, IP_MTU_DISCOVER, IP_RECVERR,
  // IP_RECVTTL, IP_RECVTOS, IP_FREEBIND, IP_PASSSEC, IP_TRANSPARENT,
  // IP_RECVORIGDSTADDR, IP_MINTTL, IP_BIND_ADDRESS_NO_PORT, IP_MULTICAST_TTL,
  // IP_MULTICAST_LOOP, IP_MULTICAST_ALL
  [SOL_IP, [1, 2, 6, 7, 8, 10, 11, 12, 13, 15, 18, 19, 20, 21, 24, 33, 34, 49]],
] as const;
const IPV6_OPTIONS = [
  // IPV6_UNICAST_HOPS, IPV6_MULTICAST_HOPS, IPV6_MULTICAST_LOOP, IPV6_MTU_DISCOVER,
  // IPV6_RECVERR, IPV6_MULTICAST_ALL, IPV6_RECVPKTINFO, IPV6_RECVHOPLIMIT,
  // IPV6_RECVHOPOPTS, IPV6_RECVRTHDR, IPV6_RECVDSTOPTS, IPV6_RECVPATHMTU,
  // IPV6_RECVTCLASS, IPV6_TCLASS, IPV6_RECVORIGDSTADDR, IPV6_TRANSPARENT, IPV6_FREEBIND
  [SOL_IPV6, [16, 18, 19, 23, 25, 29, 49, 51, 53, 56, 58, 60, 66, 67, 74, 75, 78]],
] as const;
const TCP_OPTIONS = [
  // TCP_NODELAY, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_DEFER_ACCEPT,
  // TCP_USER_TIMEOUT, TCP_FASTOPEN, TCP_NOTSENT_LOWAT, TCP_CONGESTION (a name:
  // see NOT_INT; a listener's connections inherit it)
  [SOL_TCP, [1, 4, 5, 6, 9, 18, 23, 25, 13]],
] as const;

const NETLINK_OPTIONS = [
  // NETLINK_PKTINFO, NETLINK_BROADCAST_ERROR, NETLINK_NO_ENOBUFS,
  // NETLINK_LISTEN_ALL_NSID, NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK
  [SOL_NETLINK, [3, 4, 5, 8, 10, 11, 12]],
] as const;

/** One saved option: an int in `value`, or (`raw` not empty) one that is not. */
export interface SocketOptionValue {
  level: number;
  name: number;
  value: number;
  raw: Buffer;
}

/**
 * The options that are not an int, kept as getsockopt's bytes: SO_LINGER
 * (struct linger), SO_RCVTIMEO and SO_SNDTIMEO (struct timeval, the size
 * of this machine's), TCP_CONGESTION (the algorithm's name, NUL-padded).
 */
const NOT_INT = new Set([
  `${SOL_SOCKET}/13`,
  `${SOL_SOCKET}/20`,
  `${SOL_SOCKET}/21`,
  `${SOL_TCP}/13`,
]);
/** Room for any of NOT_INT (a timeval is 16 bytes, a congestion name at most 16). */
const NOT_INT_SIZE = 64;

/** Multicast options (IP_MULTICAST_TTL, _LOOP, _ALL; IPV6_MULTICAST_HOPS, _LOOP, _ALL): not a TCP socket's. */
const MULTICAST = new Set([
  `${SOL_IP}/33`,
  `${SOL_IP}/34`,
  `${SOL_IP}/49`,
  `${SOL_IPV6}/18`,
  `${SOL_IPV6}/19`,
  `${SOL_IPV6}/29`,
]);

/** The option list worth comparing for a socket of `family` and `protocol`. */
function candidates(family: number, protocol: number): (readonly [number, readonly number[]])[] {
  const all: (readonly [number, readonly number[]])[] = [
    ...SOCKET_OPTIONS,
    ...(family === AF_INET ? IPV4_OPTIONS : []),
    // A dual-stack socket takes some IPv4 options too.
    ...(family === AF_INET6 ? [...IPV6_OPTIONS, ...IPV4_OPTIONS] : []),
    ...(family === AF_NETLINK ? NETLINK_OPTIONS : []),
    ...(protocol === IPPROTO_TCP ? TCP_OPTIONS : []),
  ];
  if (protocol !== IPPROTO_TCP) return all;
  return all.map(
    ([level, names]) => [level, names.filter((n) => !MULTICAST.has(`${level}/${n}`))] as const,
  );
}

const NO_BYTES = Buffer.alloc(0);

/** An option's value, or undefined where the socket does not have it. */
function readOption(
  fd: number,
  level: number,
  name: number,
): { value: number; raw: Buffer } | undefined {
  try {
    if (NOT_INT.has(`${level}/${name}`)) {
      return {
        value: 0,
        raw: Buffer.from(socketOptionBytes(fd, level, name, undefined, NOT_INT_SIZE)),
      };
    }
    return { value: socketOption(fd, level, name), raw: NO_BYTES };
  } catch {
    return undefined;
  }
}

/**
 * The options of socket `fd` (ckpt's copy) that differ from those of a new
 * socket of the same `family`, `type` and `protocol`. Without `buffers`,
 * not the buffer sizes (a connection's grow by themselves: setting them
 * would fix them).
 */
export function changedSocketOptions(
  fd: number,
  family: number,
  type: number,
  protocol: number,
  { buffers = true }: { buffers?: boolean } = {},
): SocketOptionValue[] {
  const out: SocketOptionValue[] = [];
  withNewSocket(family, type, protocol, (fresh) => {
    for (const [level, names] of candidates(family, protocol)) {
      for (const name of names) {
        if (!buffers && level === SOL_SOCKET && (name === SO_RCVBUF || name === SO_SNDBUF))
          continue;
        const mine = readOption(fd, level, name);
        const theirs = readOption(fresh, level, name);
        if (
          mine !== undefined &&
          (theirs === undefined || mine.value !== theirs.value || !mine.raw.equals(theirs.raw))
        ) {
          out.push({ level, name, ...mine });
        }
      }
    }
  });
  return out;
}

/** The setsockopt (level, name, value) that gives a new socket saved option `o`. */
export function settingFor(o: SocketOptionValue): SocketOptionValue {
  if (o.level === SOL_SOCKET && (o.name === SO_RCVBUF || o.name === SO_SNDBUF)) {
    return {
      level: SOL_SOCKET,
      name: o.name === SO_RCVBUF ? SO_RCVBUFFORCE : SO_SNDBUFFORCE,
      value: o.value >> 1,
      raw: NO_BYTES,
    };
  }
  return o;
}

/** The bytes setsockopt takes to set option `o`: its raw bytes, or its int. */
export function optionBytes(o: SocketOptionValue): Buffer {
  if (o.raw.length > 0) return o.raw;
  const b = Buffer.alloc(4);
  b.writeInt32LE(o.value);
  return b;
}

/**
 * Set the saved `options` (record values) on ckpt's copy `fd` of a
 * restored socket, each as `settingFor` says; a failure names the option.
 */
export function setSavedOptions(
  fd: number,
  options: readonly SocketOptionValue[],
  what: string,
): void {
  for (const o of options.map(settingFor)) {
    setSocketOption(fd, o.level, o.name, optionBytes(o), `${what}: option ${o.level}/${o.name}`);
  }
}
