/**
 * Starting processes without node:child_process.
 *
 * libuv reaps the children it spawned from its SIGCHLD handler, which would
 * swallow the ptrace stops of a child we trace; posix_spawn through libc
 * gives a child that only we wait for (with `waitStop`/`reap`).
 */
import { execFileSync } from 'node:child_process';
import { CkptError } from '../errors.js';
import { errnoName, libc } from './libc.js';

/** posix_spawnattr flags. */
const ENOEXEC = 8;
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
const POSIX_SPAWN_SETSID = 0x80;
const O_RDONLY = 0;
const O_WRONLY = 1;
const O_RDWR = 2;
const O_CREAT = 0x40;
const O_TRUNC = 0x200;

// glibc's posix_spawn_file_actions_t is 80 bytes and posix_spawnattr_t 336
// bytes on 64-bit; sigset_t is 128. Over-allocate: they are opaque to us.
const OPAQUE_SIZE = 1024;

/** Where a spawned process's standard stream goes. */
export type StdioTarget = 'inherit' | 'null' | { path: string; append?: boolean } | { fd: number };

/** Options of {@link spawnProcess}. */
export interface SpawnOptions {
  /** Environment (default: this process's). */
  env?: Record<string, string | undefined>;
  /** Look `argv[0]` up on PATH (posix_spawnp). Default: true unless it contains '/'. */
  searchPath?: boolean;
  /** Start a new session (setsid) in the child. */
  setsid?: boolean;
  /** stdin, stdout, stderr. Default: all '/dev/null'. */
  stdio?: [StdioTarget, StdioTarget, StdioTarget];
}

/**
 * Start `argv` as a child of this process with posix_spawn and return its
 * pid. Signal dispositions are reset to default and the signal mask is
 * emptied in the child (Node ignores SIGPIPE, which children would inherit).
 * Collect the child with `reap` when it is done.
 */
export function spawnProcess(argv: readonly string[], options: SpawnOptions = {}): number {
  const file = argv[0];
  if (file === undefined) throw new CkptError('EINVAL', 'spawnProcess needs a program to run');
  const c = libc();
  const actions = Buffer.alloc(OPAQUE_SIZE);
  const attr = Buffer.alloc(OPAQUE_SIZE);
  const sigs = Buffer.alloc(OPAQUE_SIZE);
  c.fileActionsInit(actions);
  c.attrInit(attr);
  try {
    const stdio = options.stdio ?? ['null', 'null', 'null'];
    stdio.forEach((target, fd) => {
      if (target === 'inherit') return;
      if (target === 'null') {
        c.fileActionsAddOpen(actions, fd, '/dev/null', fd === 0 ? O_RDONLY : O_RDWR, 0);
      } else if ('fd' in target) {
        c.fileActionsAddDup2(actions, target.fd, fd);
      } else {
        const flags = fd === 0 ? O_RDONLY : O_WRONLY | O_CREAT | (target.append ? 0x400 : O_TRUNC);
        c.fileActionsAddOpen(actions, fd, target.path, flags, 0o644);
      }
    });
    // Nothing but stdio is passed on: fds ckpt inherited or opened (its
    // caller's pipes, say) are none of the new process's business.
    c.fileActionsAddCloseFrom(actions, 3);
    // Every signal back to its default, glibc's own two (32 and 33, which
    // sigfillset leaves out) included: else its spawn ignores them in the
    // child, and they stay ignored across exec (in the restore stub, so in
    // every task cloned from it, and in what `ckpt run` starts).
    c.sigfillset(sigs);
    sigs.fill(0xff, 0, 8);
    c.attrSetSigDefault(attr, sigs);
    c.sigemptyset(sigs);
    c.attrSetSigMask(attr, sigs);
    const flags =
      POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | (options.setsid ? POSIX_SPAWN_SETSID : 0);
    c.attrSetFlags(attr, flags);

    const env = Object.entries(options.env ?? process.env)
      .filter((e): e is [string, string] => e[1] !== undefined)
      .map(([k, v]) => `${k}=${v}`);
    const pidOut = [0];
    const search = options.searchPath ?? !file.includes('/');
    const fn = search ? c.posixSpawnp : c.posixSpawn;
    const err = fn(pidOut, file, actions, attr, [...argv, null], [...env, null]);
    if (err !== 0) {
      throw new CkptError(
        err === 2 ? 'ENOENT' : 'ESYS',
        `cannot start ${file}: posix_spawn failed with ${errnoName(err)}${err === ENOEXEC ? ' (not a program this kernel can run: a binary for another architecture, or a 32-bit one on a kernel without 32-bit support)' : ''}`,
        { path: file, syscall: 'posix_spawn', errno: err },
      );
    }
    return pidOut[0] ?? 0;
  } finally {
    c.fileActionsDestroy(actions);
    c.attrDestroy(attr);
  }
}

/**
 * Start a shell command as an orphan — NOT a child of this process (its
 * parent, a shell, exits at once and it is reparented to init or the
 * nearest subreaper) — and return its pid. For tests of tracing processes
 * we did not start. Its stdio is /dev/null.
 */
export function spawnDetached(command: string): number {
  const out = execFileSync('/bin/sh', ['-c', `${command} </dev/null >/dev/null 2>&1 & echo $!`], {
    encoding: 'utf8',
  });
  const pid = Number.parseInt(out.trim(), 10);
  if (!Number.isInteger(pid) || pid <= 0) {
    throw new CkptError(
      'ESYS',
      `could not start '${command}' in the background: got '${out.trim()}'`,
    );
  }
  return pid;
}
