/**
 * Looking at live processes from tests: waiting for a condition, and
 * reading parents, ids, tracers and namespaces from /proc.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { sleepSync } from './fixtures.js';

/**
 * Polls `cond` every 20 ms until it holds; throws "timed out waiting for
 * WHAT" once `timeoutMs` have passed without it.
 */
export function waitFor(what: string, cond: () => boolean, timeoutMs = 5000): void {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    sleepSync(20);
  }
}

/**
 * The port a test server publishes in `dir/port` (written whole, by a
 * rename), once it exists: servers the tests start write it when they
 * listen.
 */
export function waitForPort(dir: string, what = 'the server to listen'): number {
  const file = `${dir}/port`;
  waitFor(what, () => fs.existsSync(file), 10_000);
  return Number(fs.readFileSync(file, 'utf8'));
}

/** A task's state letter and ids, as /proc/PID/stat gives them. */
export interface StatIds {
  state: string;
  ppid: number;
  pgid: number;
  sid: number;
}

/** The state, ppid, pgid and sid of PID from /proc/PID/stat; throws when there is no such task. */
export function statIds(pid: number): StatIds {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const [state, ppid, pgid, sid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { state: state!, ppid: Number(ppid), pgid: Number(pgid), sid: Number(sid) };
}

/** Every process in /proc but zombies, pid -> ppid (in /proc's order); those gone meanwhile are left out. */
function liveParents(): Map<number, number> {
  const parents = new Map<number, number>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const { state, ppid } = statIds(Number(name));
      if (state !== 'Z') parents.set(Number(name), ppid);
    } catch {
      // gone meanwhile
    }
  }
  return parents;
}

/** The live (not zombie) children of `pid`, host pids in /proc's order. */
export function childrenOf(pid: number): number[] {
  return [...liveParents()].filter(([, ppid]) => ppid === pid).map(([child]) => child);
}

/** The live (not zombie) descendants of `root`, host pids, depth-first with siblings by pid. */
export function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const [pid, ppid] of liveParents()) children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of (children.get(p) ?? []).sort((a, b) => a - b)) {
      out.push(c);
      walk(c);
    }
  };
  walk(root);
  return out;
}

/** What follows "NAME:" in /proc/PID/status, trimmed; throws when PID or the field is missing. */
function statusField(pid: number, name: string): string {
  const line = fs
    .readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${name}:`));
  if (line === undefined) throw new Error(`no ${name} in /proc/${pid}/status`);
  return line.slice(name.length + 1).trim();
}

/** The pids of PID in each pid namespace, outermost (the host's) first: /proc/PID/status NSpid. */
export function nsPids(pid: number): number[] {
  return statusField(pid, 'NSpid').split(/\s+/).filter(Boolean).map(Number);
}

/** The pid tracing PID (0 when none): /proc/PID/status TracerPid. */
export function tracerPid(pid: number): number {
  return Number(statusField(pid, 'TracerPid'));
}

/** The /proc/PID/ns/TYPE link of `pid` (e.g. "ipc:[4026531839]"): equal for tasks in the same namespace. */
export function namespaceOf(pid: number | 'self', type: string): string {
  return fs.readlinkSync(`/proc/${pid}/ns/${type}`);
}

/** Runs `nsenter -t PID FLAGS... CMD...` (e.g. flags ['-p', '-m']) and returns its stdout. */
export function nsenter(pid: number, flags: string[], cmd: string[]): string {
  return execFileSync('nsenter', ['-t', String(pid), ...flags, ...cmd], { encoding: 'utf8' });
}

/**
 * The last `length` bytes of `pid`'s vDSO (its padding, where ckpt runs its
 * first and last injected call of a checkpoint), as /proc/PID/mem shows them.
 */
export function vdsoTail(pid: number, length = 256): Buffer {
  const line = fs
    .readFileSync(`/proc/${pid}/maps`, 'utf8')
    .split('\n')
    .find((l) => l.endsWith('[vdso]'));
  if (!line) throw new Error(`pid ${pid} has no vDSO`);
  const end = Number.parseInt(line.split('-')[1]!.split(' ')[0]!, 16);
  const fd = fs.openSync(`/proc/${pid}/mem`, 'r');
  try {
    const out = Buffer.alloc(length);
    fs.readSync(fd, out, 0, length, end - length);
    return out;
  } finally {
    fs.closeSync(fd);
  }
}
