/**
 * Time namespaces (time_namespaces(7)): the clocks a namespace shows are
 * the host's CLOCK_MONOTONIC and CLOCK_BOOTTIME plus its offsets, which
 * /proc/PID/timens_offsets shows (and takes, until a task enters the
 * namespace) for the namespace PID's new children go to.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { CkptError } from '../errors.js';
import { errno, errnoName, libc } from './libc.js';

/** The clocks a time namespace offsets. */
export type NsClock = 'monotonic' | 'boottime';

const CLOCK_ID: Record<NsClock | 'realtime', number> = { realtime: 0, monotonic: 1, boottime: 7 };
const NS_PER_S = 1_000_000_000n;

/** Offsets of a time namespace from the host's clocks, in nanoseconds. */
export type TimeNsOffsets = Record<NsClock, bigint>;

/** `clock` as ckpt's own thread sees it, in nanoseconds. */
export function clockNs(clock: NsClock | 'realtime'): bigint {
  const ts = Buffer.alloc(16);
  if (libc().clockGettime(CLOCK_ID[clock], ts) === -1) {
    throw new CkptError('ESYS', `clock_gettime(${clock}) failed with ${errnoName(errno())}`, {
      syscall: 'clock_gettime',
    });
  }
  return ts.readBigInt64LE(0) * NS_PER_S + ts.readBigInt64LE(8);
}

/**
 * Clock `clockid` (CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME or an
 * alarm clock) as task `pid` sees it now, in nanoseconds: ckpt's reading
 * moved from ckpt's time namespace to the task's. Undefined for another
 * clock.
 */
export function taskClockNs(pid: number, clockid: number): bigint | undefined {
  const byId: Record<number, NsClock | 'realtime'> = {
    0: 'realtime',
    1: 'monotonic',
    7: 'boottime',
    8: 'realtime',
    9: 'boottime',
  };
  const clock = byId[clockid];
  if (clock === undefined) return undefined;
  if (clock === 'realtime') return clockNs('realtime');
  return hostClockNs(clock) + readTimeNsOffsets(pid)[clock];
}

/** `clock` of the host (the initial time namespace): ckpt's, less its own namespace's offset. */
export function hostClockNs(clock: NsClock): bigint {
  return clockNs(clock) - readTimeNsOffsets('self')[clock];
}

/** Parse /proc/PID/timens_offsets ("monotonic SECS NSECS" per line). */
export function parseTimeNsOffsets(text: string): TimeNsOffsets {
  const out: TimeNsOffsets = { monotonic: 0n, boottime: 0n };
  for (const line of text.split('\n')) {
    const [name, secs, nsecs] = line.trim().split(/\s+/);
    if ((name === 'monotonic' || name === 'boottime') && secs && nsecs) {
      out[name] = BigInt(secs) * NS_PER_S + BigInt(nsecs);
    }
  }
  return out;
}

/**
 * The offsets of the time namespace `pid`'s new children go to (its own,
 * unless it has unshared one since).
 * @throws CkptError ESYS when the file cannot be read
 */
export function readTimeNsOffsets(pid: number | 'self'): TimeNsOffsets {
  const path = `/proc/${pid}/timens_offsets`;
  try {
    return parseTimeNsOffsets(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new CkptError('ESYS', `cannot read ${path}: ${(e as Error).message}`, { path });
  }
}

/** A nanosecond count as timens_offsets takes it: seconds, then 0..999999999 nanoseconds. */
function secsNsecs(ns: bigint): string {
  let secs = ns / NS_PER_S;
  let rest = ns % NS_PER_S;
  if (rest < 0n) {
    rest += NS_PER_S;
    secs -= 1n;
  }
  return `${secs} ${rest}`;
}

/**
 * Set the offsets of the time namespace `pid`'s new children go to: one
 * no task is in yet (the kernel refuses afterwards).
 * @throws CkptError ESYS naming the pid when the kernel refuses them
 */
export function writeTimeNsOffsets(pid: number, offsets: TimeNsOffsets): void {
  const path = `/proc/${pid}/timens_offsets`;
  const text = (['monotonic', 'boottime'] as const)
    .map((c) => `${c} ${secsNsecs(offsets[c])}`)
    .join('\n');
  try {
    writeFileSync(path, `${text}\n`);
  } catch (e) {
    throw new CkptError(
      'ESYS',
      `cannot set the clock offsets of pid ${pid}'s new time namespace (${text.replace('\n', ', ')}): ${(e as Error).message}`,
      { pid, path },
    );
  }
}
