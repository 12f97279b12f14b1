/**
 * `ckpt checkpoint --freezer CGROUP`, with cgroup v1's freezer.state and
 * cgroup v2's cgroup.freeze: a tree in the cgroup checkpoints and restarts;
 * a task of the tree outside it is refused before anything is saved; a
 * thaw written during the checkpoint does not let the tasks run before the
 * image is complete; the cgroup ends as the user left it (frozen or
 * thawed); and ckpt killed midway leaves the tasks running and the cgroup
 * as it was.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { freezerMounts, isCkptError, resolveFreezerCgroup } from '@ckpt/core';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CKPT_BIN, ckpt, ckptOk, imagePath } from '../support/ckpt.js';
import {
  CACHE_DIR,
  compileFixture,
  type FixtureHandle,
  isAlive,
  killAndReap,
  procState,
  sleepSync,
} from '../support/fixtures.js';
import { liveFixtures } from '../support/live.js';
import { tracerPid, waitFor } from '../support/procs.js';

type Version = 1 | 2;

const { start: startFx, leftovers } = liveFixtures();

beforeAll(() => {
  const { v1, v2 } = freezerMounts();
  if (!v1 || !v2) {
    throw new Error(
      `live freezer tests need a cgroup v1 freezer hierarchy and cgroup2 mounted (found ${
        [v1 && `v1 at ${v1.point}`, v2 && `v2 at ${v2.point}`].filter(Boolean).join(', ') ||
        'neither'
      })`,
    );
  }
});

/** A freezer cgroup made for one test, removed after it. */
interface TestCgroup {
  dir: string;
  version: Version;
  /** "FROZEN"/"THAWED" (v1) or "1"/"0" (v2: cgroup.freeze, once settled). */
  state(): string;
  /** Whether it is frozen, and settled so: what a user checks. */
  frozen(): boolean;
  freeze(): void;
  thaw(): void;
  add(pid: number): void;
}

const cgroups: TestCgroup[] = [];
let serial = 0;

function makeCgroup(version: Version): TestCgroup {
  const mount = freezerMounts()[version === 1 ? 'v1' : 'v2']!;
  const dir = path.join(mount.point, `ckpt-test-${process.pid}-${serial++}`);
  fs.mkdirSync(dir);
  const file = (name: string) => path.join(dir, name);
  const cg: TestCgroup = {
    dir,
    version,
    state: () =>
      fs.readFileSync(file(version === 1 ? 'freezer.state' : 'cgroup.freeze'), 'utf8').trim(),
    frozen: () =>
      version === 1
        ? cg.state() === 'FROZEN'
        : /^frozen 1$/m.test(fs.readFileSync(file('cgroup.events'), 'utf8')),
    freeze() {
      fs.writeFileSync(
        file(version === 1 ? 'freezer.state' : 'cgroup.freeze'),
        version === 1 ? 'FROZEN' : '1',
      );
      waitFor('the cgroup to freeze', () => cg.frozen());
    },
    thaw() {
      fs.writeFileSync(
        file(version === 1 ? 'freezer.state' : 'cgroup.freeze'),
        version === 1 ? 'THAWED' : '0',
      );
    },
    add(pid) {
      fs.writeFileSync(file('cgroup.procs'), String(pid));
    },
  };
  cgroups.push(cg);
  return cg;
}

afterEach(() => {
  for (const cg of cgroups.splice(0)) {
    // Thawed, so that killed tasks can die; emptied, so that it can go.
    cg.thaw();
    const root = path.dirname(cg.dir);
    for (const pid of fs.readFileSync(path.join(cg.dir, 'cgroup.procs'), 'utf8').split('\n')) {
      try {
        if (pid) fs.writeFileSync(path.join(root, 'cgroup.procs'), pid);
      } catch {
        // exited meanwhile
      }
    }
    waitFor(`removing ${cg.dir}`, () => {
      try {
        fs.rmdirSync(cg.dir);
        return true;
      } catch {
        return false;
      }
    });
  }
});

/** The counter fixture, in `cg`. */
function startCounter(cg: TestCgroup): FixtureHandle {
  const f = startFx('counter');
  cg.add(f.pid);
  return f;
}

/** The counter advances: the task runs. */
function expectCounting(f: FixtureHandle): void {
  const before = f.count!();
  waitFor(`pid ${f.pid} to count on from ${before}`, () => f.count!() > before, 3000);
}

/** The counter stays put for a while: the task does not run. */
function expectNotCounting(f: FixtureHandle, value: number): void {
  sleepSync(200);
  expect(f.count!()).toBe(value);
}

const ROLES = ['parent', 'a', 'g', 'b'] as const;

/** tree_basic with every live task in `cg` except those in `outside`. */
function startTree(cg: TestCgroup, outside: string[] = []) {
  const f = startFx('tree_basic');
  const pidOf = (role: string) =>
    Number(fs.readFileSync(path.join(f.dir, role), 'utf8').trim().split(' ')[0]);
  const pids = Object.fromEntries(ROLES.map((r) => [r, pidOf(r)])) as Record<
    (typeof ROLES)[number],
    number
  >;
  leftovers.push(...Object.values(pids));
  for (const r of ROLES) if (!outside.includes(r)) cg.add(pids[r]);
  return { f, pids };
}

describe.each([1, 2] as const)('--freezer with cgroup v%i', (version) => {
  it('checkpoints a tree in the cgroup with --kill; restarted, it continues', () => {
    const cg = makeCgroup(version);
    const { f, pids } = startTree(cg);
    const img = imagePath();
    const out = ckptOk([
      'checkpoint',
      String(f.pid),
      '-o',
      img,
      '--kill',
      '--freezer',
      cg.dir,
      '--json',
    ]);
    const summary = JSON.parse(out);
    expect(summary).toMatchObject({ ok: true, freezer: cg.dir, cgroupVersion: version });
    for (const r of ROLES) expect(isAlive(pids[r]), r).toBe(false);
    expect(cg.frozen()).toBe(false); // ckpt froze it, ckpt thawed it
    const restored = ckptOk(['restart', img, '-d']);
    fs.rmSync(path.dirname(img), { recursive: true, force: true });
    expect(Number(restored.trim())).toBe(f.pid);
    for (const r of ROLES) expect(isAlive(pids[r]), r).toBe(true);
    f.go();
    expect(f.waitResult(30_000)).toMatch(/^PASS/);
  });

  it.each([false, true])(
    'refuses a tree with a task outside the cgroup (cgroup frozen before: %s)',
    (userFrozen) => {
      const cg = makeCgroup(version);
      const { f, pids } = startTree(cg, ['b']);
      if (userFrozen) cg.freeze();
      const before = cg.state();
      const img = imagePath();
      const r = ckpt(['checkpoint', String(f.pid), '-o', img, '--freezer', cg.dir]);
      fs.rmSync(path.dirname(img), { recursive: true, force: true });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`pid ${pids.b}`);
      expect(r.stderr).toContain(cg.dir);
      expect(r.stderr).toMatch(/not in freezer cgroup/);
      expect(cg.state()).toBe(before);
      expect(cg.frozen()).toBe(userFrozen);
      for (const role of ROLES) {
        expect(tracerPid(pids[role]), role).toBe(0);
        expect(procState(pids[role]), role).not.toMatch(/[tTZ]/);
      }
      if (userFrozen) cg.thaw();
      f.go();
      expect(f.waitResult(30_000)).toMatch(/^PASS/);
    },
  );

  it('leaves a cgroup the user had frozen frozen, and thaws one it froze itself', () => {
    const cg = makeCgroup(version);
    const f = startCounter(cg);
    cg.freeze();
    const frozenAt = f.count!();
    const img = imagePath();
    ckptOk(['checkpoint', String(f.pid), '-o', img, '--freezer', cg.dir, '--leave-running']);
    expect(cg.frozen()).toBe(true);
    expect(tracerPid(f.pid)).toBe(0);
    expectNotCounting(f, frozenAt);
    cg.thaw();
    expectCounting(f);

    ckptOk(['checkpoint', String(f.pid), '-o', img, '--freezer', cg.dir, '--leave-running']);
    fs.rmSync(path.dirname(img), { recursive: true, force: true });
    expect(cg.frozen()).toBe(false);
    expect(tracerPid(f.pid)).toBe(0);
    expectCounting(f);
    f.go();
    expect(f.waitResult()).toMatch(/^PASS/);
  });

  it('a frozen cgroup: a checkpoint without --freezer says to use it; a restart into it is refused, not hung (sweep 13)', () => {
    const cg = makeCgroup(version);
    const f = startCounter(cg);
    cg.freeze();
    const name = `/${path.basename(cg.dir)}`;
    const img = imagePath();
    const plain = ckpt(['checkpoint', String(f.pid), '-o', img, '--kill']);
    expect(plain.code).toBe(1);
    expect(plain.stderr).toContain(`pid ${f.pid} is in frozen cgroup`);
    expect(plain.stderr).toContain(`(--freezer ${name})`);
    // Checkpointed through the cgroup, which stays frozen (the user froze it).
    ckptOk(['checkpoint', String(f.pid), '-o', img, '--freezer', cg.dir, '--kill']);
    expect(cg.frozen()).toBe(true);
    waitFor('the process to die', () => !isAlive(f.pid));
    const r = ckpt(['restart', img, '-d']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`its cgroup \\S+:${name} \\(${cg.dir}\\) is frozen here`));
    expect(isAlive(f.pid)).toBe(false);
    cg.thaw();
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(f.pid);
    fs.rmSync(path.dirname(img), { recursive: true, force: true });
    expectCounting(f);
  });

  it('leaves the tasks running and the cgroup as it was when ckpt is killed midway', async () => {
    const cg = makeCgroup(version);
    const f = startCounter(cg);
    const whole = Date.now();
    expect(await checkpointKilledAfter(f.pid, cg, 60_000)).toBeNull();
    const duration = Date.now() - whole;
    let kills = 0;
    for (let k = 1; k <= 10; k++) {
      const userFrozen = k % 3 === 0;
      if (userFrozen) cg.freeze();
      const killedAt = await checkpointKilledAfter(f.pid, cg, Math.round((duration * k) / 10));
      if (killedAt !== null) kills++;
      // The guard puts the state back once it sees ckpt gone.
      waitFor(`cgroup ${cg.dir} back to ${userFrozen ? 'frozen' : 'thawed'}`, () =>
        userFrozen ? cg.frozen() : cg.state() === (version === 1 ? 'THAWED' : '0'),
      );
      waitFor(`pid ${f.pid} untraced`, () => tracerPid(f.pid) === 0);
      if (userFrozen) {
        expectNotCounting(f, f.count!());
        cg.thaw();
      }
      expect(procState(f.pid)).toMatch(/^[RSD]$/);
      expectCounting(f);
    }
    expect(kills).toBeGreaterThan(4);
    f.go();
    expect(f.waitResult()).toMatch(/^PASS/);
  });
});

/** Run a --freezer checkpoint and SIGKILL ckpt after `ms`; resolves when ckpt is gone. */
function checkpointKilledAfter(pid: number, cg: TestCgroup, ms: number): Promise<number | null> {
  return new Promise((resolve) => {
    const img = imagePath();
    const child = spawn(
      process.execPath,
      [CKPT_BIN, 'checkpoint', String(pid), '-o', img, '--freezer', cg.dir],
      { stdio: 'ignore' },
    );
    const started = Date.now();
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('exit', (code) => {
      clearTimeout(timer);
      fs.rmSync(path.dirname(img), { recursive: true, force: true });
      resolve(code === null ? Date.now() - started : null);
    });
  });
}

// A process with 256 MiB of dirty memory that counts into a file every
// 2 ms: its checkpoint takes long enough for many writes in between.
const BIG_COUNTER_C = `
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
  size_t n = strtoul(argv[2], 0, 10) << 20;
  char *big = malloc(n);
  for (size_t i = 0; i < n; i += 4096) big[i] = (char)(i >> 12) | 1;
  int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
  char line[32];
  for (unsigned long i = 1;; i++) {
    int len = snprintf(line, sizeof line, "%20lu\\n", i);
    if (pwrite(fd, line, len, 0) != len) return 1;
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, 0);
  }
}
`;

function compileBigCounter(): string {
  fs.mkdirSync(CACHE_DIR, { recursive: true });
  const src = path.join(CACHE_DIR, 'freezer_big_counter.c');
  const bin = path.join(CACHE_DIR, 'freezer_big_counter');
  if (!fs.existsSync(bin) || fs.readFileSync(src, 'utf8') !== BIG_COUNTER_C) {
    fs.writeFileSync(src, BIG_COUNTER_C);
    const r = spawnSyncGcc(['-O1', '-Wall', '-o', bin, src]);
    if (r) throw new Error(`compiling ${src} failed:\n${r}`);
  }
  return bin;
}

function spawnSyncGcc(args: string[]): string | undefined {
  const r = spawnSync('gcc', args, { encoding: 'utf8' });
  return r.status === 0 ? undefined : `${r.stdout}${r.stderr}`;
}

describe('a thaw written during a --freezer checkpoint', () => {
  it.each([1, 2] as const)(
    'does not let the tasks run before the image is complete (cgroup v%i)',
    async (version) => {
      const cg = makeCgroup(version);
      const dir = fs.mkdtempSync(path.join(CACHE_DIR, 'big-'));
      const countFile = path.join(dir, 'count');
      // Started through the fixtures' launcher: not a child of Node, reaped at once.
      const launcher = spawn(
        compileFixture('launch'),
        [dir, compileBigCounter(), countFile, '256'],
        { stdio: 'ignore', detached: true },
      );
      launcher.unref();
      const count = () => {
        try {
          return Number(fs.readFileSync(countFile, 'utf8').trim() || -1);
        } catch {
          return -1;
        }
      };
      waitFor('the big counter to count', () => count() > 0, 20_000);
      const pid = Number(fs.readFileSync(path.join(dir, 'launched'), 'utf8'));
      leftovers.push(pid);
      try {
        cg.add(pid);
        const img = imagePath();
        const child = spawn(
          process.execPath,
          [CKPT_BIN, 'checkpoint', String(pid), '-o', img, '--freezer', cg.dir, '--kill'],
          { stdio: ['ignore', 'ignore', 'pipe'] },
        );
        let stderr = '';
        child.stderr.on('data', (d) => {
          stderr += d;
        });
        let exited = false;
        const exit = new Promise<number | null>((resolve) =>
          child.on('exit', (code) => {
            exited = true;
            resolve(code);
          }),
        );
        // From the moment ckpt holds the task until it is done, write
        // THAWED over and over; the counter must not move meanwhile.
        let held: number | undefined;
        let thawsWhileHeld = 0;
        while (!exited) {
          cg.thaw();
          let tracer = 0;
          try {
            tracer = tracerPid(pid);
          } catch {
            // killed at the end (--kill)
          }
          if (tracer === child.pid && procState(pid) === 't') {
            held ??= count();
            thawsWhileHeld++;
            expect(count()).toBe(held);
          }
          await new Promise((r) => setTimeout(r, 1));
        }
        expect(await exit, stderr).toBe(0);
        expect(held).toBeDefined();
        expect(thawsWhileHeld).toBeGreaterThan(10);
        // Killed right after the image was complete: the last value written
        // is the one it had when it was frozen.
        expect(count()).toBe(held);
        const restored = Number(ckptOk(['restart', img, '-d']).trim());
        fs.rmSync(path.dirname(img), { recursive: true, force: true });
        expect(restored).toBe(pid);
        // The restored task continues from the value it was frozen with.
        waitFor('the restored counter to count', () => count() > held!, 5000);
        expect(count()).toBeLessThan(held! + 1000);
      } finally {
        killAndReap(pid);
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});

describe('naming the cgroup', () => {
  it('accepts a path under the mount, a name in the hierarchy, and /name', () => {
    const cg = makeCgroup(1);
    const name = path.basename(cg.dir);
    for (const spec of [cg.dir, name, `/${name}`]) {
      const r = resolveFreezerCgroup(spec);
      expect(r.path, spec).toBe(cg.dir);
      expect(r.version).toBe(1);
      expect(r.name).toBe(`/${name}`);
    }
    const v2 = makeCgroup(2);
    expect(resolveFreezerCgroup(v2.dir)).toMatchObject({ path: v2.dir, version: 2 });
  });

  it('refuses a missing cgroup and a root cgroup with a clear error, saving nothing', () => {
    const f = startFx('sleeper', { args: ['60'] });
    const img = imagePath();
    const r = ckpt(['checkpoint', String(f.pid), '-o', img, '--freezer', 'no-such-cgroup-xyz']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/no freezer cgroup 'no-such-cgroup-xyz'/);
    expect(fs.existsSync(img)).toBe(false);
    fs.rmSync(path.dirname(img), { recursive: true, force: true });
    let err: unknown;
    try {
      resolveFreezerCgroup(freezerMounts().v1!.point);
    } catch (e) {
      err = e;
    }
    expect(isCkptError(err, 'EINVAL')).toBe(true);
    expect(tracerPid(f.pid)).toBe(0);
  });
});
