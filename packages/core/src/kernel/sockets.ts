/** Asking one of ckpt's own socket fds (a copy of a task's) what it is. */
import { closeSync } from 'node:fs';
import { addressOf, errno, libc, sysError } from './libc.js';

const SOCKADDR_MAX = 128;

/** The socket's own address (getsockname), as the raw sockaddr bytes. */
export function socketName(fd: number): Buffer {
  const addr = Buffer.alloc(SOCKADDR_MAX);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(SOCKADDR_MAX);
  if (libc().getsockname(fd, addr, len) < 0)
    throw sysError('getsockname', errno(), 'reading a socket address');
  return addr.subarray(0, Math.min(len.readUInt32LE(0), SOCKADDR_MAX));
}

const ENOTCONN = 107;

/** The socket's peer address (getpeername), or undefined when it has none (ENOTCONN). */
export function socketPeer(fd: number): Buffer | undefined {
  const addr = Buffer.alloc(SOCKADDR_MAX);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(SOCKADDR_MAX);
  if (libc().getpeername(fd, addr, len) === 0) {
    return addr.subarray(0, Math.min(len.readUInt32LE(0), SOCKADDR_MAX));
  }
  const err = errno();
  if (err === ENOTCONN) return undefined;
  throw sysError('getpeername', err, 'reading a socket peer');
}

/** An int socket option (getsockopt); `what` names it in an error. */
export function socketOption(
  fd: number,
  level: number,
  name: number,
  what = `reading socket option ${level}/${name}`,
): number {
  const v = Buffer.alloc(4);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(4);
  if (libc().getsockopt(fd, level, name, v, len) < 0) {
    throw sysError('getsockopt', errno(), what);
  }
  return v.readInt32LE(0);
}

/**
 * A socket option of any size (getsockopt), as the kernel filled it; a
 * larger buffer is used when the kernel says `size` bytes were too few.
 */
export function socketOptionBytes(
  fd: number,
  level: number,
  name: number,
  what = `reading socket option ${level}/${name}`,
  size = 256,
): Buffer {
  const v = Buffer.alloc(size);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(size);
  if (libc().getsockopt(fd, level, name, v, len) < 0) {
    throw sysError('getsockopt', errno(), what);
  }
  const needed = len.readUInt32LE(0);
  if (needed > size) return socketOptionBytes(fd, level, name, what, needed);
  return v.subarray(0, needed);
}

/** Run `fn` on a new socket of ckpt's (its defaults to compare with), closed after. */
export function withNewSocket<T>(
  family: number,
  type: number,
  protocol: number,
  fn: (fd: number) => T,
): T {
  const fd = libc().socket(family, type, protocol);
  if (fd < 0) throw sysError('socket', errno(), `making a socket (family ${family}, type ${type})`);
  try {
    return fn(fd);
  } finally {
    closeSync(fd);
  }
}

/** connect(2) socket `fd` to `addr`: 0, or the errno it failed with. */
export function connectSocket(fd: number, addr: Buffer): number {
  return libc().connect(fd, addr, addr.length) === 0 ? 0 : errno();
}

/** bind(2) socket `fd` to `addr`: 0, or the errno it failed with. */
export function bindSocket(fd: number, addr: Buffer): number {
  return libc().bind(fd, addr, addr.length) === 0 ? 0 : errno();
}

/**
 * Set a socket option (setsockopt): an int, or the bytes of one that is not
 * (a struct linger, a name); `what` names it in an error.
 */
export function setSocketOption(
  fd: number,
  level: number,
  name: number,
  value: number | Buffer,
  what = `setting socket option ${level}/${name}`,
): void {
  let v: Buffer;
  if (typeof value === 'number') {
    v = Buffer.alloc(4);
    v.writeInt32LE(value);
  } else v = value;
  if (libc().setsockopt(fd, level, name, v, v.length) < 0) {
    throw sysError('setsockopt', errno(), what);
  }
}

const MSG_PEEK = 2;
const MSG_DONTWAIT = 0x40;

const MSG_CTRUNC = 8;
const MSG_CMSG_CLOEXEC = 0x40000000;
const SO_PEEK_OFF = 42;
const SCM_RIGHTS = 1;
/** struct msghdr and struct iovec on 64-bit Linux. */
const MSGHDR_SIZE = 56;
const IOVEC_SIZE = 16;

/**
 * Copy the bytes waiting in unix socket `fd`'s receive queue into `into`
 * (all of them: SO_PEEK_OFF carries each peek on past the boundaries where
 * a read stops), leaving them queued, and count the file descriptors sent
 * with them (SCM_RIGHTS) that wait too. Peeking installs those in ckpt:
 * they are closed at once.
 */
export function peekUnixQueue(fd: number, into: Buffer): { bytes: number; fdsInFlight: number } {
  const before = getIntOption(fd, SOL_SOCKET_LEVEL, SO_PEEK_OFF);
  setSocketOption(fd, SOL_SOCKET_LEVEL, SO_PEEK_OFF, 0, 'peeking on from the last peek');
  const control = Buffer.alloc(4096);
  const iov = Buffer.alloc(IOVEC_SIZE);
  const msg = Buffer.alloc(MSGHDR_SIZE);
  let got = 0;
  let fdsInFlight = 0;
  try {
    while (got < into.length) {
      iov.writeBigUInt64LE(addressOf(into) + BigInt(got), 0);
      iov.writeBigUInt64LE(BigInt(into.length - got), 8);
      msg.fill(0);
      msg.writeBigUInt64LE(addressOf(iov), 16);
      msg.writeBigUInt64LE(1n, 24);
      msg.writeBigUInt64LE(addressOf(control), 32);
      msg.writeBigUInt64LE(BigInt(control.length), 40);
      const n = Number(libc().recvmsg(fd, msg, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC));
      if (n < 0) throw sysError('recvmsg', errno(), 'peeking at a socket queue');
      if (n === 0) break;
      got += n;
      if ((msg.readInt32LE(48) & MSG_CTRUNC) !== 0) fdsInFlight++;
      // struct cmsghdr: len (8), level (4), type (4), then the data.
      const controlLen = Number(msg.readBigUInt64LE(40));
      for (let at = 0; at + 16 <= controlLen; ) {
        const len = Number(control.readBigUInt64LE(at));
        if (len < 16) break;
        if (
          control.readInt32LE(at + 8) === SOL_SOCKET_LEVEL &&
          control.readInt32LE(at + 12) === SCM_RIGHTS
        ) {
          for (let f = at + 16; f + 4 <= at + len; f += 4) {
            fdsInFlight++;
            closeSync(control.readInt32LE(f));
          }
        }
        at += (len + 7) & ~7;
      }
    }
  } finally {
    setSocketOption(fd, SOL_SOCKET_LEVEL, SO_PEEK_OFF, before, 'restoring SO_PEEK_OFF');
  }
  return { bytes: got, fdsInFlight };
}

/** An int socket option, or -1 when the socket has none such. */
function getIntOption(fd: number, level: number, name: number): number {
  try {
    return socketOption(fd, level, name);
  } catch {
    return -1;
  }
}

/** Copy what waits in socket `fd`'s receive queue into `into`, leaving it queued; the bytes copied. */
export function peekSocket(fd: number, into: Buffer): number {
  const n = Number(libc().recv(fd, into, into.length, MSG_PEEK | MSG_DONTWAIT));
  if (n < 0) throw sysError('recv', errno(), 'peeking at a socket queue');
  return n;
}

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SIOCGIFFLAGS = 0x8913;
const SIOCSIFFLAGS = 0x8914;
/** sizeof(struct ifreq): the name (IFNAMSIZ 16), then a union (ifr_flags a short at 16). */
const IFREQ_SIZE = 40;
const IFNAMSIZ = 16;

function ifreq(name: string): Buffer {
  const req = Buffer.alloc(IFREQ_SIZE);
  req.write(name.slice(0, IFNAMSIZ - 1), 0, 'latin1');
  return req;
}

const IFF_UP = 0x1;

/** The flags of network interface `name` in the calling thread's network namespace. */
function interfaceFlags(name: string): number {
  return withNewSocket(AF_INET, SOCK_DGRAM, 0, (fd) => {
    const req = ifreq(name);
    if (libc().ioctlBuf(fd, SIOCGIFFLAGS, req) < 0) {
      throw sysError('ioctl', errno(), `reading the flags of interface ${name}`);
    }
    return req.readUInt16LE(IFNAMSIZ);
  });
}

/**
 * Whether network interface `name` is up (IFF_UP), in the calling thread's
 * network namespace (run it inside `inNamespace` for a task's).
 */
export function interfaceIsUp(name: string): boolean {
  return (interfaceFlags(name) & IFF_UP) !== 0;
}

/** Bring network interface `name` up, in the calling thread's network namespace. */
export function bringInterfaceUp(name: string): void {
  const flags = interfaceFlags(name) | IFF_UP;
  withNewSocket(AF_INET, SOCK_DGRAM, 0, (fd) => {
    const req = ifreq(name);
    req.writeUInt16LE(flags, IFNAMSIZ);
    if (libc().ioctlBuf(fd, SIOCSIFFLAGS, req) < 0) {
      throw sysError('ioctl', errno(), `bringing interface ${name} up`);
    }
  });
}

const SHUT_RD = 0;

/**
 * No more reading on socket `fd` (shutdown SHUT_RD): reads return end of
 * file once what is queued is read, as after the peer's FIN.
 */
export function shutdownReading(fd: number): void {
  if (libc().shutdown(fd, SHUT_RD) < 0)
    throw sysError('shutdown', errno(), 'ending reading on a socket');
}

const SOL_SOCKET_LEVEL = 1;
const SO_BINDTODEVICE = 25;
/** SO_ATTACH_FILTER to set; SO_GET_FILTER (the same number) to read. */
const SO_ATTACH_FILTER = 26;
/** sizeof(struct sock_filter): code u16, jt u8, jf u8, k u32. */
const SOCK_FILTER_SIZE = 8;
const EACCES = 13;

/** The interface socket `fd` is bound to (SO_BINDTODEVICE), '' if none. */
export function boundDevice(fd: number): string {
  const name = socketOptionBytes(
    fd,
    SOL_SOCKET_LEVEL,
    SO_BINDTODEVICE,
    'reading SO_BINDTODEVICE',
    16,
  );
  const nul = name.indexOf(0);
  return name.toString('latin1', 0, nul < 0 ? name.length : nul);
}

/** Bind socket `fd` to interface `name` (SO_BINDTODEVICE). */
export function bindToDevice(fd: number, name: string): void {
  const v = Buffer.from(`${name}\0`, 'latin1');
  if (libc().setsockopt(fd, SOL_SOCKET_LEVEL, SO_BINDTODEVICE, v, v.length) < 0) {
    throw sysError('setsockopt', errno(), `binding a socket to interface ${name}`);
  }
}

/**
 * The classic BPF filter attached to socket `fd` (SO_GET_FILTER: its
 * struct sock_filter instructions), an empty buffer if none, or 'ebpf'
 * for an eBPF program (SO_ATTACH_BPF), which cannot be read back.
 */
export function socketFilter(fd: number): Buffer | 'ebpf' {
  // The kernel counts this option's length in instructions, not bytes.
  const len = Buffer.alloc(4);
  if (libc().getsockopt(fd, SOL_SOCKET_LEVEL, SO_ATTACH_FILTER, null, len) < 0) {
    if (errno() === EACCES) return 'ebpf';
    throw sysError('getsockopt', errno(), 'reading a socket filter');
  }
  const count = len.readUInt32LE(0);
  if (count === 0) return Buffer.alloc(0);
  const prog = Buffer.alloc(count * SOCK_FILTER_SIZE);
  if (libc().getsockopt(fd, SOL_SOCKET_LEVEL, SO_ATTACH_FILTER, prog, len) < 0) {
    throw sysError('getsockopt', errno(), 'reading a socket filter');
  }
  return prog;
}

/** Attach the classic BPF filter `prog` (struct sock_filter instructions) to socket `fd`. */
export function attachSocketFilter(fd: number, prog: Buffer): void {
  // struct sock_fprog: the instruction count (u16), then a pointer.
  const fprog = Buffer.alloc(16);
  fprog.writeUInt16LE(prog.length / SOCK_FILTER_SIZE, 0);
  fprog.writeBigUInt64LE(addressOf(prog), 8);
  if (libc().setsockopt(fd, SOL_SOCKET_LEVEL, SO_ATTACH_FILTER, fprog, fprog.length) < 0) {
    throw sysError('setsockopt', errno(), 'attaching a socket filter');
  }
}
