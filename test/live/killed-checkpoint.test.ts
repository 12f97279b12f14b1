/**
 * ckpt killed (SIGKILL) at any moment of a checkpoint: the target keeps
 * running, unharmed, untraced and not stopped; an image at the path it
 * writes to stays as it was, and nothing else is left there. A refused
 * checkpoint leaves it too. ckpt killed at any moment of a restart leaves
 * no process behind (every task it created dies with it: no restore stub
 * keeps a saved pid), and the next restart works.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CKPT_BIN, ckpt, ckptOk, imagePath } from '../support/ckpt.js';
import {
  compileAll,
  type FixtureHandle,
  procState,
  sleepSync,
  startFixture,
} from '../support/fixtures.js';
import { requireRoot } from '../support/prereq.js';
import { tracerPid, vdsoTail, waitFor } from '../support/procs.js';

let fixture: FixtureHandle;

beforeAll(() => {
  requireRoot();
  compileAll();
});
afterAll(() => fixture?.dispose());

/**
 * Run a checkpoint and SIGKILL ckpt after `ms`; resolves once ckpt is
 * gone. The image goes to `img` if given (and is left there), else to a
 * path of its own, removed.
 */
function checkpointKilledAfter(pid: number, ms: number, keep?: string): Promise<number | null> {
  return new Promise((resolve) => {
    const img = keep ?? imagePath();
    const child = spawn(process.execPath, [CKPT_BIN, 'checkpoint', String(pid), '-o', img], {
      stdio: 'ignore',
    });
    const started = Date.now();
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (!keep) fs.rmSync(img, { force: true });
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

describe('an image at the path a checkpoint writes to', () => {
  const sha = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

  it('stays as it was when the checkpoint is killed or refused, and nothing else is left', async () => {
    const f = startFixture('counter');
    try {
      const img = imagePath();
      const dir = path.dirname(img);
      // The duration of a warm checkpoint (the first loads and compiles more).
      let duration = Number.POSITIVE_INFINITY;
      for (let i = 0; i < 2; i++) {
        const whole = Date.now();
        ckptOk(['checkpoint', String(f.pid), '-o', img]);
        duration = Math.min(duration, Date.now() - whole);
      }
      let good = sha(img);
      let kept = 0;
      for (let k = 1; k <= 6; k++) {
        await checkpointKilledAfter(f.pid, Math.round((duration * k) / 7), img);
        expect(fs.readdirSync(dir)).toEqual([path.basename(img)]);
        if (sha(img) === good) {
          kept++;
          continue;
        }
        // Killed after its commit, or done before the kill (the host is
        // slower or faster from one run to the next): then the image is a
        // complete new one, never a part of one.
        expect(ckptOk(['info', img])).toMatch(/checksum ok/);
        good = sha(img);
      }
      expect(kept).toBeGreaterThan(2);
      const refused = ckpt(['checkpoint', '1', '-o', img]);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toContain(`${img} still holds the image it had before`);
      expect(sha(img)).toBe(good);
      expect(fs.readdirSync(dir)).toEqual([path.basename(img)]);
      // A complete one replaces it.
      ckptOk(['checkpoint', String(f.pid), '-o', img]);
      expect(sha(img)).not.toBe(good);
      expect(fs.readdirSync(dir)).toEqual([path.basename(img)]);
    } finally {
      f.dispose();
    }
  });
});

describe('a full disk', () => {
  it('fails naming ENOSPC, leaves no image and gives the space back; the target runs on (sweep 13: a truncated image filled it)', () => {
    const f = startFixture('counter');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=32k', 'ckpt-full', dir]);
    try {
      const img = path.join(dir, 'image.img');
      const r = ckpt(['checkpoint', String(f.pid), '-o', img]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/ENOSPC|no space left/i);
      expect(fs.readdirSync(dir)).toEqual([]);
      const used = execFileSync('df', ['--output=used', dir], { encoding: 'utf8' })
        .trim()
        .split('\n')[1];
      expect(Number(used)).toBe(0);
      expect(tracerPid(f.pid)).toBe(0);
      const before = f.count!();
      waitFor('the counter to go on', () => f.count!() > before);
    } finally {
      execFileSync('umount', [dir]);
      fs.rmdirSync(dir);
      f.dispose();
    }
  });
});

describe('an image path that is not a plain file', () => {
  it('a FIFO, /dev/stdout and a symbolic link get the image where the user meant', () => {
    const f = startFixture('counter');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-img-paths-'));
    try {
      const info = (img: string) => ckptOk(['info', img]);
      const bin = `"${process.execPath}" "${CKPT_BIN}"`;
      // A FIFO a reader drains (before the first module loads: a Node quirk).
      const fifo = path.join(dir, 'fifo');
      spawnSync('mkfifo', [fifo]);
      const viaFifo = path.join(dir, 'via-fifo.img');
      const r1 = spawnSync('sh', [
        '-c',
        `cat ${fifo} > ${viaFifo} & ${bin} checkpoint ${f.pid} -o ${fifo}; wait`,
      ]);
      expect(r1.status).toBe(0);
      expect(info(viaFifo)).toMatch(/checksum ok/);
      // /dev/stdout redirected to a file, and piped.
      const redirected = path.join(dir, 'redirected.img');
      expect(
        spawnSync('sh', ['-c', `${bin} checkpoint ${f.pid} -o /dev/stdout > ${redirected}`]).status,
      ).toBe(0);
      expect(info(redirected)).toMatch(/checksum ok/);
      const piped = path.join(dir, 'piped.img');
      expect(
        spawnSync('sh', ['-c', `${bin} checkpoint ${f.pid} -o /dev/stdout | cat > ${piped}`])
          .status,
      ).toBe(0);
      expect(info(piped)).toMatch(/checksum ok/);
      expect(fs.lstatSync('/dev/stdout').isSymbolicLink()).toBe(true);
      // A symbolic link: its target is replaced, the link stays.
      const real = path.join(dir, 'real.img');
      fs.writeFileSync(real, 'old');
      fs.symlinkSync('real.img', path.join(dir, 'link.img'));
      ckptOk(['checkpoint', String(f.pid), '-o', path.join(dir, 'link.img')]);
      expect(fs.lstatSync(path.join(dir, 'link.img')).isSymbolicLink()).toBe(true);
      expect(info(real)).toMatch(/checksum ok/);
    } finally {
      f.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('ckpt killed mid-restart', () => {
  /** Restore stubs and tasks cloned from them that are alive (not zombies waiting for init). */
  const stubs = () =>
    spawnSync('ps', ['-eo', 'pid=,stat=,comm='], { encoding: 'utf8' })
      .stdout.split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter(([, stat, comm]) => comm === 'ckpt-restore-st' && !stat?.startsWith('Z'))
      .map(([pid]) => Number(pid));
  /** Run `ckpt restart IMG -d` and SIGKILL it after `ms` (unless it ended); resolves when it is gone. */
  const restartKilledAfter = (img: string, ms: number) =>
    new Promise<void>((resolve) => {
      const child = spawn(process.execPath, [CKPT_BIN, 'restart', img, '-d'], {
        stdio: 'ignore',
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), ms);
      child.on('exit', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  /** Kill whatever holds the tree's pids (a restart that finished) and wait until they are free. */
  const clear = (pids: number[]) => {
    for (const p of pids) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // not there
      }
    }
    const end = Date.now() + 10_000;
    while (pids.some((p) => procState(p) !== undefined) && Date.now() < end) sleepSync(20);
  };

  it('leaves no task of the tree and no restore stub, whenever it dies', async () => {
    const root = Number(ckptOk(['run', '--', 'sh', '-c', 'sleep 1000 & sleep 1000 & wait']).trim());
    sleepSync(300);
    const img = imagePath();
    const out = JSON.parse(ckptOk(['checkpoint', String(root), '-o', img, '--kill', '--json']));
    const pids: number[] = out.pids;
    expect(pids).toHaveLength(3);
    clear(pids);
    // Only stubs this test leaves count (not another job's).
    const before = new Set(stubs());
    const left = () => stubs().filter((p) => !before.has(p));
    const t0 = Date.now();
    ckptOk(['restart', img, '-d']);
    const duration = Date.now() - t0;
    clear(pids);
    const comm = (p: number) => {
      try {
        return fs.readFileSync(`/proc/${p}/comm`, 'utf8').trim();
      } catch {
        return undefined;
      }
    };
    for (let k = 1; k <= 10; k++) {
      await restartKilledAfter(img, Math.round((duration * k) / 11));
      // Killed by the kernel with ckpt: gone (a zombie until reaped), or,
      // if the restart had finished, the restored program itself.
      const end = Date.now() + 3000;
      while (left().length > 0 && Date.now() < end) sleepSync(50);
      expect(left()).toEqual([]);
      for (const p of pids) {
        const state = procState(p);
        if (state === undefined || state === 'Z') continue;
        expect(['sh', 'sleep']).toContain(comm(p));
      }
      clear(pids);
    }
    // Nothing holds a pid: a whole restart still works, and removes the
    // stub files killed restarts may have left (one planted, of a ckpt
    // whose pid is gone).
    const gone = spawnSync('true').pid!;
    fs.mkdirSync(path.join(os.tmpdir(), `ckpt-stub-${gone}-planted`));
    ckptOk(['restart', img, '-d']);
    expect(procState(root)).toMatch(/^[RS]$/);
    const stale = fs
      .readdirSync(os.tmpdir())
      .filter((n) => /^ckpt-stub-(\d+)-/.test(n))
      .filter((n) => !fs.existsSync(`/proc/${/^ckpt-stub-(\d+)-/.exec(n)![1]}`));
    expect(stale).toEqual([]);
    clear(pids);
  });
});
