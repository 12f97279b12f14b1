/**
 * Small per-process readers: the auxiliary vector, argv and environment as
 * the kernel shows them, exe/cwd/root links, comm, personality, timer slack.
 */
import { endianness } from 'node:os';
import {
  malformed,
  parseDecBig,
  parseHexBig,
  procPath,
  readProcBytes,
  readProcLink,
  readProcText,
} from './util.js';

/** One auxiliary vector entry (AT_* type, value). */
export interface AuxvEntry {
  /** AT_* constant, e.g. 6 = AT_PAGESZ, 33 = AT_SYSINFO_EHDR (the vdso). */
  type: number;
  value: bigint;
}

/**
 * Parses /proc/PID/auxv: native-endian u64 pairs up to and excluding AT_NULL.
 * @throws CkptError EINVAL when the size is not a whole number of pairs
 */
export function parseAuxv(bytes: Uint8Array, file = '/proc/PID/auxv'): AuxvEntry[] {
  if (bytes.length % 16 !== 0)
    throw malformed(file, `${bytes.length} bytes is not a whole number of u64 pairs`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const le = endianness() === 'LE';
  const out: AuxvEntry[] = [];
  for (let off = 0; off < bytes.length; off += 16) {
    const type = view.getBigUint64(off, le);
    if (type === 0n) break;
    out.push({ type: Number(type), value: view.getBigUint64(off + 8, le) });
  }
  return out;
}

/** Reads /proc/PID/auxv (empty for zombies). */
export function readAuxv(pid: number): AuxvEntry[] {
  return parseAuxv(readProcBytes(pid, 'auxv'), procPath(pid, 'auxv'));
}

/** Splits a NUL-separated list (cmdline, environ); the final NUL ends the last item. */
export function parseNulList(bytes: Uint8Array): string[] {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8');
  if (text === '') return [];
  const items = text.split('\0');
  if (items[items.length - 1] === '') items.pop();
  return items;
}

/**
 * Reads /proc/PID/cmdline: the argv area of the process as it is now (a
 * process may rewrite it); empty for zombies and kernel threads.
 */
export function readCmdline(pid: number): string[] {
  return parseNulList(readProcBytes(pid, 'cmdline'));
}

/** Reads /proc/PID/environ as "NAME=value" strings, as the process's memory holds them now. */
export function readEnviron(pid: number): string[] {
  return parseNulList(readProcBytes(pid, 'environ'));
}

/**
 * Reads the /proc/PID/exe link: the executable's path (" (deleted)" appended
 * when unlinked).
 * @throws CkptError ENOENT for zombies and kernel threads
 */
export function readExe(pid: number): string {
  return readProcLink(pid, 'exe');
}

/** Reads the /proc/PID/cwd link. @throws CkptError ENOENT for zombies */
export function readCwd(pid: number): string {
  return readProcLink(pid, 'cwd');
}

/** Reads the /proc/PID/root link (the process's chroot, "/" usually). @throws CkptError ENOENT for zombies */
export function readRoot(pid: number): string {
  return readProcLink(pid, 'root');
}

/** Reads /proc/PID/comm (or a thread's) without the trailing newline. */
export function readComm(pid: number, tid?: number): string {
  return readProcText(pid, 'comm', tid).replace(/\n$/, '');
}

/** The name of `pid` for a message: its comm, or '?' once it is gone. */
export function commForMessage(pid: number): string {
  try {
    return readComm(pid);
  } catch {
    return '?';
  }
}

/**
 * Parses /proc/PID/personality (8 hex digits).
 * @throws CkptError EINVAL when not hexadecimal
 */
export function parsePersonality(text: string, file = '/proc/PID/personality'): number {
  return Number(parseHexBig(text.trim(), file, 'personality'));
}

/** Reads /proc/PID/personality: the persona(2) flags such as ADDR_NO_RANDOMIZE (0x0040000). */
export function readPersonality(pid: number): number {
  return parsePersonality(readProcText(pid, 'personality'), procPath(pid, 'personality'));
}

/** Reads /proc/PID/timerslack_ns (nanoseconds, an unsigned long, for PR_SET_TIMERSLACK). */
export function readTimerslackNs(pid: number): bigint {
  const file = procPath(pid, 'timerslack_ns');
  return parseDecBig(readProcText(pid, 'timerslack_ns').trim(), file, 'timerslack_ns');
}
