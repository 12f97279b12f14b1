/**
 * The process tree. Parent links are read from /proc/PID/stat of every
 * process: /proc/PID/task/TID/children only lists the children forked by
 * that one thread and is missing without CONFIG_PROC_CHILDREN.
 */
import { readdirSync } from 'node:fs';
import { CkptError } from '../errors.js';
import { readStatBrief } from './stat.js';
import { readProcDir } from './util.js';

/** One process as the tree needs it. */
export interface ProcessInfo {
  pid: number;
  /** Pid of the parent process (its thread group leader); 0 for pid 1 and kthreadd. */
  ppid: number;
  /** Process group id. */
  pgid: number;
  /** Session id. */
  sid: number;
  /** One letter, as in /proc/PID/stat. */
  state: string;
  comm: string;
  /** Clock ticks after boot: tells a process from a later one with a reused pid. */
  starttime: number;
}

function isVanished(e: unknown): boolean {
  return e instanceof CkptError && (e.code === 'ESRCH' || e.code === 'ENOENT');
}

/**
 * Every process visible in /proc (thread group leaders only), ascending by
 * pid. Processes that exit during the scan are left out.
 */
export function scanProcesses(): ProcessInfo[] {
  const out: ProcessInfo[] = [];
  const pids = readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number)
    .sort((a, b) => a - b);
  for (const pid of pids) {
    try {
      const s = readStatBrief(pid);
      out.push({
        pid,
        ppid: s.ppid,
        pgid: s.pgrp,
        sid: s.session,
        state: s.state,
        comm: s.comm,
        starttime: s.starttime,
      });
    } catch (e) {
      if (!isVanished(e)) throw e;
    }
  }
  return out;
}

/**
 * The process `rootPid` and all its descendants, depth-first: the root
 * first, then each child's whole subtree, children in ascending pid order.
 * @param processes - a scan to reuse (by default a fresh {@link scanProcesses})
 * @throws CkptError ESRCH when `rootPid` is not running
 */
export function collectSubtree(
  rootPid: number,
  processes: readonly ProcessInfo[] = scanProcesses(),
): ProcessInfo[] {
  const byPid = new Map<number, ProcessInfo>();
  const children = new Map<number, ProcessInfo[]>();
  for (const p of processes) {
    byPid.set(p.pid, p);
    const siblings = children.get(p.ppid);
    if (siblings) siblings.push(p);
    else children.set(p.ppid, [p]);
  }
  const root = byPid.get(rootPid);
  if (!root) {
    throw new CkptError('ESRCH', `process ${rootPid} does not exist (it may have exited)`, {
      pid: rootPid,
    });
  }
  const out: ProcessInfo[] = [];
  // The scan is not atomic: a pid reused mid-scan can make a parent cycle,
  // so each process is visited once.
  const seen = new Set<number>();
  // Explicit stack, children pushed in descending order so the lowest pid
  // pops first; deep chains of processes cannot overflow the JS stack.
  const stack = [root];
  for (let p = stack.pop(); p; p = stack.pop()) {
    if (seen.has(p.pid)) continue;
    seen.add(p.pid);
    out.push(p);
    const kids = [...(children.get(p.pid) ?? [])].sort((a, b) => b.pid - a.pid);
    stack.push(...kids);
  }
  return out;
}

/**
 * Thread ids of a process (/proc/PID/task), ascending. The leader's tid is
 * the pid, but after pid wrap-around it need not be the smallest.
 * @throws CkptError ESRCH when the process is gone
 */
export function threadsOf(pid: number): number[] {
  return readProcDir(pid, 'task')
    .map(Number)
    .sort((a, b) => a - b);
}
