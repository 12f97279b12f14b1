/**
 * Timers armed for an absolute time (sweep 12): a C program arms two
 * timerfds with TFD_TIMER_ABSTIME, on CLOCK_MONOTONIC and CLOCK_REALTIME,
 * 5 s ahead; it is checkpointed with `--kill` after 1 s and restarted 2.5 s
 * later. Both fire at their deadline, not 2.5 s late as a timer re-armed
 * with the time it had left would (the relative model, right for relative
 * timers: test/live/syscall-restart.test.ts and the taskstate fixtures).
 */
import fs from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { ckptOk } from '../support/ckpt.js';
import { compileFixture, isAlive, sleepSync } from '../support/fixtures.js';
import { cleanupAfterEach } from '../support/live.js';
import { waitFor } from '../support/procs.js';

const { leftovers, tmpDir, tmpImage } = cleanupAfterEach();

it('a timerfd armed with TFD_TIMER_ABSTIME fires at its deadline after --kill and restart', () => {
  const dir = tmpDir('ckpt-abstimer-');
  const pid = Number(ckptOk(['run', '--', compileFixture('abstimer'), dir, '5']).trim());
  leftovers.push(pid);
  waitFor('the timers armed', () => fs.existsSync(path.join(dir, 'armed')));
  sleepSync(1000);
  const img = tmpImage();
  ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
  waitFor('the program gone', () => !isAlive(pid));
  sleepSync(2500);
  expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
  const fired = path.join(dir, 'fired');
  const lines = () => fs.readFileSync(fired, 'utf8').trim().split('\n');
  waitFor('both timers to fire', () => fs.existsSync(fired) && lines().length === 2, 15_000);
  const late = Object.fromEntries(lines().map((l) => [l.split(' ')[0], Number(l.split(' ')[1])]));
  expect(Object.keys(late).sort()).toEqual(['MONO', 'REAL']);
  for (const seconds of Object.values(late)) {
    expect(seconds).toBeGreaterThanOrEqual(0);
    expect(seconds).toBeLessThan(1.5);
  }
});
