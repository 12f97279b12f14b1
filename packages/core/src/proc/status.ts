/**
 * /proc/PID/status: the human-readable "Key:\tvalue" view of a task, the
 * only place that shows ids at every pid-namespace level, full signal
 * masks and capability sets.
 */
import { malformed, parseDec, parseHexBig, parseOct, procPath, readProcText } from './util.js';

/** Real, effective, saved and filesystem ids, in the order status prints them. */
export interface IdSet {
  real: number;
  effective: number;
  saved: number;
  fs: number;
}

/** The parsed fields of /proc/PID/status a checkpointer needs. */
export interface ProcStatus {
  /** Command name, with the kernel's `\n` and `\\` escapes undone. */
  name: string;
  /** File mode creation mask; absent for zombies and older kernels. */
  umask: number | undefined;
  /** One letter (R, S, D, Z, T, t, X, I, ...). */
  state: string;
  tgid: number;
  /** NUMA group id (0 when NUMA balancing is off). */
  ngid: number;
  pid: number;
  ppid: number;
  /** Pid of the tracer, 0 when not traced. */
  tracerPid: number;
  uid: IdSet;
  gid: IdSet;
  /** Allocated fd table slots (0 for zombies). */
  fdSize: number;
  /** Supplementary groups. */
  groups: number[];
  /** Tgid in each pid namespace, outermost (the reader's) first, own namespace last. */
  nsTgid: number[];
  /** Pid in each pid namespace, outermost first. */
  nsPid: number[];
  /** Process group in each pid namespace; 0 where the group is not visible. */
  nsPgid: number[];
  /** Session in each pid namespace; 0 where the session is not visible. */
  nsSid: number[];
  threads: number;
  /** Queued signals for the real uid, and the RLIMIT_SIGPENDING limit. */
  sigQ: { queued: number; limit: number };
  /** Signals pending for the thread. Bit n-1 is signal n. */
  sigPnd: bigint;
  /** Signals pending for the whole process. */
  shdPnd: bigint;
  sigBlk: bigint;
  sigIgn: bigint;
  /** Signals with a handler installed. */
  sigCgt: bigint;
  capInh: bigint;
  capPrm: bigint;
  capEff: bigint;
  capBnd: bigint;
  capAmb: bigint;
  noNewPrivs: boolean;
  /** 0 disabled, 1 strict, 2 filter. */
  seccomp: number;
  /** Every "Key: value" line as printed (value trimmed), known keys included. */
  raw: Map<string, string>;
}

/** Undoes seq_escape of the Name field, which escapes only newline and backslash. */
function unescapeName(s: string): string {
  return s.replace(/\\(n|\\)/g, (_, c: string) => (c === 'n' ? '\n' : '\\'));
}

/**
 * Parses the text of /proc/PID/status.
 * @param file - named in the error when the text is malformed
 * @throws CkptError EINVAL when a required key is missing or malformed
 */
export function parseStatus(text: string, file = '/proc/PID/status'): ProcStatus {
  const raw = new Map<string, string>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const key = line.slice(0, colon);
    // Name is printed after exactly one tab and may itself begin or end with spaces.
    raw.set(key, key === 'Name' ? line.slice(colon + 2) : line.slice(colon + 1).trim());
  }
  const get = (key: string): string => {
    const v = raw.get(key);
    if (v === undefined) throw malformed(file, `no ${key} line`);
    return v;
  };
  const num = (key: string): number => parseDec(get(key), file, key);
  const hex = (key: string): bigint => parseHexBig(get(key), file, key);
  const list = (key: string): number[] => {
    const v = get(key);
    return v === '' ? [] : v.split(/\s+/).map((x) => parseDec(x, file, key));
  };
  const ids = (key: string): IdSet => {
    const v = list(key);
    if (v.length !== 4) throw malformed(file, `${key} has ${v.length} values, expected 4`);
    const [real, effective, saved, fs] = v as [number, number, number, number];
    return { real, effective, saved, fs };
  };
  const sigQ = /^(\d+)\/(\d+)$/.exec(get('SigQ'));
  if (!sigQ) throw malformed(file, `SigQ is not "queued/limit": '${get('SigQ')}'`);
  const umask = raw.get('Umask');
  return {
    name: unescapeName(raw.get('Name') ?? ''),
    umask: umask === undefined ? undefined : parseOct(umask, file, 'Umask'),
    state: get('State').charAt(0),
    tgid: num('Tgid'),
    ngid: num('Ngid'),
    pid: num('Pid'),
    ppid: num('PPid'),
    tracerPid: num('TracerPid'),
    uid: ids('Uid'),
    gid: ids('Gid'),
    fdSize: num('FDSize'),
    groups: list('Groups'),
    nsTgid: list('NStgid'),
    nsPid: list('NSpid'),
    nsPgid: list('NSpgid'),
    nsSid: list('NSsid'),
    threads: num('Threads'),
    sigQ: { queued: Number(sigQ[1]), limit: Number(sigQ[2]) },
    sigPnd: hex('SigPnd'),
    shdPnd: hex('ShdPnd'),
    sigBlk: hex('SigBlk'),
    sigIgn: hex('SigIgn'),
    sigCgt: hex('SigCgt'),
    capInh: hex('CapInh'),
    capPrm: hex('CapPrm'),
    capEff: hex('CapEff'),
    capBnd: hex('CapBnd'),
    capAmb: hex('CapAmb'),
    noNewPrivs: get('NoNewPrivs') === '1',
    seccomp: num('Seccomp'),
    raw,
  };
}

/**
 * Reads /proc/PID/status, or /proc/PID/task/TID/status when `tid` is given
 * (signal pending and blocked masks are per thread).
 * @throws CkptError ESRCH when the process (or thread) is gone
 */
export function readStatus(pid: number, tid?: number): ProcStatus {
  return parseStatus(readProcText(pid, 'status', tid), procPath(pid, 'status', tid));
}
