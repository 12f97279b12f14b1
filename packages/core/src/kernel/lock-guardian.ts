/**
 * What undoes a TCP network lock when ckpt cannot: a checkpoint that will
 * kill its tree holds the tree's connections back (nftables, see
 * net-lock.ts) and puts their sockets in repair mode; if ckpt itself is
 * killed (SIGKILL) before the end, its deferqueue never runs, the tree
 * goes on (ptrace lets it go), but its connections stay locked and in
 * repair mode: they are dead.
 *
 * So such a checkpoint starts a guardian first: a small Node process of
 * its own that waits for ckpt to end (its stdin, a pipe from ckpt, reaches
 * its end) and then watches the tree for a few seconds. A tree that dies
 * (killed as ckpt ended, its image complete) keeps its connections locked
 * for the restart. If any of its processes still runs after that (the same
 * process: start time checked; a zombie counts as dead), the checkpoint
 * did not kill it, and the guardian takes every socket out of repair mode
 * (quietly: ckpt's own undo may have done so already) and lets the
 * connections' packets through again: the peer's next retransmission gets
 * through.
 */
import { spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import { readStatBrief } from '../proc/stat.js';
import type { LockedConnection } from './net-lock.js';

/** A socket of the tree: a process (with its start time, against pid reuse) and the fd. */
export interface GuardedSocket {
  pid: number;
  fd: number;
}

/**
 * Start time of `pid` (/proc/PID/stat's starttime), or undefined when it
 * is gone or a zombie (dead, waiting for its parent).
 */
export function startTimeOf(pid: number): number | undefined {
  try {
    const s = readStatBrief(pid);
    return s.state === 'Z' || s.state === 'X' ? undefined : s.starttime;
  } catch {
    return undefined;
  }
}

/** What the guardian gets (JSON in its argv). */
interface GuardianSpec {
  core: string;
  conns: { addr: string; peer: string }[];
  sockets: GuardedSocket[];
  /** Pid → start time of every process the sockets are in. */
  starts: Record<string, number>;
}

/** The guardian's program (an ES module, run with `--input-type=module -e`). */
const GUARDIAN = `
const spec = JSON.parse(process.argv[1]);
process.stdin.resume();
const undo = async () => {
  const core = await import(spec.core);
  const alive = () => Object.entries(spec.starts).some(([pid, start]) => core.startTimeOf(Number(pid)) === start);
  // A successful checkpoint kills the tree as it ends, without waiting.
  for (let waited = 0; alive() && waited < 3000; waited += 50) await new Promise((r) => setTimeout(r, 50));
  if (!alive()) process.exit(0);
  for (const s of spec.sockets) {
    if (core.startTimeOf(s.pid) !== spec.starts[s.pid]) continue;
    try {
      const fd = core.grabFd(s.pid, s.fd);
      try { core.setTcpRepair(fd, core.TcpRepair.OFF_NO_PROBE); } finally { (await import('node:fs')).closeSync(fd); }
    } catch {}
  }
  core.unlockConnections(spec.conns.map((c) => ({ addr: Buffer.from(c.addr, 'hex'), peer: Buffer.from(c.peer, 'hex') })));
  process.exit(0);
};
process.stdin.on('end', undo);
process.stdin.on('error', undo);
`;

/**
 * Start the guardian of `conns` (locked) and `sockets` (to be put in
 * repair mode) for this ckpt process (see the module comment). It ends by
 * itself once ckpt has.
 */
export function guardLockedConnections(
  conns: readonly LockedConnection[],
  sockets: readonly GuardedSocket[],
): void {
  const starts: Record<string, number> = {};
  for (const s of sockets) {
    const start = startTimeOf(s.pid);
    if (start !== undefined) starts[s.pid] = start;
  }
  const spec: GuardianSpec = {
    core: new URL('./index.js', import.meta.url).href,
    conns: conns.map((c) => ({ addr: c.addr.toString('hex'), peer: c.peer.toString('hex') })),
    sockets: [...sockets],
    starts,
  };
  const child = spawn(
    process.execPath,
    ['--input-type=module', '-e', GUARDIAN, JSON.stringify(spec)],
    { stdio: ['pipe', 'ignore', 'ignore'], detached: true },
  );
  // ckpt's end of the pipe stays open until ckpt ends, however it ends;
  // nothing else keeps ckpt's event loop alive for it.
  child.unref();
  (child.stdin as Socket | null)?.unref();
}
