/**
 * The set-up live tests share: for fixture tests, root and compiled
 * fixtures before the file, and after each test every fixture started and
 * every extra pid named killed, whatever happened; for tests that start
 * their own processes, the pids to kill and directories to remove after
 * each test.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll } from 'vitest';
import { imagePath } from './ckpt.js';
import { compileAll, type FixtureHandle, type StartOptions, startFixture } from './fixtures.js';
import { requireRoot } from './prereq.js';

export interface LiveFixtures {
  /** Start a fixture that is disposed after the test. */
  start(name: string, opts?: StartOptions): FixtureHandle;
  /** Pids (a fixture's children, restored tasks…) to SIGKILL after the test. */
  leftovers: number[];
}

/** SIGKILLs every pid of `pids` (those gone already are skipped) and empties it. */
function killAll(pids: number[]): void {
  for (const pid of pids.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

/** Register the hooks; call once at the top of a test file. */
export function liveFixtures(): LiveFixtures {
  const started: FixtureHandle[] = [];
  const leftovers: number[] = [];
  beforeAll(() => {
    requireRoot();
    compileAll();
  });
  afterEach(() => {
    killAll(leftovers);
    for (const f of started.splice(0)) f.dispose();
  });
  return {
    start(name, opts) {
      const f = startFixture(name, opts);
      started.push(f);
      return f;
    },
    leftovers,
  };
}

/** What cleanupAfterEach() cleans up after each test; add to it as the test goes. */
export interface Cleanup {
  /** Pids (a container's init, restored tasks…) to SIGKILL. */
  leftovers: number[];
  /** Directories to remove. */
  dirs: string[];
  /** A fresh directory under os.tmpdir() whose name starts with `prefix`, removed after the test. */
  tmpDir(prefix: string): string;
  /** A fresh image path (imagePath()) whose directory is removed after the test. */
  tmpImage(): string;
}

/**
 * Register an afterEach that SIGKILLs every pid in `leftovers`, then
 * removes every directory in `dirs`, and empties both; call once at the
 * top of a test file.
 */
export function cleanupAfterEach(): Cleanup {
  const leftovers: number[] = [];
  const dirs: string[] = [];
  afterEach(() => {
    killAll(leftovers);
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });
  return {
    leftovers,
    dirs,
    tmpDir(prefix) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
      dirs.push(dir);
      return dir;
    },
    tmpImage() {
      const img = imagePath();
      dirs.push(path.dirname(img));
      return img;
    },
  };
}
