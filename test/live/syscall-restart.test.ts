/**
 * Tasks checkpointed while blocked in poll or futex keep waiting after
 * restart (the kernel's restart rules applied to the new task), and a
 * signal still wakes them.
 */
import fs from 'node:fs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { checkpointKillRestart } from '../support/ckpt.js';
import {
  compileAll,
  type FixtureHandle,
  sleepSync,
  startFixture,
  waitSyscall,
} from '../support/fixtures.js';
import { requireRoot } from '../support/prereq.js';

const started: FixtureHandle[] = [];
beforeAll(() => {
  requireRoot();
  compileAll();
});
afterEach(() => {
  for (const f of started.splice(0)) f.dispose();
});

function syscallOf(pid: number): number {
  return Number(fs.readFileSync(`/proc/${pid}/syscall`, 'utf8').split(' ')[0]);
}

describe('blocked syscalls survive checkpoint and restart', () => {
  for (const mode of ['poll', 'futex']) {
    it(`${mode}: still blocked after restart, woken by a signal`, () => {
      const f = startFixture('waiter', { args: [mode] });
      started.push(f);
      const nr = Number(f.layout.syscall);
      waitSyscall(f.pid, nr);
      const pid = checkpointKillRestart(f.pid);
      expect(pid).toBe(f.pid);
      // Give it time to return wrongly; it must be back in the same call.
      sleepSync(200);
      waitSyscall(pid, nr);
      expect(syscallOf(pid)).toBe(nr);
      expect(fs.existsSync(`${f.dir}/result`)).toBe(false);
      process.kill(pid, 'SIGUSR1');
      expect(f.waitResult()).toBe('PASS');
    });
  }
});
