/**
 * Files that lead outside the checkpointed process: its terminal, pipes
 * and FIFOs to processes outside the tree, and sockets on its stdio.
 * Nothing of them is saved but which fd they were: restart connects each
 * to a file of the `ckpt restart` process, by default its stdio, as a
 * shell would.
 *
 * The rule, at restart, for saved fd N:
 * - `--inherit-fd N:M` (ctx.inheritFds): ckpt restart's fd M, which must be open;
 * - else, for N = 0, 1, 2: ckpt restart's fd N if it is open;
 * - else, for a terminal (`/dev/tty` that less reads keys from, the fd
 *   255 bash keeps on its terminal): the first of ckpt restart's fds 0-2
 *   that is a terminal, as the stdio that led to it follows ckpt's;
 * - else /dev/null, opened with the saved access mode.
 * ckpt restart's fds above 2 are never used by default: they are Node's
 * own (event loop, signal pipes), not something the user handed over.
 *
 * The fd is copied into the task from inside it (pidfd_open on ckpt's pid,
 * pidfd_getfd), so it shares ckpt restart's open file description: its
 * offset and O_NONBLOCK are ckpt's, as after a fork.
 *
 * A terminal's modes are saved too (a full-screen program or a line
 * editor leaves it without echo, not line by line). When the fd is
 * reconnected to a terminal, restart notes the saved modes for that fd in
 * `ctx.terminalModes`; `ckpt restart` sets them when it hands the
 * terminal to the restored job, and puts its own back when the job ends.
 */
import { fstatSync } from 'node:fs';
import {
  type CheckpointTask,
  CkptError,
  copyFdFromCkpt,
  type FileHandler,
  type FileInfo,
  getTermios,
  openInTask,
  type RestartCtx,
  type RestartTask,
  withFdCopy,
} from '@ckpt/core';
import { major, minor, O_ACCMODE, O_CLOEXEC, O_NONBLOCK } from './flags.js';
import { FileKind, fileExternalRecord } from './records.js';

/** Terminals: pty slaves (136–143), virtual consoles and serial lines (4), /dev/tty and /dev/console (5:0, 5:1). */
function isTty(rdev: number): boolean {
  const ma = major(rdev);
  // 5:2 is /dev/ptmx, a pty master: the process owns that terminal, it
  // does not lead to the caller's.
  return (ma >= 136 && ma <= 143) || ma === 4 || (ma === 5 && minor(rdev) <= 1);
}

/**
 * True when `file` leads outside the checkpointed process (see the module
 * comment). A socket does only as stdio (fds 0-2, as a service manager or
 * ssh hands them over); elsewhere it is the program's own endpoint (a
 * listening server, a connection, a socketpair), which its own handler
 * restores or, if none can, the checkpoint refuses. (An established TCP
 * connection, a unix socket whose peer the tree holds, and a socket
 * waiting for others — listening, or bound and unconnected — are restored
 * as such on fds 0-2 too: their handlers are asked first.)
 */
export function isExternal(file: FileInfo): boolean {
  const { target, stat } = file;
  if (target.kind === 'socket' || stat.type === 'socket') return file.fd <= 2;
  if (target.kind === 'pipe' || stat.type === 'fifo') return true;
  return stat.type === 'chr' && isTty(stat.rdev);
}

/** The modes of the terminal fd `fd` of the task leads to; empty if it is none or they cannot be read. */
function termiosOf(task: CheckpointTask, file: FileInfo): Buffer {
  if (file.stat.type !== 'chr' || !isTty(file.stat.rdev)) return Buffer.alloc(0);
  try {
    return withFdCopy(task.pid, file.fd, getTermios);
  } catch {
    // /dev/tty of a process without a controlling terminal, a hung-up line.
    return Buffer.alloc(0);
  }
}

/** Whether fd `fd` of this process is a terminal. */
function isTtyHere(fd: number): boolean {
  try {
    const st = fstatSync(fd);
    return st.isCharacterDevice() && isTty(st.rdev);
  } catch {
    return false;
  }
}

function isOpenHere(fd: number): boolean {
  try {
    fstatSync(fd);
    return true;
  } catch {
    return false;
  }
}

/** Which fd of ckpt restart saved fd `fd` connects to, or undefined for /dev/null. */
function sourceFd(
  ctx: RestartCtx,
  task: RestartTask,
  fd: number,
  wasTerminal: boolean,
): number | undefined {
  const asked = ctx.inheritFds.get(fd);
  if (asked !== undefined) {
    if (!isOpenHere(asked)) {
      throw new CkptError(
        'EINVAL',
        `--inherit-fd ${fd}:${asked}: fd ${asked} is not open in ckpt restart`,
        {
          pid: task.savedPid,
          fd,
        },
      );
    }
    return asked;
  }
  if (fd <= 2) return isOpenHere(fd) ? fd : undefined;
  return wasTerminal ? [0, 1, 2].find(isTtyHere) : undefined;
}

/** Copy fd `source` of this process into `task`, from inside the task. */
function copyOurFd(task: RestartTask, source: number): number {
  return copyFdFromCkpt(task, source, `copying fd ${source} of ckpt restart`);
}

/** Ttys, pipes, FIFOs and sockets: reconnected to ckpt restart's files. */
export const externalFile: FileHandler = {
  kind: 'external',
  id: FileKind.EXTERNAL,
  match: isExternal,
  checkpoint(ctx, task, file) {
    ctx.write(fileExternalRecord, {
      fd: file.fd,
      flags: file.info.flags & ~O_CLOEXEC,
      target: file.target.text,
      termios: termiosOf(task, file),
    });
  },
  restore(ctx, task) {
    const rec = ctx.read(fileExternalRecord);
    const source = sourceFd(ctx, task, rec.fd, rec.termios.length > 0);
    if (source !== undefined) {
      // The first task's modes for a terminal win: the root's, as a
      // shell sees its job.
      if (rec.termios.length > 0 && !ctx.terminalModes.has(source) && isTtyHere(source)) {
        ctx.terminalModes.set(source, rec.termios);
      }
      return copyOurFd(task, source);
    }
    // Stdio without a counterpart is expected (a detached restart); any
    // other fd losing its file is worth saying.
    const say = rec.fd <= 2 ? ctx.log.info : ctx.log.warn;
    say.call(
      ctx.log,
      `pid ${task.savedPid} fd ${rec.fd} (${rec.target}) led outside the tree: it is connected to /dev/null (--inherit-fd ${rec.fd}:FD gives it one of restart's)`,
    );
    return openInTask(task, '/dev/null', rec.flags & (O_ACCMODE | O_NONBLOCK));
  },
};
