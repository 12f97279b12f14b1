/**
 * Controlling terminals that are ptys of the tree (a shell under `script`,
 * `screen` or `expect`). The kernel gives a process its controlling
 * terminal only when its session leader takes it (TIOCSCTTY) or by
 * inheritance at fork: a member that exists before its leader takes the
 * terminal never gets it (no /dev/tty, no job-control stops). So restart
 * makes the pty, in ckpt, right when a session leader is created and has
 * called setsid, and the leader takes it before any of its children exist.
 * `@ckpt/fs` restores the pty itself (modes, window size, unread output,
 * the foreground group) onto the pty made here ({@link takeSessionPty}).
 *
 * Checkpoint records, per session leader, 1 + N when its controlling
 * terminal is /dev/pts/N and the tree holds the master of N (0 otherwise):
 * a terminal outside the tree is the caller's, reconnected as stdio.
 */

import { closeSync, openSync } from 'node:fs';
import { CkptError } from '../errors.js';
import { errnoText } from '../kernel/libc.js';
import { ptyIndex, ptyIndexOf, setPtyLocked } from '../kernel/tty.js';
import { listFds, readFdTarget } from '../proc/index.js';
import { openInTask, type TaskAccess } from './task-io.js';

/** Unix98 pty slaves: majors 136-143, 256 minors each. */
const PTS_MAJOR_FIRST = 136;
const PTS_MAJOR_LAST = 143;
/** The paths a pty master is opened by (what /proc/PID/fd/N shows). */
export const PTY_MASTER_PATHS: ReadonlySet<string> = new Set(['/dev/ptmx', '/dev/pts/ptmx']);
const O_RDWR = 2;
const O_NOCTTY = 0o400;
const O_CLOEXEC = 0o2000000;
const TIOCSCTTY = 0x540e;

/** The index N of /dev/pts/N whose device numbers these are, or undefined for another device. */
export function ptsIndexOfDevice(major: number, minor: number): number | undefined {
  if (major < PTS_MAJOR_FIRST || major > PTS_MAJOR_LAST) return undefined;
  return (major - PTS_MAJOR_FIRST) * 256 + minor;
}

/** The pty index of a controlling terminal as /proc/PID/stat's tty_nr gives it, or undefined. */
export function ptsIndexOfTtyNr(ttyNr: number): number | undefined {
  return ptsIndexOfDevice((ttyNr >> 8) & 0xfff, (ttyNr & 0xff) | ((ttyNr >> 12) & 0xfff00));
}

/** Indexes of the ptys whose master some process of `pids` holds. */
export function ptyMastersOf(pids: readonly number[]): Set<number> {
  const found = new Set<number>();
  for (const pid of pids) {
    let fds: number[];
    try {
      fds = listFds(pid);
    } catch {
      continue; // a zombie
    }
    for (const fd of fds) {
      if (PTY_MASTER_PATHS.has(readFdTarget(pid, fd).path ?? '')) found.add(ptyIndexOf(pid, fd));
    }
  }
  return found;
}

/**
 * The `ctty` field of each tree entry: 1 + N for a session leader whose
 * controlling terminal is /dev/pts/N, a pty of the tree. `ttyNr` gives an
 * entry's tty_nr, undefined for a zombie; the masters are looked for only
 * when a session leader has a pty as its terminal.
 */
export function controllingPtys(
  entries: readonly { pid: number; sid: number }[],
  ttyNr: (pid: number) => number | undefined,
): number[] {
  const wanted = entries.map((e) => {
    const nr = e.pid === e.sid ? ttyNr(e.pid) : undefined;
    return nr === undefined ? undefined : ptsIndexOfTtyNr(nr);
  });
  if (wanted.every((i) => i === undefined)) return entries.map(() => 0);
  const masters = ptyMastersOf(entries.map((e) => e.pid));
  return wanted.map((i) => (i !== undefined && masters.has(i) ? i + 1 : 0));
}

/** A pty made for a session at restart: ckpt's master, and its slave's path. */
export interface SessionPty {
  master: number;
  slavePath: string;
}

/** Per restart (keyed by its context), the ptys made so far, by saved index. */
const made = new WeakMap<object, Map<number, SessionPty>>();

/**
 * Make a new pty for saved pty `index` (once per restart `owner`) and make
 * it the controlling terminal of `task`, a session leader that has just
 * called setsid. ckpt's master fd goes to whoever takes the pty
 * ({@link takeSessionPty}), else {@link closeSessionPtys} closes it.
 */
export function giveSessionPty(owner: object, index: number, task: TaskAccess): void {
  let byIndex = made.get(owner);
  if (!byIndex) {
    byIndex = new Map();
    made.set(owner, byIndex);
  }
  let pty = byIndex.get(index);
  if (!pty) {
    const master = openSync('/dev/ptmx', O_RDWR | O_NOCTTY | O_CLOEXEC);
    try {
      setPtyLocked(master, false);
      pty = { master, slavePath: `/dev/pts/${ptyIndex(master)}` };
    } catch (e) {
      closeSync(master);
      throw e;
    }
    byIndex.set(index, pty);
  }
  const what = `pid ${task.pid}: making ${pty.slavePath} (for /dev/pts/${index}) its controlling terminal`;
  const fd = openInTask(task, pty.slavePath, O_RDWR | O_NOCTTY | O_CLOEXEC);
  const r = task.sys.call('ioctl', [fd, TIOCSCTTY, 0]);
  task.sys.post([{ name: 'close', args: [fd] }]);
  if (r < 0n) {
    throw new CkptError('ESYS', `${what}: TIOCSCTTY failed (${errnoText(Number(-r))})`, {
      pid: task.pid,
    });
  }
}

/**
 * The pty made at restart for saved pty `index`, if any; taken, so the
 * caller owns its master fd from now on.
 */
export function takeSessionPty(owner: object, index: number): SessionPty | undefined {
  const byIndex = made.get(owner);
  const pty = byIndex?.get(index);
  if (pty) byIndex!.delete(index);
  return pty;
}

/** Close the masters of the ptys made for `owner` that nobody took. */
export function closeSessionPtys(owner: object): void {
  for (const pty of made.get(owner)?.values() ?? []) closeSync(pty.master);
  made.delete(owner);
}
