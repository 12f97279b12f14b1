/**
 * Pseudo-terminals whose master the tree holds: `script`, `screen`,
 * `tmux`, `expect`, a terminal emulator, each with the programs running on
 * its slave. Like a pipe (pipe.ts), a pty is one `pty` object, found by
 * its index (N of /dev/pts/N), saved by the first of its ends met:
 * - its modes (termios), window size, packet mode and lock, read through a
 *   copy of the master (terminal-mode ioctls on a master act on its slave);
 * - output the programs wrote that the master has not read yet: read from
 *   the master copy and written back through the slave with output
 *   processing off, so a tree left running still finds it there;
 * - the session it is the controlling terminal of (its leader in the
 *   tree), with the foreground process group.
 * Input typed into the slave but not read yet cannot be read without
 * taking it from the program: a warning says how much is lost.
 *
 * Restart opens a new pty in ckpt (the old number may be taken: programs
 * see the new /dev/pts/N; a session's controlling terminal is made while
 * the tree is built, see core's ctty.ts, so that every member of the
 * session has it), sets its modes and window size and puts the output
 * back. The master is handed to each task that held it (the same
 * open file), each slave is opened anew in its task (O_NOCTTY); once the
 * session leader's fd table is complete, it sets the saved foreground
 * group (TIOCSPGRP).
 *
 * A slave whose master is outside the tree leads outside: the external
 * handler's, reconnected like a terminal.
 */
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import {
  type CheckpointCtx,
  CkptError,
  copyFdFromCkpt,
  type FileHandler,
  type FileInfo,
  getTermios,
  getWinsize,
  grabFd,
  type ObjectOps,
  openInTask,
  PTY_MASTER_PATHS,
  packetMode,
  ptsIndexOfDevice,
  ptsIndexOfTtyNr,
  ptyIndex,
  ptyIndexOf,
  ptyLocked,
  type RestartCtx,
  type RestartTask,
  rawOutput,
  readableBytes,
  readStat,
  readStatus,
  setPacketMode,
  setPtyLocked,
  setTermios,
  setWinsize,
  stage,
  takeSessionPty,
} from '@ckpt/core';
import { major, minor, O_ACCMODE, O_CLOEXEC, O_NONBLOCK, reopenFlags } from './flags.js';
import { FileKind, filePtyRecord, ptyRecord } from './records.js';
import { treeFds } from './tree-fds.js';

const PTY_OBJECT = 'pty';
const O_RDWR = 2;
const O_NOCTTY = 0o400;
const F_SETFL = 4;
const TIOCSCTTY = 0x540e;
const TIOCSPGRP = 0x5410;

interface PtyEnd {
  pid: number;
  fd: number;
}

function isMaster(file: FileInfo): boolean {
  return file.stat.type === 'chr' && major(file.stat.rdev) === 5 && minor(file.stat.rdev) === 2;
}

/** Index of the pty slave `file` is, or undefined. */
function slaveIndex(file: FileInfo): number | undefined {
  if (file.stat.type !== 'chr') return undefined;
  return ptsIndexOfDevice(major(file.stat.rdev), minor(file.stat.rdev));
}

/** The pty masters the tree holds, by index (one holder each), found once per checkpoint. */
const scans = new WeakMap<CheckpointCtx, Map<number, PtyEnd>>();
function treeMasters(ctx: CheckpointCtx): Map<number, PtyEnd> {
  let map = scans.get(ctx);
  if (map) return map;
  map = new Map();
  for (const { pid, fd, target } of treeFds(ctx)) {
    if (target.kind !== 'path' || !PTY_MASTER_PATHS.has(target.path ?? '')) continue;
    const index = ptyIndexOf(pid, fd);
    if (!map.has(index)) map.set(index, { pid, fd });
  }
  scans.set(ctx, map);
  return map;
}

/** /dev/tty: whatever controlling terminal the process that opens it has. */
function isDevTty(file: FileInfo): boolean {
  return file.stat.type === 'chr' && major(file.stat.rdev) === 5 && minor(file.stat.rdev) === 0;
}

/** Index of the pty an fd on /dev/tty reaches: its process's controlling terminal, if a pty. */
function devTtyIndex(file: FileInfo): number | undefined {
  return ptsIndexOfTtyNr(readStat(file.pid).ttyNr);
}

/**
 * True when `file` is a pty master, a slave whose master the tree holds,
 * or /dev/tty in a process whose controlling terminal is such a slave
 * (emacs -nw in screen or tmux: it talks to its terminal through it).
 */
export function isTreePty(ctx: CheckpointCtx, file: FileInfo): boolean {
  if (isMaster(file)) return true;
  const index = isDevTty(file) ? devTtyIndex(file) : slaveIndex(file);
  return index !== undefined && treeMasters(ctx).has(index);
}

/** What the pty handler hands to checkpointObj. */
interface SavedPty {
  ctx: CheckpointCtx;
  index: number;
  master: PtyEnd;
}

/** A restored pty: ckpt's master (closed at the end of restart) and the slave's path. */
interface RestoredPty {
  /** N of /dev/pts/N at checkpoint. */
  index: number;
  master: number;
  slavePath: string;
  /** The foreground group of the session it controls, in the session's pid namespace. */
  foreground: number;
}

/** Read exactly the `n` bytes waiting on master copy `fd` (packet mode: without the status bytes). */
function readOutput(fd: number, n: number, packet: boolean): Buffer {
  const chunks: Buffer[] = [];
  let got = 0;
  const buf = Buffer.alloc(Math.max(n + 1, 4096));
  while (got < n) {
    const r = readSync(fd, buf, 0, buf.length, null);
    if (r <= 0) break;
    const data = packet ? buf.subarray(1, r) : buf.subarray(0, r);
    chunks.push(Buffer.from(data));
    got += data.length;
  }
  return Buffer.concat(chunks);
}

/** Write `data` to the slave with output processing off, so it reaches the master as it is. */
function putBackOutput(master: number, slave: number, termios: Buffer, data: Buffer): void {
  setTermios(master, rawOutput(termios));
  try {
    let put = 0;
    while (put < data.length) put += writeSync(slave, data, put);
  } finally {
    setTermios(master, termios);
  }
}

/** The session leader of the tree whose controlling terminal pty `index` is, and its foreground group. */
function controlledSession(
  ctx: CheckpointCtx,
  index: number,
): { leader: number; foreground: number } | undefined {
  for (const pid of ctx.pids) {
    const st = readStat(pid);
    if (ptsIndexOfTtyNr(st.ttyNr) !== index || st.session !== pid) continue;
    // The foreground group as the leader's own pid namespace numbers it.
    const member = ctx.pids.find((p) => p !== pid && readStat(p).pgrp === st.tpgid);
    const ids = readStatus(member ?? pid).nsPgid;
    if (!member && st.tpgid !== st.pgrp) {
      ctx.log.warn(
        `pid ${pid}: the foreground process group ${st.tpgid} of its terminal /dev/pts/${index} is not in the tree; its own group will be`,
      );
    }
    return { leader: pid, foreground: ids[ids.length - 1] ?? st.pgrp };
  }
  return undefined;
}

/** True when `pid` holds an fd on the slave of pty `index`. */
function holdsSlave(ctx: CheckpointCtx, pid: number, index: number): boolean {
  return treeFds(ctx).some((t) => t.pid === pid && t.target.path === `/dev/pts/${index}`);
}

export const ptyObject: ObjectOps<SavedPty | RestoredPty> = {
  name: PTY_OBJECT,
  id: 310,
  checkpoint(ctx, obj) {
    const { index, master } = obj as SavedPty;
    const what = `pid ${master.pid} fd ${master.fd}: pty /dev/pts/${index}`;
    const m = grabFd(master.pid, master.fd);
    let slave = -1;
    try {
      const termios = getTermios(m);
      const packet = packetMode(m);
      const locked = ptyLocked(m);
      let output: Buffer = Buffer.alloc(0);
      if (!locked) {
        slave = openSync(`/dev/pts/${index}`, O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
        const pending = readableBytes(m);
        if (pending > 0) {
          output = readOutput(m, pending, packet);
          putBackOutput(m, slave, termios, output);
        }
        const typed = readableBytes(slave);
        if (typed > 0) {
          ctx.log.warn(
            `${what}: ${typed} byte(s) of input not read yet by the programs on it are not saved`,
          );
        }
      }
      let session = controlledSession(ctx, index);
      if (session && !holdsSlave(ctx, session.leader, index)) {
        ctx.log.warn(
          `pid ${session.leader}: its controlling terminal /dev/pts/${index} is not restored as such: it holds no fd on it`,
        );
        session = undefined;
      }
      ctx.write(ptyRecord, {
        index,
        termios,
        winsize: getWinsize(m),
        packetMode: packet,
        locked,
        output,
        sessionLeader: session?.leader ?? 0,
        foreground: session?.foreground ?? 0,
      });
    } catch (e) {
      if (e instanceof CkptError && e.code !== 'ESYS') throw e;
      throw new CkptError('ESYS', `${what}: ${(e as Error).message}`, {
        pid: master.pid,
        fd: master.fd,
      });
    } finally {
      closeSync(m);
      if (slave >= 0) closeSync(slave);
    }
  },
  restore(ctx) {
    const rec = ctx.read(ptyRecord);
    // The pty of a session's controlling terminal was made when the tree
    // was built (core's ctty.ts); any other is made now.
    const made = takeSessionPty(ctx, rec.index);
    const master = made?.master ?? openSync('/dev/ptmx', O_RDWR | O_NOCTTY | O_CLOEXEC);
    let slave = -1;
    try {
      setPtyLocked(master, false);
      const slavePath = made?.slavePath ?? `/dev/pts/${ptyIndex(master)}`;
      slave = openSync(slavePath, O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
      setWinsize(master, rec.winsize);
      setTermios(master, rec.termios);
      if (rec.output.length > 0) putBackOutput(master, slave, rec.termios, rec.output);
      if (rec.packetMode) setPacketMode(master, true);
      if (rec.locked) setPtyLocked(master, true);
      const fds = [master, slave];
      const close = () => {
        for (const fd of fds) closeSync(fd);
      };
      ctx.deferqueue.add(null, close, close);
      if (slavePath !== `/dev/pts/${rec.index}`) {
        ctx.log.info(`pty /dev/pts/${rec.index} is restored as ${slavePath}`);
      }
      const pty: RestoredPty = { index: rec.index, master, slavePath, foreground: rec.foreground };
      if (rec.sessionLeader !== 0) {
        const byLeader = controlling.get(ctx) ?? new Map<number, RestoredPty>();
        controlling.set(ctx, byLeader);
        byLeader.set(rec.sessionLeader, pty);
      }
      return pty;
    } catch (e) {
      closeSync(master);
      if (slave >= 0) closeSync(slave);
      throw new CkptError('ESYS', `recreating pty /dev/pts/${rec.index}: ${(e as Error).message}`);
    }
  },
  describe(p) {
    return `pty /dev/pts/${p.index}`;
  },
};

/** Per restart, the ptys to make controlling terminals, by the saved pid of their session leader. */
const controlling = new WeakMap<RestartCtx, Map<number, RestoredPty>>();

/**
 * Once the fd table of `task` is complete: if it is the session leader of
 * a restored pty, give the session its saved foreground group (TIOCSPGRP,
 * through a slave it opens for this, O_NOCTTY; every group exists by
 * now). The pty is its controlling terminal already (core's ctty.ts);
 * TIOCSCTTY again is a no-op then, and takes it where core did not. The
 * pty object is restored by then: the leader holds an fd on it, which
 * checkpoint checked.
 */
export function restoreControllingTerminal(ctx: RestartCtx, task: RestartTask): void {
  const pty = controlling.get(ctx)?.get(task.savedPid);
  if (!pty) return;
  controlling.get(ctx)!.delete(task.savedPid);
  const what = `pid ${task.savedPid}: making ${pty.slavePath} its controlling terminal`;
  const fd = openInTask(task, pty.slavePath, O_RDWR | O_NOCTTY | O_CLOEXEC);
  task.sys.check('ioctl', [fd, TIOCSCTTY, 0], what);
  // Under new pids (--no-pids) the saved group number means nothing: the
  // leader's own group stays in the foreground, as TIOCSCTTY left it.
  const fg = task.pid === task.savedPid ? pty.foreground : 0;
  if (fg > 0) {
    const pgrp = Buffer.alloc(4);
    pgrp.writeInt32LE(fg, 0);
    const [addr] = stage(task, [pgrp]);
    task.sys.check('ioctl', [fd, TIOCSPGRP, addr!], `${what} (foreground group ${fg})`);
  }
  task.sys.post([{ name: 'close', args: [fd] }]);
}

/** Ends of ptys whose master the tree holds (chosen by the files phase, never by match). */
export const ptyFile: FileHandler = {
  kind: 'pty',
  id: FileKind.PTY,
  match: () => false,
  checkpoint(ctx, _task, file) {
    const master = isMaster(file);
    const devTty = isDevTty(file);
    const index = master
      ? ptyIndexOf(file.pid, file.fd)
      : devTty
        ? devTtyIndex(file)!
        : slaveIndex(file)!;
    const holder = master ? { pid: file.pid, fd: file.fd } : treeMasters(ctx).get(index)!;
    const pty = ctx.checkpointObj(PTY_OBJECT, `pty:${index}`, {
      ctx,
      index,
      master: holder,
    } satisfies SavedPty);
    ctx.write(filePtyRecord, { pty, master, flags: reopenFlags(file.info.flags), devTty });
  },
  restore(ctx, task) {
    const rec = ctx.read(filePtyRecord);
    const pty = ctx.fetchObj<RestoredPty>(rec.pty, PTY_OBJECT);
    if (rec.master) {
      const what = `restoring the master of pty /dev/pts/${pty.index}`;
      const fd = copyFdFromCkpt(task, pty.master, what);
      task.sys.check('fcntl', [fd, F_SETFL, rec.flags & O_NONBLOCK], what);
      return fd;
    }
    const flags = (rec.flags & (O_ACCMODE | O_NONBLOCK)) | O_NOCTTY | O_CLOEXEC;
    if (rec.devTty) {
      // The task's controlling terminal is the restored pty by now (core's
      // ctty.ts); where it is not, its slave is the same terminal.
      try {
        return openInTask(task, '/dev/tty', flags);
      } catch {
        ctx.log.warn(
          `pid ${task.savedPid}: /dev/tty (pty /dev/pts/${pty.index}) is not its controlling terminal after restart; it gets ${pty.slavePath} itself`,
        );
      }
    }
    return openInTask(task, pty.slavePath, flags);
  },
};
