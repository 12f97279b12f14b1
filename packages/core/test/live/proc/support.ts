/**
 * Live-test support: compiles helper.c into os.tmpdir() and runs it as a
 * child process whose state the tests know.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A temporary directory with the compiled helper in it. */
export interface HelperBuild {
  dir: string;
  binary: string;
  cleanup(): void;
}

/** Compiles helper.c with gcc into a fresh temporary directory. */
export function buildHelper(): HelperBuild {
  const dir = mkdtempSync(join(tmpdir(), 'ckpt-proc-'));
  const binary = join(dir, 'helper');
  execFileSync('gcc', [
    '-O1',
    '-Wall',
    '-pthread',
    '-o',
    binary,
    join(import.meta.dirname, 'helper.c'),
  ]);
  return { dir, binary, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A running helper: its pid, the lines it printed, and a way to end it. */
export interface Helper {
  pid: number;
  lines: string[];
  child: ChildProcess;
  /** SIGKILLs the helper (and any extra pids it reported) and waits for the helper to be reaped. */
  kill(extra?: number[]): Promise<void>;
}

/** Starts the helper and waits until it has printed `lineCount` lines. */
export function startHelper(
  build: HelperBuild,
  args: string[],
  lineCount = 1,
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<Helper> {
  const child = spawn(build.binary, args, { stdio: ['ignore', 'pipe', 'inherit'], ...options });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const kill = async (extra: number[] = []): Promise<void> => {
    for (const pid of extra) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  return new Promise((resolve, reject) => {
    let buf = '';
    child.once('error', reject);
    child.once('exit', (code, signal) =>
      reject(new Error(`helper ${args.join(' ')} exited early: ${code ?? signal}`)),
    );
    child.stdout!.on('data', (chunk: Buffer) => {
      buf += chunk.toString();
      const lines = buf.split('\n').slice(0, -1);
      if (lines.length >= lineCount) resolve({ pid: child.pid!, lines, child, kill });
    });
  });
}
