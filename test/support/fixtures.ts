/**
 * Test fixtures for checkpoint/restart: small programs under test/fixtures
 * that set up some state, wait to be checkpointed, and (after "go", or
 * after a restart) verify themselves and report PASS or FAIL.
 *
 * Protocol (files in a fresh work directory, passed as argv[1]):
 *   layout  optional, "key value..." lines (addresses, fd numbers, ...),
 *           complete before `ready` appears
 *   ready   the fixture's pid and "\n", written once its state is set up
 *   go      created by the harness (go()); the fixture polls for it
 *   result  "PASS[ extra]\n" or "FAIL: what\n", written when done
 *   stdout, stderr   the fixture's stdio (stdin is /dev/null)
 *   launched, exit   written by the launcher: the pid it forked, and how
 *                    that process ended ("exit N" / "signal N")
 *
 * Processes are started through test/fixtures/launch.c: Node spawns the
 * launcher, which forks the fixture in a new session and waits for it. The
 * fixture is therefore not a child of Node (libuv reaps its own children,
 * which would interfere with ptrace), but it is reaped as soon as it dies:
 * pid 1 of this machine reaps orphans only lazily (about a second later),
 * and until then the zombie keeps its pid taken (a restart wants it back).
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

export const FIXTURES_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../fixtures',
);
export const CACHE_DIR = path.join(os.tmpdir(), 'ckpt-fixtures');

/** Every fixture, by the name startFixture() takes. */
export const FIXTURE_NAMES = [
  'mem_vmas',
  'fpu_regs',
  'gp_regs',
  'files',
  'signals',
  'sleeper',
  'timers',
  'pauser',
  'waiter',
  'counter',
  'counter.py',
  'counter.sh',
  'rlimits_creds',
  'tree_basic',
  'tree_share',
  'tree_share_pipe',
  'tree_shared_memory',
  'threads',
  'threads.py',
  'mp_pool.py',
  'ghost',
  'evfds',
  'rseq_cs',
  'sigflood',
  'sockets',
  'unixpair',
  'sysvipc',
] as const;
export type FixtureName = (typeof FIXTURE_NAMES)[number];

/** Helper programs under test/fixtures that are not fixtures. */
const HELPERS = ['launch', 'poke_regs', 'sigsend'];

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
/** Blocks the calling thread for `ms` milliseconds. */
export function sleepSync(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}

function mtime(p: string): number {
  try {
    return fs.statSync(p).mtimeMs;
  } catch {
    return -1;
  }
}

/**
 * Compiles test/fixtures/NAME.c (a fixture or a helper) into the cache
 * directory with `gcc -O1 -g -Wall`, only when the binary is older than the
 * source or fixture.h, and returns the binary's path. Throws with gcc's
 * output when compilation fails.
 */
export function compileFixture(name: string): string {
  const src = path.join(FIXTURES_DIR, `${name}.c`);
  if (!fs.existsSync(src)) throw new Error(`no fixture source ${src}`);
  fs.mkdirSync(CACHE_DIR, { recursive: true });
  const bin = path.join(CACHE_DIR, name);
  const newest = Math.max(mtime(src), mtime(path.join(FIXTURES_DIR, 'fixture.h')));
  if (mtime(bin) >= newest) return bin;
  const tmp = `${bin}.${process.pid}.tmp`;
  try {
    execFileSync('gcc', ['-O1', '-g', '-Wall', '-o', tmp, src], {
      cwd: FIXTURES_DIR,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (e) {
    const err = e as { stdout?: Buffer; stderr?: Buffer; message: string };
    throw new Error(
      `compiling fixture ${name} failed: ${err.message}\n${err.stdout?.toString() ?? ''}${
        err.stderr?.toString() ?? ''
      }`,
    );
  }
  fs.renameSync(tmp, bin);
  return bin;
}

let pythonExe: string | undefined;
/**
 * The python3 interpreter itself, not a pyenv shim: a shim may fork
 * (while pyenv rehashes) instead of exec'ing it, and a test would then
 * take the shim's pid for the program's.
 */
export function python(): string {
  if (!pythonExe) {
    // resolve pyenv-style shims to the real interpreter, so that the pid we
    // get is the interpreter's (no wrapper script in between)
    pythonExe = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], {
      encoding: 'utf8',
    }).trim();
  }
  return pythonExe;
}

/** The argv (absolute paths) that runs fixture NAME, without the work dir. */
export function fixtureCommand(name: string): string[] {
  if (name.endsWith('.py')) return [python(), path.join(FIXTURES_DIR, name)];
  if (name.endsWith('.sh')) return ['/usr/bin/dash', path.join(FIXTURES_DIR, name)];
  return [compileFixture(name)];
}

/** The contents of file P, or `dflt` when it cannot be read (missing, gone…). */
export function readOr(p: string, dflt = ''): string {
  try {
    return fs.readFileSync(p, 'utf8');
  } catch {
    return dflt;
  }
}

/** The state letter of /proc/PID/stat, or undefined when there is no such task. */
export function procState(pid: number): string | undefined {
  const stat = readOr(`/proc/${pid}/stat`);
  if (!stat) return undefined;
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
}

/** True when PID exists and is neither a zombie nor dead. */
export function isAlive(pid: number): boolean {
  const s = procState(pid);
  return s !== undefined && s !== 'Z' && s !== 'X';
}

/**
 * SIGKILLs PID and waits until it is gone (reaped by its parent: the
 * launcher, for a fixture that was not restarted) or at least a zombie
 * (whose reaping is up to its parent). Throws if it is still alive after
 * `timeoutMs`.
 */
export function killAndReap(pid: number, timeoutMs = 5000): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return;
    throw e;
  }
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const s = procState(pid);
    if (s === undefined) return;
    if (s === 'Z' || s === 'X') {
      // give the parent a moment to reap it, then accept the zombie
      const grace = Date.now() + 200;
      while (Date.now() < grace && procState(pid) !== undefined) sleepSync(5);
      return;
    }
    sleepSync(5);
  }
  throw new Error(`pid ${pid} still alive ${timeoutMs} ms after SIGKILL (state ${procState(pid)})`);
}

/** Waits until PID is blocked in syscall NR (first field of /proc/PID/syscall). */
export function waitSyscall(pid: number, nr: number, timeoutMs = 5000): void {
  const end = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < end) {
    last = readOr(`/proc/${pid}/syscall`).trim();
    if (last.split(' ')[0] === String(nr)) return;
    sleepSync(5);
  }
  throw new Error(`pid ${pid} not blocked in syscall ${nr} after ${timeoutMs} ms: '${last}'`);
}

/** Parses a layout file: key -> the rest of its line. */
export function readLayout(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readOr(path.join(dir, 'layout')).split('\n')) {
    const sp = line.indexOf(' ');
    if (sp > 0) out[line.slice(0, sp)] = line.slice(sp + 1);
  }
  return out;
}

/** A "NAME 0xADDR LEN" layout entry. */
export function layoutRegion(
  layout: Record<string, string>,
  key: string,
): { addr: bigint; len: number } {
  const v = layout[key];
  if (!v) throw new Error(`layout has no '${key}'`);
  const [addr, len] = v.split(' ');
  return { addr: BigInt(addr!), len: Number(len ?? 0) };
}

/** Writes DATA into PID's memory at ADDR through /proc/PID/mem (works on read-only pages). */
export function pokeMemory(pid: number, addr: bigint | number, data: Uint8Array): void {
  const fd = fs.openSync(`/proc/${pid}/mem`, 'r+');
  try {
    const n = fs.writeSync(fd, data, 0, data.length, Number(addr));
    if (n !== data.length) throw new Error(`short write to /proc/${pid}/mem: ${n}`);
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads LEN bytes of PID's memory at ADDR through /proc/PID/mem. */
export function peekMemory(pid: number, addr: bigint | number, len: number): Buffer {
  const fd = fs.openSync(`/proc/${pid}/mem`, 'r');
  try {
    const buf = Buffer.alloc(len);
    const n = fs.readSync(fd, buf, 0, len, Number(addr));
    return buf.subarray(0, n);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Corrupts one register of a running task with ptrace (poke_regs helper):
 * kind 'gp': XOR a general register (rbx rbp r12-r15 rdx r8-r10) with `xor`;
 * kind 'xstate': XOR the byte at offset `target` of the NT_X86_XSTATE regset.
 */
export function pokeRegister(
  pid: number,
  kind: 'gp' | 'xstate',
  target: string | number,
  xor: number | bigint,
): void {
  execFileSync(
    compileFixture('poke_regs'),
    [String(pid), kind, String(target), `0x${xor.toString(16)}`],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
}

export interface StartOptions {
  /** Extra arguments after the work directory (e.g. sleeper's seconds). */
  args?: string[];
  /** How long to wait for `ready` (default 20 s). */
  readyTimeoutMs?: number;
  /** Extra environment for the fixture. */
  env?: NodeJS.ProcessEnv;
}

export interface FixtureHandle {
  name: string;
  pid: number;
  dir: string;
  /** Contents of the layout file, key -> rest of line. */
  layout: Record<string, string>;
  /** Creates <dir>/go. */
  go(): void;
  /** Polls for a complete <dir>/result and returns it without the newline. */
  waitResult(timeoutMs?: number): string;
  /** The fixture's stderr so far. */
  stderr(): string;
  /** SIGKILLs the fixture (if alive) and waits for it to go away. */
  kill(): void;
  /** kill() and remove the work directory. */
  dispose(): void;
  /** Counter fixtures, threads.py and mp_pool.py: the last value written to <dir>/count (-1 if none yet). */
  count?: () => number;
}

/**
 * Starts fixture NAME (see FIXTURE_NAMES) in a fresh work directory, not as
 * a child of Node, and waits for it to be ready.
 */
export function startFixture(name: string, opts: StartOptions = {}): FixtureHandle {
  const cmd = fixtureCommand(name);
  const launcher = compileFixture('launch');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `ckpt-fx-${name.replace('.', '-')}-`));
  const child = spawn(launcher, [dir, ...cmd, dir, ...(opts.args ?? [])], {
    stdio: 'ignore',
    detached: true,
    env: { ...process.env, ...opts.env },
  });
  child.on('error', () => {});
  child.unref();

  const stderr = () => readOr(path.join(dir, 'stderr'));
  const timeout = opts.readyTimeoutMs ?? 20_000;
  const end = Date.now() + timeout;
  let ready = '';
  for (;;) {
    ready = readOr(path.join(dir, 'ready'));
    if (ready.endsWith('\n')) break;
    const exit = readOr(path.join(dir, 'exit'));
    if (exit || Date.now() > end) {
      const launched = readOr(path.join(dir, 'launched')).trim();
      if (launched) killAndReap(Number(launched));
      throw new Error(
        `fixture ${name} ${exit ? `ended (${exit.trim()})` : `not ready after ${timeout} ms`} ` +
          `before writing ${dir}/ready; stderr:\n${stderr()}`,
      );
    }
    sleepSync(5);
  }
  const pid = Number(ready.trim());
  const launched = Number(readOr(path.join(dir, 'launched')).trim());
  if (!Number.isInteger(pid) || pid <= 0 || (launched && launched !== pid)) {
    throw new Error(
      `fixture ${name}: ready says pid '${ready.trim()}', launcher forked ${launched}`,
    );
  }

  const handle: FixtureHandle = {
    name,
    pid,
    dir,
    layout: readLayout(dir),
    go() {
      fs.writeFileSync(path.join(dir, 'go'), '');
    },
    waitResult(timeoutMs = 30_000) {
      const rend = Date.now() + timeoutMs;
      let deadSince = 0;
      for (;;) {
        const r = readOr(path.join(dir, 'result'));
        if (r.endsWith('\n')) return r.slice(0, -1);
        if (!isAlive(pid)) {
          // the result may be written just before exiting: look once more
          if (!deadSince) deadSince = Date.now();
          else if (Date.now() - deadSince > 100) {
            const exit = readOr(path.join(dir, 'exit')).trim();
            throw new Error(
              `fixture ${name} (pid ${pid}) died without a result${exit ? ` (${exit})` : ''}; ` +
                `stderr:\n${stderr()}`,
            );
          }
        }
        if (Date.now() > rend) {
          throw new Error(
            `fixture ${name} (pid ${pid}, state ${procState(pid)}) wrote no result within ` +
              `${timeoutMs} ms; stderr:\n${stderr()}`,
          );
        }
        sleepSync(5);
      }
    },
    stderr,
    kill() {
      if (procState(pid) !== undefined) killAndReap(pid);
    },
    dispose() {
      handle.kill();
      // The launcher writes the fixture's exit status there as it ends:
      // let it end (a zombie has) before the directory goes.
      const end = Date.now() + 5000;
      while (child.pid !== undefined && isAlive(child.pid) && Date.now() < end) sleepSync(5);
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 });
    },
  };
  if (name.startsWith('counter') || name === 'threads.py' || name === 'mp_pool.py') {
    handle.count = () => {
      const lines = readOr(path.join(dir, 'count'))
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l !== '');
      const last = lines[lines.length - 1];
      return last === undefined ? -1 : Number(last);
    };
  }
  return handle;
}

/** Compiles every C fixture and helper (to surface compile errors early). */
export function compileAll(): void {
  for (const n of [...FIXTURE_NAMES.filter((n) => !n.includes('.')), ...HELPERS]) {
    compileFixture(n);
  }
}

/**
 * A counting fixture restored stopped (`restart --frozen`, pid `pid`): it
 * must not count until SIGCONT, and count on after it.
 */
export function expectStoppedUntilSigcont(f: FixtureHandle, pid: number): void {
  const frozenAt = f.count!();
  sleepSync(300);
  expect(f.count!()).toBe(frozenAt);
  process.kill(pid, 'SIGCONT');
  sleepSync(300);
  expect(f.count!()).toBeGreaterThan(frozenAt);
}
