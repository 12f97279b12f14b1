/**
 * Helpers for the @ckpt/fs live tests: the real CLI, and test programs
 * started through the fixture launcher (so that a process killed by
 * `checkpoint --kill` is reaped at once and its pid is free for restart).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  compileFixture,
  isAlive,
  killAndReap,
  sleepSync,
} from '../../../../test/support/fixtures.js';
import { compileC } from '../../../core/test/live/kernel/support.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The built CLI (`pnpm run build` first). */
export const CLI = path.resolve(here, '../../../../apps/cli/dist/bin.js');

/** Result of a finished `ckpt` run. */
export interface CkptRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Run `ckpt ARGS` to completion. */
export function ckpt(...args: string[]): CkptRun {
  const r = spawnSync('node', [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Start `ckpt ARGS` with piped stdout/stderr; `done` resolves when it exits. */
export function ckptAsync(...args: string[]): { child: ChildProcess; done: Promise<CkptRun> } {
  const child = spawn('node', [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d) => (stdout += d));
  child.stderr?.on('data', (d) => (stderr += d));
  const done = new Promise<CkptRun>((resolve) =>
    child.on('close', (status) => resolve({ status, stdout, stderr })),
  );
  return { child, done };
}

/** The test program (fdprog.c next to this file), compiled once. */
export function fdprog(): string {
  return compileC('fdprog', fs.readFileSync(path.join(here, 'fdprog.c'), 'utf8'));
}

/** A test program started through the launcher, in its own work directory. */
export interface Launched {
  pid: number;
  dir: string;
  go(): void;
  /** Kill the program (and a restored copy with the same pid) and remove the directory. */
  dispose(): void;
}

/**
 * Start `fdprog MODE DIR` (DIR a fresh work directory, prepared by
 * `prepare`) through the launcher, and wait until it is ready.
 */
export function launch(mode: string, prepare?: (dir: string) => void): Launched {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `ckpt-fs-${mode}-`));
  prepare?.(dir);
  const child = spawn(compileFixture('launch'), [dir, fdprog(), mode, dir], {
    stdio: 'ignore',
    detached: true,
  });
  child.on('error', () => {});
  child.unref();
  const readyFile = path.join(dir, 'ready');
  const end = Date.now() + 10_000;
  while (!fs.existsSync(readyFile)) {
    if (Date.now() > end || fs.existsSync(path.join(dir, 'exit'))) {
      const launched = Number(fs.readFileSync(path.join(dir, 'launched'), 'utf8'));
      if (launched) killAndReap(launched);
      throw new Error(
        `fdprog ${mode} did not get ready: ${fs.readFileSync(path.join(dir, 'stderr'), 'utf8')}`,
      );
    }
    sleepSync(5);
  }
  const pid = Number(fs.readFileSync(readyFile, 'utf8').trim());
  return {
    pid,
    dir,
    go: () => fs.writeFileSync(path.join(dir, 'go'), ''),
    dispose() {
      if (isAlive(pid)) killAndReap(pid);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
