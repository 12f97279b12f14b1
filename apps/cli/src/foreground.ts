/**
 * `ckpt restart` without -d waits for the restored process as a shell waits
 * for a job: when ckpt runs in the foreground of a terminal, the restored
 * process group gets the terminal's foreground before it runs (so it can
 * read from it, and Ctrl-C reaches it) and ckpt takes it back when the
 * process ends; signals sent to ckpt itself (kill, a hangup) are passed on.
 */
import {
  foregroundGroup,
  readStat,
  reapIfEnded,
  setForegroundGroup,
  type WaitStatus,
} from '@ckpt/core';

const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const;
/** How often the wait looks whether the process has ended. */
const POLL_MS = 20;

/** A restored process ckpt waits for: the terminal it handed it, the signals it passes on. */
export interface Waiter {
  pid: number;
  /** The terminal whose foreground the process has, and ckpt's group, which gets it back. */
  handed?: { fd: number; own: number };
  /** Passes a signal on; installed for FORWARDED while ckpt waits. */
  forward?: (signal: NodeJS.Signals) => void;
}

/**
 * Before `pid` runs: give it the terminal on fd 0 if ckpt is in its
 * foreground and `pid` is in ckpt's session but another group (a job of
 * its own restored into ckpt's session), and start passing signals ckpt
 * gets on to it (a process in ckpt's own group gets the terminal's
 * signals already).
 */
export function beginWait(pid: number): Waiter {
  const own = readStat(process.pid);
  const target = readStat(pid);
  const waiter: Waiter = { pid };
  if (target.pgrp === own.pgrp) return waiter;
  waiter.forward = (signal) => {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone: the wait sees it.
    }
  };
  for (const s of FORWARDED) process.on(s, waiter.forward);
  if (process.stdin.isTTY && target.session === own.session && foregroundGroup(0) === own.pgrp) {
    setForegroundGroup(0, target.pgrp);
    waiter.handed = { fd: 0, own: own.pgrp };
  }
  return waiter;
}

/**
 * Wait until the process (a child of ckpt) ends and return how (undefined
 * if it is not ckpt's child); then stop passing signals on and take back
 * the terminal.
 */
export async function waitInForeground(w: Waiter): Promise<WaitStatus | undefined> {
  try {
    for (;;) {
      const end = reapIfEnded(w.pid);
      if (end !== 'running') return end;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  } finally {
    if (w.forward) for (const s of FORWARDED) process.off(s, w.forward);
    if (w.handed) setForegroundGroup(w.handed.fd, w.handed.own);
  }
}
