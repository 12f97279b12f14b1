/**
 * The sysctls of an ipc namespace: kernel.{shm*,msg*,sem,*_next_id} and
 * fs.mqueue.*. Each file under /proc/sys shows (and sets) the ipc namespace
 * of the task that opens it, whatever the proc mount: callers run these
 * functions with ckpt's thread inside the namespace (see `inNamespace`).
 *
 * kernel.auto_msgmni is left out on purpose: since Linux 3.19 it always
 * reads 0 and writing it has no effect.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { CkptError, type RecordValue } from '@ckpt/core';
import type { ipcNsRecord } from './records.js';

/** The saved settings of an ipc namespace. */
export type IpcNs = RecordValue<typeof ipcNsRecord>;

type IntKey = {
  [K in keyof IpcNs]: IpcNs[K] extends number ? K : never;
}[keyof IpcNs];
type UlongKey = 'shmmax' | 'shmall';

const INT_MAX = 0x7fff_ffff;
const INT_MIN = -0x8000_0000;
/** HARD_MSGMAX and HARD_MSGSIZEMAX (include/linux/ipc_namespace.h). */
const HARD_MSGMAX = 65536;
const HARD_MSGSIZEMAX = 16 * 1024 * 1024;
/** Stands for this kernel's ipc_mni as the bound of a range (see {@link ipcMni}). */
const IPC_MNI = Symbol('ipc_mni');

/** One int value of a sysctl and the range the kernel's handler accepts. */
interface IntValue {
  key: IntKey;
  min: number;
  max: number | typeof IPC_MNI;
}

/** One sysctl file of the ipc namespace. */
export interface IpcSysctl {
  /** Dotted name, as sysctl(8) prints it. */
  name: string;
  /** Its values, in the file's order: record fields. */
  values: readonly IntValue[] | readonly [UlongKey];
  /** kernel.*_next_id: -1 (unset) cannot be written; set after SysV objects are restored. */
  nextId?: boolean;
}

const int = (key: IntKey, min = INT_MIN, max: number | typeof IPC_MNI = INT_MAX): IntValue => ({
  key,
  min,
  max,
});

/** Every sysctl of an ipc namespace, with the ranges of Linux 6.x's handlers. */
export const IPC_SYSCTLS: readonly IpcSysctl[] = [
  { name: 'kernel.shmmax', values: ['shmmax'] },
  { name: 'kernel.shmall', values: ['shmall'] },
  { name: 'kernel.shmmni', values: [int('shmmni', 0, IPC_MNI)] },
  { name: 'kernel.shm_rmid_forced', values: [int('shmRmidForced', 0, 1)] },
  { name: 'kernel.msgmax', values: [int('msgmax', 0)] },
  { name: 'kernel.msgmnb', values: [int('msgmnb', 0)] },
  { name: 'kernel.msgmni', values: [int('msgmni', 0, IPC_MNI)] },
  {
    name: 'kernel.sem',
    values: [int('semmsl'), int('semmns'), int('semopm'), int('semmni', 0, IPC_MNI)],
  },
  { name: 'kernel.msg_next_id', values: [int('msgNextId', 0)], nextId: true },
  { name: 'kernel.sem_next_id', values: [int('semNextId', 0)], nextId: true },
  { name: 'kernel.shm_next_id', values: [int('shmNextId', 0)], nextId: true },
  { name: 'fs.mqueue.queues_max', values: [int('mqQueuesMax')] },
  { name: 'fs.mqueue.msg_max', values: [int('mqMsgMax', 1, HARD_MSGMAX)] },
  { name: 'fs.mqueue.msgsize_max', values: [int('mqMsgsizeMax', 128, HARD_MSGSIZEMAX)] },
  { name: 'fs.mqueue.msg_default', values: [int('mqMsgDefault', 1, HARD_MSGMAX)] },
  { name: 'fs.mqueue.msgsize_default', values: [int('mqMsgsizeDefault', 128, HARD_MSGSIZEMAX)] },
];

/** The /proc/sys path of a dotted sysctl name. */
export function sysctlPath(name: string): string {
  return `/proc/sys/${name.replaceAll('.', '/')}`;
}

const isUlong = (s: IpcSysctl): boolean => typeof s.values[0] === 'string';

function intValues(s: IpcSysctl): readonly IntValue[] {
  return isUlong(s) ? [] : (s.values as readonly IntValue[]);
}

/** The text the kernel shows for sysctl `s` with the values of `ns`. */
export function formatSysctl(s: IpcSysctl, ns: IpcNs): string {
  if (isUlong(s)) return String(ns[(s.values as readonly [UlongKey])[0]]);
  return intValues(s)
    .map((v) => String(ns[v.key]))
    .join(' ');
}

/**
 * Parse the text of sysctl `s` into `out`.
 * @throws CkptError EINVAL when the text is not what the kernel prints
 */
export function parseSysctl(s: IpcSysctl, text: string, out: IpcNs): void {
  const words = text.trim().split(/\s+/);
  const bad = () =>
    new CkptError('EINVAL', `unexpected contents of ${sysctlPath(s.name)}: '${text.trim()}'`, {
      path: sysctlPath(s.name),
    });
  if (words.length !== s.values.length) throw bad();
  if (isUlong(s)) {
    if (!/^\d+$/.test(words[0]!)) throw bad();
    out[(s.values as readonly [UlongKey])[0]] = BigInt(words[0]!);
    return;
  }
  intValues(s).forEach((v, i) => {
    const n = Number(words[i]);
    if (!/^-?\d+$/.test(words[i]!) || n < INT_MIN || n > INT_MAX) throw bad();
    out[v.key] = n;
  });
}

/** An ipc namespace with every value 0 and nothing missing. */
export function emptyIpcNs(): IpcNs {
  return {
    host: false,
    shmmax: 0n,
    shmall: 0n,
    shmmni: 0,
    shmRmidForced: 0,
    msgmax: 0,
    msgmnb: 0,
    msgmni: 0,
    semmsl: 0,
    semmns: 0,
    semopm: 0,
    semmni: 0,
    msgNextId: 0,
    semNextId: 0,
    shmNextId: 0,
    mqQueuesMax: 0,
    mqMsgMax: 0,
    mqMsgsizeMax: 0,
    mqMsgDefault: 0,
    mqMsgsizeDefault: 0,
    missing: [],
  };
}

function isMissing(e: unknown): boolean {
  return (e as NodeJS.ErrnoException).code === 'ENOENT';
}

/**
 * Read every sysctl of the ipc namespace this thread is in. One this
 * kernel lacks (no CONFIG_CHECKPOINT_RESTORE, no POSIX mqueue) is listed
 * in `missing`.
 */
export function readIpcSysctls(): IpcNs {
  const ns = emptyIpcNs();
  for (const s of IPC_SYSCTLS) {
    let text: string;
    try {
      text = readFileSync(sysctlPath(s.name), 'utf8');
    } catch (e) {
      if (!isMissing(e)) throw fsError(e, `reading ${s.name}`, s);
      ns.missing.push(s.name);
      continue;
    }
    parseSysctl(s, text, ns);
  }
  return ns;
}

/**
 * The ipc_mni of this kernel: the bound of shmmni, msgmni and semmni
 * (IPCMNI, or IPCMNI_EXTEND when booted with `ipcmni_extend`).
 */
export function ipcMni(cmdline = readFileSync('/proc/cmdline', 'utf8')): number {
  return /(^|\s)ipcmni_extend(\s|$)/.test(cmdline) ? 1 << 24 : 1 << 15;
}

/** Whether `s` has anything to set: a *_next_id of -1 is what a fresh namespace has. */
export function needsSet(s: IpcSysctl, ns: IpcNs): boolean {
  if (ns.missing.includes(s.name)) return false;
  return !(s.nextId && ns[intValues(s)[0]!.key] === -1);
}

/**
 * Check every saved value against what this kernel accepts, before
 * anything is set: the sysctl must exist, and each value be in the range
 * of its handler.
 * @throws CkptError ENOTSUP for a sysctl this kernel lacks, EINVAL for a value it refuses
 */
export function validateIpcNs(
  ns: IpcNs,
  opts: { mni: number; exists?: (path: string) => boolean },
): void {
  const exists = opts.exists ?? existsSync;
  for (const s of IPC_SYSCTLS) {
    if (!needsSet(s, ns)) continue;
    const value = formatSysctl(s, ns);
    if (!exists(sysctlPath(s.name))) {
      throw new CkptError(
        'ENOTSUP',
        `the image's ipc namespace has ${s.name} = ${value}, but this kernel has no ${sysctlPath(s.name)}`,
        { path: sysctlPath(s.name) },
      );
    }
    for (const v of intValues(s)) {
      const max = v.max === IPC_MNI ? opts.mni : v.max;
      const n = ns[v.key];
      if (n < v.min || n > max) {
        const which = s.values.length > 1 ? ` (${v.key} ${n})` : '';
        throw new CkptError(
          'EINVAL',
          `the image's ipc namespace has ${s.name} = ${value}${which}, which this kernel refuses: it accepts ${v.min}..${max}`,
          { path: sysctlPath(s.name) },
        );
      }
    }
  }
}

function fsError(e: unknown, what: string, s: IpcSysctl): CkptError {
  const err = e as NodeJS.ErrnoException;
  return new CkptError('ESYS', `${what} (${sysctlPath(s.name)}): ${err.code ?? err.message}`, {
    path: sysctlPath(s.name),
    errno: err.errno === undefined ? undefined : -err.errno,
  });
}

/**
 * Set the sysctls `which` of the ipc namespace this thread is in to the
 * values of `ns`, skipping those that already have them. Returns the names
 * set.
 * @throws CkptError ESYS naming the sysctl and value the kernel refused
 */
export function writeIpcSysctls(ns: IpcNs, which: (s: IpcSysctl) => boolean): string[] {
  const set: string[] = [];
  for (const s of IPC_SYSCTLS) {
    if (!which(s) || !needsSet(s, ns)) continue;
    const value = formatSysctl(s, ns);
    const path = sysctlPath(s.name);
    const current = readFileSync(path, 'utf8').trim().split(/\s+/).join(' ');
    if (current === value) continue;
    try {
      writeFileSync(path, `${value}\n`);
    } catch (e) {
      throw fsError(e, `the kernel refused ${s.name} = ${value}`, s);
    }
    set.push(s.name);
  }
  return set;
}

/** The sysctls whose values differ between `a` and `b` (next ids aside), as "name a (b)". */
export function diffIpcSysctls(a: IpcNs, b: IpcNs): string[] {
  return IPC_SYSCTLS.filter(
    (s) => !s.nextId && !a.missing.includes(s.name) && !b.missing.includes(s.name),
  )
    .filter((s) => formatSysctl(s, a) !== formatSysctl(s, b))
    .map((s) => `${s.name} ${formatSysctl(s, a)} (here ${formatSysctl(s, b)})`);
}
