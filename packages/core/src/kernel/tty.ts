/**
 * Pseudo-terminal ioctls on fds of this process (tty_ioctl(4),
 * pty(7)). On a pty master the terminal-mode ioctls (termios, window
 * size) act on its slave, so a copy of the master is enough to read and
 * set the terminal's state. The request numbers are the generic ones
 * (x86-64, arm64 and s390x alike).
 */
import { errno, libc, sysError } from './libc.js';
import { withFdCopy } from './pidfd.js';

const TCGETS2 = 0x802c542a;
const TCSETS2 = 0x402c542b;
const TIOCGPGRP = 0x540f;
const TIOCSPGRP = 0x5410;
const TIOCGWINSZ = 0x5413;
const TIOCSWINSZ = 0x5414;
const FIONREAD = 0x541b;
const TIOCPKT = 0x5420;
const TIOCGPTN = 0x80045430;
const TIOCSPTLCK = 0x40045431;
const TIOCGPKT = 0x80045438;
const TIOCGPTLCK = 0x80045439;

/** Size of `struct termios2`, what {@link getTermios} returns. */
export const TERMIOS2_SIZE = 44;
/** Offset of c_oflag in `struct termios2`, and its OPOST bit. */
const C_OFLAG = 4;
const OPOST = 1;

function ioctl(fd: number, request: number, arg: Buffer, what: string): void {
  if (libc().ioctlBuf(fd, request, arg) === -1) throw sysError('ioctl', errno(), what);
}

function int(fd: number, request: number, what: string): number {
  const b = Buffer.alloc(4);
  ioctl(fd, request, b, what);
  return b.readInt32LE(0);
}

function setInt(fd: number, request: number, value: number, what: string): void {
  const b = Buffer.alloc(4);
  b.writeInt32LE(value, 0);
  ioctl(fd, request, b, what);
}

/** Index N of the pty whose master is `fd` (its slave is /dev/pts/N). */
export function ptyIndex(fd: number): number {
  return int(fd, TIOCGPTN, 'reading the index of a pty master (TIOCGPTN)');
}

/** Index of the pty whose master is fd `fd` of process `pid` (through a copy of it). */
export function ptyIndexOf(pid: number, fd: number): number {
  return withFdCopy(pid, fd, ptyIndex);
}

/** The terminal's `struct termios2` (modes, control characters, speeds), raw. */
export function getTermios(fd: number): Buffer {
  const b = Buffer.alloc(TERMIOS2_SIZE);
  ioctl(fd, TCGETS2, b, 'reading terminal modes (TCGETS2)');
  return b;
}

/** Set the terminal's modes from a raw `struct termios2` (as {@link getTermios} gave). */
export function setTermios(fd: number, termios: Buffer): void {
  ioctl(fd, TCSETS2, Buffer.from(termios), 'setting terminal modes (TCSETS2)');
}

/** `termios` with output processing (OPOST) off: bytes written go through as they are. */
export function rawOutput(termios: Buffer): Buffer {
  const t = Buffer.from(termios);
  t.writeUInt32LE(t.readUInt32LE(C_OFLAG) & ~OPOST, C_OFLAG);
  return t;
}

/** The window size, raw `struct winsize` (rows, columns, pixel width and height). */
export function getWinsize(fd: number): Buffer {
  const b = Buffer.alloc(8);
  ioctl(fd, TIOCGWINSZ, b, 'reading the window size (TIOCGWINSZ)');
  return b;
}

export function setWinsize(fd: number, winsize: Buffer): void {
  ioctl(fd, TIOCSWINSZ, Buffer.from(winsize), 'setting the window size (TIOCSWINSZ)');
}

/** Whether packet mode is on on pty master `fd`. */
export function packetMode(fd: number): boolean {
  return int(fd, TIOCGPKT, 'reading packet mode (TIOCGPKT)') !== 0;
}

export function setPacketMode(fd: number, on: boolean): void {
  setInt(fd, TIOCPKT, on ? 1 : 0, 'setting packet mode (TIOCPKT)');
}

/** Whether the slave of pty master `fd` is locked (unlockpt not called yet). */
export function ptyLocked(fd: number): boolean {
  return int(fd, TIOCGPTLCK, 'reading the pty lock (TIOCGPTLCK)') !== 0;
}

export function setPtyLocked(fd: number, locked: boolean): void {
  setInt(fd, TIOCSPTLCK, locked ? 1 : 0, 'setting the pty lock (TIOCSPTLCK)');
}

/** Bytes waiting to be read on `fd` (FIONREAD). */
export function readableBytes(fd: number): number {
  return int(fd, FIONREAD, 'reading the bytes waiting (FIONREAD)');
}

/** The foreground process group of the terminal `fd` (tcgetpgrp). */
export function foregroundGroup(fd: number): number {
  return int(fd, TIOCGPGRP, `reading the foreground process group of fd ${fd}`);
}

const SIG_BLOCK = 0;
const SIG_SETMASK = 2;
const SIGTTOU = 22;

/**
 * Make `pgid` the foreground process group of the terminal `fd`
 * (tcsetpgrp), with SIGTTOU blocked: a caller in the background (once it
 * gave the terminal away) may take it back without being stopped.
 */
export function setForegroundGroup(fd: number, pgid: number): void {
  const block = Buffer.alloc(128);
  block[Math.floor((SIGTTOU - 1) / 8)] = 1 << ((SIGTTOU - 1) % 8);
  const old = Buffer.alloc(128);
  libc().pthreadSigmask(SIG_BLOCK, block, old);
  try {
    setInt(fd, TIOCSPGRP, pgid, `making process group ${pgid} the foreground of fd ${fd}`);
  } finally {
    libc().pthreadSigmask(SIG_SETMASK, old, null);
  }
}
