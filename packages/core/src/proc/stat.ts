/**
 * /proc/PID/stat and /proc/PID/task/TID/stat: the one-line, space-separated
 * scheduler view of a task (see proc_pid_stat(5)).
 */
import { malformed, parseDec, parseDecBig, procPath, readProcText } from './util.js';

/**
 * The fields of /proc/PID/stat. Addresses and 64-bit quantities are bigint.
 * Fields 26-30 and 45-52 read as 0 unless the reader may ptrace the task.
 */
export interface ProcStat {
  /** (1) */ pid: number;
  /** (2) Raw command name, may contain spaces, parentheses and newlines. */ comm: string;
  /** (3) One letter: R S D Z T t X I ... */ state: string;
  /** (4) */ ppid: number;
  /** (5) Process group id. */ pgrp: number;
  /** (6) */ session: number;
  /** (7) Controlling terminal, encoded major/minor; 0 when none. */ ttyNr: number;
  /** (8) Foreground process group of the terminal, -1 when none. */ tpgid: number;
  /** (9) PF_* flags. */ flags: number;
  /** (10) */ minflt: number;
  /** (11) */ cminflt: number;
  /** (12) */ majflt: number;
  /** (13) */ cmajflt: number;
  /** (14) Clock ticks. */ utime: number;
  /** (15) Clock ticks. */ stime: number;
  /** (16) */ cutime: number;
  /** (17) */ cstime: number;
  /** (18) */ priority: number;
  /** (19) */ nice: number;
  /** (20) */ numThreads: number;
  /** (21) Always 0 since Linux 2.6.17. */ itrealvalue: number;
  /** (22) Clock ticks after boot. With pid, identifies a process across pid reuse. */
  starttime: number;
  /** (23) Bytes. */ vsize: bigint;
  /** (24) Pages. */ rss: number;
  /** (25) Bytes; 2^64-1 when unlimited. */ rsslim: bigint;
  /** (26) */ startcode: bigint;
  /** (27) */ endcode: bigint;
  /** (28) */ startstack: bigint;
  /** (29) */ kstkesp: bigint;
  /** (30) */ kstkeip: bigint;
  /** (31) Obsolete low 31 bits of the pending mask: use /proc/PID/status. */ signal: number;
  /** (32) Obsolete, see {@link ProcStat.signal}. */ blocked: number;
  /** (33) Obsolete, see {@link ProcStat.signal}. */ sigignore: number;
  /** (34) Obsolete, see {@link ProcStat.signal}. */ sigcatch: number;
  /** (35) 0 or 1 nowadays (the kernel hides the address). */ wchan: bigint;
  /** (36) */ nswap: number;
  /** (37) */ cnswap: number;
  /** (38) Signal sent to the parent on exit (SIGCHLD = 17 for processes, -1/0 for threads). */
  exitSignal: number;
  /** (39) CPU last run on. */ processor: number;
  /** (40) */ rtPriority: number;
  /** (41) SCHED_* policy. */ policy: number;
  /** (42) */ delayacctBlkioTicks: number;
  /** (43) */ guestTime: number;
  /** (44) */ cguestTime: number;
  /** (45) */ startData: bigint;
  /** (46) */ endData: bigint;
  /** (47) */ startBrk: bigint;
  /** (48) */ argStart: bigint;
  /** (49) */ argEnd: bigint;
  /** (50) */ envStart: bigint;
  /** (51) */ envEnd: bigint;
  /** (52) Exit status in waitpid(2) form. */ exitCode: number;
}

/** Names of fields 3-52 in order; 'b' marks bigint fields. */
const FIELDS: ReadonlyArray<readonly [keyof ProcStat, 'n' | 'b' | 's']> = [
  ['state', 's'],
  ['ppid', 'n'],
  ['pgrp', 'n'],
  ['session', 'n'],
  ['ttyNr', 'n'],
  ['tpgid', 'n'],
  ['flags', 'n'],
  ['minflt', 'n'],
  ['cminflt', 'n'],
  ['majflt', 'n'],
  ['cmajflt', 'n'],
  ['utime', 'n'],
  ['stime', 'n'],
  ['cutime', 'n'],
  ['cstime', 'n'],
  ['priority', 'n'],
  ['nice', 'n'],
  ['numThreads', 'n'],
  ['itrealvalue', 'n'],
  ['starttime', 'n'],
  ['vsize', 'b'],
  ['rss', 'n'],
  ['rsslim', 'b'],
  ['startcode', 'b'],
  ['endcode', 'b'],
  ['startstack', 'b'],
  ['kstkesp', 'b'],
  ['kstkeip', 'b'],
  ['signal', 'n'],
  ['blocked', 'n'],
  ['sigignore', 'n'],
  ['sigcatch', 'n'],
  ['wchan', 'b'],
  ['nswap', 'n'],
  ['cnswap', 'n'],
  ['exitSignal', 'n'],
  ['processor', 'n'],
  ['rtPriority', 'n'],
  ['policy', 'n'],
  ['delayacctBlkioTicks', 'n'],
  ['guestTime', 'n'],
  ['cguestTime', 'n'],
  ['startData', 'b'],
  ['endData', 'b'],
  ['startBrk', 'b'],
  ['argStart', 'b'],
  ['argEnd', 'b'],
  ['envStart', 'b'],
  ['envEnd', 'b'],
  ['exitCode', 'n'],
];

/**
 * Parses the text of /proc/PID/stat. The command name is printed raw
 * between parentheses, so it is taken up to the LAST ')' of the line.
 * @param file - named in the error when the text is malformed
 * @throws CkptError EINVAL when the text is not a stat line of 52 fields
 */
export function parseStat(text: string, file = '/proc/PID/stat'): ProcStat {
  const open = text.indexOf(' (');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) throw malformed(file, 'no "(comm)" field');
  const rest = text
    .slice(close + 1)
    .trim()
    .split(' ');
  if (rest.length < FIELDS.length) {
    throw malformed(file, `expected ${FIELDS.length + 2} fields, found ${rest.length + 2}`);
  }
  const out: Record<string, unknown> = {
    pid: parseDec(text.slice(0, open), file, 'pid'),
    comm: text.slice(open + 2, close),
  };
  FIELDS.forEach(([name, kind], i) => {
    const raw = rest[i] as string;
    out[name] =
      kind === 's' ? raw : kind === 'b' ? parseDecBig(raw, file, name) : parseDec(raw, file, name);
  });
  return out as unknown as ProcStat;
}

/**
 * Reads /proc/PID/stat, or /proc/PID/task/TID/stat when `tid` is given.
 * @throws CkptError ESRCH when the process (or thread) is gone
 */
export function readStat(pid: number, tid?: number): ProcStat {
  return parseStat(readProcText(pid, 'stat', tid), procPath(pid, 'stat', tid));
}

/** What the process tree needs of /proc/PID/stat (see {@link parseStatBrief}). */
export type ProcStatBrief = Pick<
  ProcStat,
  'pid' | 'comm' | 'state' | 'ppid' | 'pgrp' | 'session' | 'starttime'
>;

const BRIEF_FIELDS = ['ppid', 'pgrp', 'session', 'starttime'] as const;
const BRIEF_INDEX = BRIEF_FIELDS.map((name) => FIELDS.findIndex(([n]) => n === name));
const STATE_INDEX = FIELDS.findIndex(([n]) => n === 'state');

/**
 * Parses only the fields the process tree needs: a scan of every process
 * on the host reads them several times per checkpoint, and parsing all 52
 * (eight of them as bigint) was most of its cost.
 * @throws CkptError EINVAL when the line is malformed
 */
export function parseStatBrief(text: string, file = '/proc/PID/stat'): ProcStatBrief {
  const open = text.indexOf(' (');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) throw malformed(file, 'no "(comm)" field');
  const rest = text.slice(close + 2).split(' ', FIELDS.length);
  if (rest.length < FIELDS.length) {
    throw malformed(file, `expected ${FIELDS.length + 2} fields, found ${rest.length + 2}`);
  }
  const [ppid, pgrp, session, starttime] = BRIEF_INDEX.map((i, k) =>
    parseDec(rest[i] as string, file, BRIEF_FIELDS[k] as string),
  ) as [number, number, number, number];
  return {
    pid: parseDec(text.slice(0, open), file, 'pid'),
    comm: text.slice(open + 2, close),
    state: rest[STATE_INDEX] as string,
    ppid,
    pgrp,
    session,
    starttime,
  };
}

/** Reads the fields of /proc/PID/stat the process tree needs (see {@link parseStatBrief}). */
export function readStatBrief(pid: number): ProcStatBrief {
  return parseStatBrief(readProcText(pid, 'stat'), procPath(pid, 'stat'));
}
