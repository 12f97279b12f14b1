/**
 * Starting a workload that ckpt can checkpoint later (`ckpt run`): a
 * command in its own session, or a container — fresh pid, uts, ipc and
 * mount namespaces with the command as the pid namespace's init.
 *
 * The container is made by util-linux `unshare --fork`: the first child of
 * a new pid namespace is its pid 1, so unshare forks the init and waits for
 * it. Left alone, that unshare would stay on the host as the init's parent,
 * outside the checkpointed tree but *inside* the container's uts, ipc and
 * mount namespaces (it unshared them itself; its pid_for_children is the
 * container's pid namespace) and holding the init's stdio file
 * descriptions: every one a leak for a whole-container checkpoint. So once
 * the init runs the command, unshare is killed (it gives the init no
 * parent-death signal without `--kill-child`): the init is reparented to
 * the host's init or subreaper, just as a plain workload is when `ckpt run`
 * exits, and the container references nothing outside itself.
 */

import { accessSync, closeSync, constants, openSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CkptError } from '../errors.js';
import { inNewNamespace } from '../kernel/setns.js';
import { bringInterfaceUp } from '../kernel/sockets.js';
import { type StdioTarget, spawnProcess } from '../kernel/spawn.js';
import { decodeWaitStatus, describeEnd, reap } from '../kernel/wait.js';
import { readStat } from '../proc/stat.js';
import { readStatus } from '../proc/status.js';
import { readCmdline } from '../proc/task.js';
import { scanProcesses } from '../proc/tree.js';

/** Options of {@link startWorkload}. */
export interface WorkloadOptions {
  /** The command and its arguments; the command is looked up on PATH. */
  argv: readonly string[];
  /** Run it as the init of fresh pid, uts, ipc and mount namespaces. */
  container?: boolean;
  /**
   * With `container`: a new network namespace too, with nothing but its
   * loopback interface, up.
   */
  network?: boolean;
  /**
   * With `container`: a new time namespace too, so that the container's
   * CLOCK_MONOTONIC and CLOCK_BOOTTIME continue across a checkpoint and
   * restart, on this machine or another, from where they were.
   */
  time?: boolean;
  /** File for its standard output (truncated); default /dev/null. */
  stdout?: string;
  /** File for its standard error (truncated); default /dev/null. */
  stderr?: string;
}

/** A started workload. */
export interface Workload {
  /** The root's pid as the host sees it: the command, or the container's init. */
  pid: number;
  container: boolean;
  /** The root's pid at every pid-namespace level, outermost first (`[pid, 1]` for a container). */
  nsPids: number[];
}

/** How long a container's init may take to exec the command. */
const START_TIMEOUT_MS = 10_000;
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const SIGKILL = 9;

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** `name` resolved on PATH as execvp would; throws ENOENT with `notFound` otherwise. */
function resolveCommand(name: string, notFound: string): string {
  const candidates = name.includes('/')
    ? [name]
    : (process.env.PATH || DEFAULT_PATH).split(':').map((dir) => join(dir || '.', name));
  const found = candidates.find(isExecutableFile);
  if (!found) throw new CkptError('ENOENT', notFound, { path: name });
  return found;
}

/**
 * Open the output files here rather than in the child: a bad path is then
 * reported as itself, not as a failed posix_spawn of the command.
 */
function openOutput(path: string | undefined, fds: number[]): StdioTarget {
  if (path === undefined) return 'null';
  try {
    const fd = openSync(path, 'w', 0o644);
    fds.push(fd);
    return { fd };
  } catch (e) {
    const why = (e as Error).message;
    throw new CkptError('ESYS', `cannot open ${path} for the workload's output: ${why}`, { path });
  }
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));

function sameArgv(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i]);
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, SIGKILL);
  } catch {
    // Already gone: nothing to clean up.
  }
}

/**
 * Wait until `launcher`'s child has exec'd the command and return its pid.
 * The child is found by a /proc scan (no /proc/PID/task/TID/children
 * here); it is ready once its cmdline is none of the launcher stages'
 * (unshare, then setsid), which the kernel replaces at each exec — so the
 * caller never reports a pid that is still setting up the namespace.
 */
function awaitInit(launcher: number, stages: readonly string[][], stderr?: string): number {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const stat = readStat(launcher);
    if (stat.state === 'Z') {
      throw new CkptError(
        'ESYS',
        // The command may have run and failed at once, before a scan saw it.
        `the container ended before ckpt saw its command run: unshare ${describeEnd(decodeWaitStatus(launcher, stat.exitCode))} (${stderr === undefined ? 'use --stderr FILE to see why' : `its stderr is in ${stderr}`})`,
        { pid: launcher },
      );
    }
    const child = scanProcesses().find((p) => p.ppid === launcher);
    if (child) {
      try {
        const cmdline = readCmdline(child.pid);
        if (cmdline.length > 0 && !stages.some((s) => sameArgv(s, cmdline))) return child.pid;
      } catch {
        // It exited between the scan and the read: the next round sees unshare end.
      }
    }
    if (Date.now() >= deadline) {
      throw new CkptError(
        'EAGAIN',
        `the container's init did not start within ${START_TIMEOUT_MS} ms`,
        { pid: launcher },
      );
    }
    Atomics.wait(sleepCell, 0, 0, 2);
  }
}

/** The container's init, checked to be pid 1 of a new pid namespace, and its NSpid. */
function containerInit(launcher: number, stages: readonly string[][], stderr?: string) {
  const pid = awaitInit(launcher, stages, stderr);
  const nsPids = readStatus(pid).nsPid;
  if (nsPids.length < 2 || nsPids.at(-1) !== 1) {
    throw new CkptError(
      'ESYS',
      `unshare's child ${pid} is not the init of a new pid namespace (NSpid ${nsPids.join(' ')})`,
      { pid },
    );
  }
  return { pid, nsPids };
}

function startContainer(
  argv: readonly string[],
  stdio: [StdioTarget, StdioTarget, StdioTarget],
  stderr?: string,
  extra: { network?: boolean; time?: boolean } = {},
): Workload {
  const { network = false } = extra;
  const unshare = resolveCommand(
    'unshare',
    'ckpt run --container needs util-linux unshare on PATH',
  );
  const setsid = resolveCommand('setsid', 'ckpt run --container needs util-linux setsid on PATH');
  // setsid makes the init lead its own session and process group, so the
  // container holds no reference to a session outside it (unshare's).
  const inner = [setsid, ...argv];
  const outer = [
    unshare,
    '--fork',
    '--pid',
    '--uts',
    '--ipc',
    '--mount',
    '--mount-proc',
    '--propagation',
    'private',
    ...(extra.time ? ['--time'] : []),
    '--',
    ...inner,
  ];
  // The network namespace is made here, its loopback brought up, before
  // unshare starts in it: the command never sees lo down.
  const launcher = network
    ? inNewNamespace('net', () => {
        bringInterfaceUp('lo');
        return spawnProcess(outer, { setsid: true, stdio });
      })
    : spawnProcess(outer, { setsid: true, stdio });
  try {
    const { pid, nsPids } = containerInit(launcher, [outer, inner], stderr);
    return { pid, container: true, nsPids };
  } catch (e) {
    // Leave nothing behind. The child is looked up while unshare lives: a
    // dead unshare's children are reparented.
    for (const p of scanProcesses()) if (p.ppid === launcher) killQuietly(p.pid);
    throw e;
  } finally {
    // Done either way; on success see the module comment for why it must
    // not stay. It is our unreaped child, so its pid cannot have been reused.
    killQuietly(launcher);
    reap(launcher);
  }
}

/**
 * Start `argv` detached from the caller — a new session, standard input
 * from /dev/null and output to /dev/null or the given files — and return
 * once it runs, leaving it running. With `container`, the command is the
 * init (pid 1) of fresh pid, uts, ipc and mount namespaces, with /proc
 * remounted for the new pid namespace; the returned pid is the init's as
 * the host sees it, and the `unshare` that made the namespaces is gone.
 * @throws CkptError ENOENT when the command (or unshare) is not found
 */
export function startWorkload(options: WorkloadOptions): Workload {
  const name = options.argv[0];
  if (name === undefined) throw new CkptError('EINVAL', 'no command to run');
  if (options.network && !options.container) {
    throw new CkptError(
      'EINVAL',
      'a network namespace of its own (--net) is for a container: add --container',
    );
  }
  if (options.time && !options.container) {
    throw new CkptError(
      'EINVAL',
      'a time namespace of its own (--time) is for a container: add --container',
    );
  }
  resolveCommand(name, `command not found or not executable: ${name}`);
  const fds: number[] = [];
  try {
    const stdio: [StdioTarget, StdioTarget, StdioTarget] = [
      'null',
      openOutput(options.stdout, fds),
      openOutput(options.stderr, fds),
    ];
    if (options.container) {
      return startContainer(options.argv, stdio, options.stderr, options);
    }
    const pid = spawnProcess(options.argv, { setsid: true, stdio });
    // posix_spawn returns after the exec, so the pid already runs the command.
    return { pid, container: false, nsPids: readStatus(pid).nsPid };
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}
