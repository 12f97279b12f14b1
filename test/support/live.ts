/**
 * The set-up every live fixture test shares: root and compiled fixtures
 * before the file, and after each test every fixture started and every
 * extra pid named killed, whatever happened.
 */
import { afterEach, beforeAll } from 'vitest';
import { compileAll, type FixtureHandle, type StartOptions, startFixture } from './fixtures.js';
import { requireRoot } from './prereq.js';

export interface LiveFixtures {
  /** Start a fixture that is disposed after the test. */
  start(name: string, opts?: StartOptions): FixtureHandle;
  /** Pids (a fixture's children, restored tasks…) to SIGKILL after the test. */
  leftovers: number[];
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
    for (const pid of leftovers.splice(0)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
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
