/**
 * ckpt killed (SIGKILL) at any moment of a checkpoint: the target keeps
 * running, unharmed, untraced and not stopped.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CKPT_BIN, imagePath } from '../support/ckpt.js';
import {
  compileAll,
  type FixtureHandle,
  procState,
  sleepSync,
  startFixture,
} from '../support/fixtures.js';
import { requireRoot } from '../support/prereq.js';
import { tracerPid, vdsoTail } from '../support/procs.js';

let fixture: FixtureHandle;

beforeAll(() => {
  requireRoot();
  compileAll();
});
afterAll(() => fixture?.dispose());

/** Run a checkpoint and SIGKILL ckpt after `ms`; resolves once ckpt is gone. */
function checkpointKilledAfter(pid: number, ms: number): Promise<number | null> {
  return new Promise((resolve) => {
    const img = imagePath();
    const child = spawn(process.execPath, [CKPT_BIN, 'checkpoint', String(pid), '-o', img], {
      stdio: 'ignore',
    });
    const started = Date.now();
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('exit', (code) => {
      clearTimeout(timer);
      fs.rmSync(img, { force: true });
      resolve(code === null ? Date.now() - started : null);
    });
  });
}

describe('ckpt killed mid-checkpoint', () => {
  it('leaves the target running and counting, whenever it dies', async () => {
    fixture = startFixture('counter');
    const maps = fs.readFileSync(`/proc/${fixture.pid}/maps`, 'utf8');
    // How long does a whole checkpoint take (warm: the first one loads and
    // compiles more)? Kill at points spread over it.
    let duration = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 2; i++) {
      const whole = Date.now();
      await checkpointKilledAfter(fixture.pid, 60_000);
      duration = Math.min(duration, Date.now() - whole);
    }
    let kills = 0;
    for (let k = 1; k <= 12; k++) {
      const killedAt = await checkpointKilledAfter(fixture.pid, Math.round((duration * k) / 12));
      if (killedAt !== null) kills++;
      sleepSync(20);
      expect(tracerPid(fixture.pid)).toBe(0);
      expect(procState(fixture.pid)).toMatch(/^[RS]$/);
      const before = fixture.count!();
      sleepSync(150);
      expect(fixture.count!()).toBeGreaterThan(before);
    }
    expect(kills).toBeGreaterThan(6);
    // A complete checkpoint removes any code page a killed one left behind.
    expect(await checkpointKilledAfter(fixture.pid, 60_000)).toBeNull();
    expect(fs.readFileSync(`/proc/${fixture.pid}/maps`, 'utf8')).toBe(maps);
    // ...and the code a killed one left in the vDSO's padding.
    expect(vdsoTail(fixture.pid).every((b) => b === 0)).toBe(true);
    fixture.go();
    expect(fixture.waitResult()).toMatch(/^PASS/);
  });
});
