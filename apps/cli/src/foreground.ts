/**
 * `ckpt restart` without -d waits for the restored process as a shell waits
 * for a job: when ckpt runs in the foreground of a terminal, the restored
 * process group gets the terminal's foreground before it runs (so it can
 * read from it, and Ctrl-C reaches it), in the terminal modes it had at
 * the checkpoint (a full-screen program's raw mode, a line editor's
 * no-echo), and is told the window may have changed (SIGWINCH: it
 * redraws on a screen that does not show what it drew); ckpt takes the
 * terminal back, in its own modes, when the process ends. A job stopped
 * from the terminal (Ctrl-Z) stops ckpt too, so that the shell that
 * started ckpt gets the terminal back; `fg` continues both. Signals sent
 * to ckpt itself (kill, a hangup) are passed on.
 */
import { fstatSync } from 'node:fs';
import {
  foregroundGroup,
  getTermios,
  type ReleaseInfo,
  readStat,
  reapIfEndedOrStopped,
  setForegroundGroup,
  setTermios,
  type WaitStatus,
} from '@ckpt/core';

const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const;
/** How often the wait looks whether the process has ended. */
const POLL_MS = 20;

/** A restored process ckpt waits for: the terminal it handed it, the signals it passes on. */
export interface Waiter {
  pid: number;
  /**
   * The terminal whose foreground the process has: ckpt's group, which
   * gets it back, and the job's.
   */
  handed?: { fd: number; own: number; job: number };
  /**
   * The terminal the process reads in ckpt's session: ckpt's own modes,
   * set again at the end, and who to tell of a window change (the job's
   * group, or the process alone in ckpt's).
   */
  terminal?: { fd: number; mine: Buffer; notify: number };
  /** Passes a signal on; installed for FORWARDED while ckpt waits. */
  forward?: (signal: NodeJS.Signals) => void;
}

/**
 * Before `pid` runs: if ckpt is in the foreground of the terminal on fd 0
 * and `pid` is in ckpt's session, set the job's saved modes on it (from
 * `info`) and, if `pid` is another group (a job of its own restored into
 * ckpt's session), give it the terminal; start passing signals ckpt gets
 * on to it (a process in ckpt's own group gets the terminal's signals
 * already).
 */
export function beginWait(pid: number, info?: ReleaseInfo): Waiter {
  const own = readStat(process.pid);
  const target = readStat(pid);
  const waiter: Waiter = { pid };
  const ownGroup = target.pgrp === own.pgrp;
  if (process.stdin.isTTY && target.session !== own.session && info?.terminalModes.size) {
    // A session leader (tmux's vim, a daemon's shell) keeps a session of
    // its own: this terminal cannot become its controlling terminal.
    process.stderr.write(
      `ckpt: warn: pid ${pid} leads a session of its own, so this terminal cannot be its controlling terminal: it reads and writes it, without its terminal modes or job control\n`,
    );
  }
  if (process.stdin.isTTY && target.session === own.session && foregroundGroup(0) === own.pgrp) {
    // Set while ckpt still has the foreground (a background tcsetattr
    // would stop it with SIGTTOU).
    const mine = getTermios(0);
    const saved = info && savedModesOf(0, info.terminalModes);
    if (saved) setTermios(0, jobModes(mine, saved));
    waiter.terminal = { fd: 0, mine, notify: ownGroup ? pid : -target.pgrp };
    if (!ownGroup) {
      setForegroundGroup(0, target.pgrp);
      waiter.handed = { fd: 0, own: own.pgrp, job: target.pgrp };
    }
  }
  if (ownGroup) return waiter;
  waiter.forward = (signal) => {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone: the wait sees it.
    }
  };
  for (const s of FORWARDED) process.on(s, waiter.forward);
  return waiter;
}

/**
 * The restored job's saved modes for the terminal on `fd`: those noted for
 * `fd`, else for another of ckpt's stdio fds on the same terminal (a job
 * whose input was a file but whose output was the terminal).
 */
function savedModesOf(fd: number, modes: ReadonlyMap<number, Buffer>): Buffer | undefined {
  const here = modes.get(fd);
  if (here) return here;
  const rdev = (n: number) => {
    try {
      return fstatSync(n).rdev;
    } catch {
      return -1;
    }
  };
  for (const other of [0, 1, 2]) {
    const m = modes.get(other);
    if (m && rdev(other) === rdev(fd)) return m;
  }
  return undefined;
}

// struct termios2: c_iflag, c_oflag, c_cflag, c_lflag (u32 each), c_line,
// c_cc[19], then c_ispeed and c_ospeed at 36 and 40.
const C_CFLAG = 8;
const C_LINE = 16;
const SPEEDS = 36;

/**
 * The job's input, output and local modes and control characters on the
 * terminal as it is now: its hardware settings (c_cflag, line discipline,
 * speeds) stay the terminal's own, which may be another line than the
 * checkpointed one.
 */
function jobModes(current: Buffer, saved: Buffer): Buffer {
  const out = Buffer.from(current);
  saved.copy(out, 0, 0, C_CFLAG);
  saved.copy(out, C_CFLAG + 4, C_CFLAG + 4, C_LINE);
  saved.copy(out, C_LINE + 1, C_LINE + 1, Math.min(SPEEDS, saved.length));
  return out;
}

/**
 * Once the restored job runs: tell it the window may have changed, if it
 * reads ckpt's terminal.
 */
export function afterRelease(w: Waiter): void {
  if (!w.terminal) return;
  try {
    process.kill(w.terminal.notify, 'SIGWINCH');
  } catch {
    // Gone already: the wait sees it.
  }
}

/**
 * Wait until the process (a child of ckpt) ends and return how (undefined
 * if it is not ckpt's child); then stop passing signals on and take back
 * the terminal.
 */
export async function waitInForeground(w: Waiter): Promise<WaitStatus | undefined> {
  try {
    for (;;) {
      const st = reapIfEndedOrStopped(w.pid);
      if (st === undefined || (st !== 'running' && st.kind !== 'stopped')) return st;
      if (st !== 'running' && w.handed && w.terminal) stopWithJob(w.handed, w.terminal);
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  } finally {
    if (w.forward) for (const s of FORWARDED) process.off(s, w.forward);
    if (w.handed) setForegroundGroup(w.handed.fd, w.handed.own);
    if (w.terminal) setTermios(w.terminal.fd, w.terminal.mine);
  }
}

/**
 * The job holding the terminal was stopped (Ctrl-Z): stop with it, as the
 * job it is to the shell that started ckpt, after taking the terminal
 * back in ckpt's modes; once continued (`fg`), give the job the terminal
 * in the modes it left and continue it too (after `bg`, only continue it).
 * Where ckpt cannot be stopped (an orphaned process group: no shell to
 * continue it) the stop is discarded and the job continues at once.
 */
function stopWithJob(
  handed: NonNullable<Waiter['handed']>,
  terminal: NonNullable<Waiter['terminal']>,
) {
  const jobs = getTermios(handed.fd);
  setForegroundGroup(handed.fd, handed.own);
  setTermios(handed.fd, terminal.mine);
  process.kill(process.pid, 'SIGTSTP');
  if (foregroundGroup(handed.fd) === handed.own) {
    setTermios(handed.fd, jobs);
    setForegroundGroup(handed.fd, handed.job);
  }
  try {
    process.kill(-handed.job, 'SIGCONT');
  } catch {
    // Gone: the wait sees it.
  }
}
