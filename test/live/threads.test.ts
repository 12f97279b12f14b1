/**
 * Multi-threaded processes: every thread comes back with its own thread
 * id, registers, TLS, blocked mask, alternate stack, pending signals, name,
 * clear_child_tid, robust list and rseq area, and continues where it
 * stopped. The fixtures check all that from inside (see
 * test/fixtures/threads.c, threads.py, mp_pool.py); these tests check ids
 * and names from outside, and the paths that let a threaded process go
 * (left running, stopped, killed ckpt, failed restart).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CKPT_BIN, checkpointKillRestart, ckpt, ckptOk, imagePath } from '../support/ckpt.js';
import {
  expectStoppedUntilSigcont,
  type FixtureHandle,
  fixtureCommand,
  isAlive,
  procState,
  readLayout,
  sleepSync,
} from '../support/fixtures.js';
import { liveFixtures } from '../support/live.js';
import { tracerPid, vdsoTail, waitFor } from '../support/procs.js';

const fixtures = liveFixtures();

/** Thread ids of `pid`, ascending. */
function tidsOf(pid: number): number[] {
  return fs
    .readdirSync(`/proc/${pid}/task`)
    .map(Number)
    .sort((a, b) => a - b);
}

/** Each thread's name, by thread id. */
function namesOf(pid: number): Map<number, string> {
  return new Map(
    tidsOf(pid).map((t) => [t, fs.readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim()]),
  );
}

/** The fixture's thread ids from its layout, ascending. */
function layoutTids(f: FixtureHandle): number[] {
  return f.layout
    .tids!.split(' ')
    .map(Number)
    .sort((a, b) => a - b);
}

describe('a multi-threaded process', () => {
  it('C, pthreads: restored with every thread id, name and per-thread state', () => {
    const f = fixtures.start('threads');
    const tids = layoutTids(f);
    expect(tids).toHaveLength(Number(f.layout.threads));
    expect(tidsOf(f.pid)).toEqual(tids);
    const names = namesOf(f.pid);
    const maps = fs.readFileSync(`/proc/${f.pid}/maps`, 'utf8');
    const pid = checkpointKillRestart(f.pid);
    expect(pid).toBe(f.pid);
    expect(tidsOf(pid)).toEqual(tids);
    expect(namesOf(pid)).toEqual(names);
    // No trace of ckpt's per-thread areas (merged side by side in the task).
    expect(fs.readFileSync(`/proc/${pid}/maps`, 'utf8')).toBe(maps);
    for (const t of tids) expect(tracerPid(t)).toBe(0);
    f.go();
    // Registers, TLS, masks, alternate stacks, the thread-directed pending
    // signal, the condvar waiter, the robust mutex and every join.
    expect(f.waitResult(60_000)).toBe('PASS threads 6');
  });

  it('C, pthreads: a checkpoint that leaves it running changes nothing in any thread', () => {
    const f = fixtures.start('threads');
    const img = imagePath();
    ckptOk(['checkpoint', String(f.pid), '-o', img]);
    // The image lists the threads: ckpt info --tree counts them.
    const tree = JSON.parse(ckptOk(['info', '--tree', '--json', img])).tree;
    expect(tree[0].threads).toEqual(layoutTids(f).filter((t) => t !== f.pid));
    expect(ckptOk(['info', '--tree', img]).split('\n')[1]).toMatch(
      /^\s+\d+\s+\d+\s+\d+\s+\d+\s+6 running/,
    );
    fs.rmSync(img);
    for (const t of layoutTids(f)) {
      expect(tracerPid(t)).toBe(0);
      expect(procState(t)).toMatch(/^[RS]$/);
    }
    f.go();
    expect(f.waitResult(60_000)).toBe('PASS threads 6');
  });

  it('python3 with threading: workers, a queue and every join continue', () => {
    const f = fixtures.start('threads.py');
    const tids = layoutTids(f);
    const pid = checkpointKillRestart(f.pid);
    expect(pid).toBe(f.pid);
    expect(tidsOf(pid)).toEqual(tids);
    const atRestart = f.count!();
    sleepSync(300);
    expect(f.count!()).toBeGreaterThan(atRestart);
    f.go();
    expect(f.waitResult(60_000)).toBe(`PASS threads=${tids.length}`);
  });

  it('restart --frozen stops every thread; SIGCONT lets them all go on', () => {
    const f = fixtures.start('threads.py');
    const pid = checkpointKillRestart(f.pid, ['--frozen']);
    waitFor('every thread stopped', () => tidsOf(pid).every((t) => procState(t) === 'T'));
    expectStoppedUntilSigcont(f, pid);
    f.go();
    expect(f.waitResult(60_000)).toMatch(/^PASS/);
  });

  it('checkpoint --leave-stopped leaves every thread stopped and untraced', () => {
    const f = fixtures.start('threads.py');
    const img = imagePath();
    ckptOk(['checkpoint', String(f.pid), '-o', img, '--leave-stopped']);
    fs.rmSync(img);
    waitFor('every thread stopped', () => tidsOf(f.pid).every((t) => procState(t) === 'T'));
    for (const t of tidsOf(f.pid)) expect(tracerPid(t)).toBe(0);
    process.kill(f.pid, 'SIGCONT');
    f.go();
    expect(f.waitResult(60_000)).toMatch(/^PASS/);
  });
});

describe('rseq', () => {
  for (const leave of ['--kill', '--leave-running']) {
    it(`a thread inside an rseq critical section resumes at its abort handler (${leave})`, () => {
      const f = fixtures.start('rseq_cs');
      const img = imagePath();
      ckptOk(['checkpoint', String(f.pid), '-o', img, leave]);
      if (leave === '--kill') {
        waitFor('the original gone', () => !isAlive(f.pid));
        expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(f.pid);
      }
      fs.rmSync(path.dirname(img), { recursive: true, force: true });
      f.go();
      // Inside the section instead, with the section forgotten, it would
      // never come out.
      expect(f.waitResult(30_000)).toBe('PASS');
    });
  }
});

describe('python3 multiprocessing', () => {
  it('a Pool and a Value (threaded parent, forked workers, pipes, unlinked /dev/shm semaphores and heap) continue', () => {
    const f = fixtures.start('mp_pool.py');
    const workers = f.layout.workers!.split(' ').map(Number);
    const sems = (pid: number) =>
      fs
        .readFileSync(`/proc/${pid}/maps`, 'utf8')
        .split('\n')
        .filter((l) => l.includes('/dev/shm/sem.'))
        .map((l) => l.replace(/ +\d+ +\/dev\/shm/, ' /dev/shm')); // inodes differ
    const semsBefore = sems(f.pid);
    expect(semsBefore.length).toBeGreaterThan(0);
    const pid = checkpointKillRestart(f.pid);
    expect(pid).toBe(f.pid);
    for (const w of workers) expect(isAlive(w)).toBe(true);
    // Each semaphore is back at its address, under its (deleted) name.
    expect(sems(pid)).toEqual(semsBefore);
    const atRestart = f.count!();
    waitFor('results again', () => f.count!() > atRestart + 5);
    f.go();
    expect(f.waitResult(60_000)).toMatch(/^PASS results=\d+$/);
  });
});

describe('threads with job control and containers', () => {
  it('a job-stopped threaded process comes back stopped, every thread; SIGCONT resumes it', () => {
    const f = fixtures.start('threads.py');
    process.kill(f.pid, 'SIGSTOP');
    waitFor('every thread stopped', () => tidsOf(f.pid).every((t) => procState(t) === 'T'));
    const pid = checkpointKillRestart(f.pid);
    waitFor('every restored thread stopped', () => tidsOf(pid).every((t) => procState(t) === 'T'));
    expect(tidsOf(pid)).toEqual(layoutTids(f));
    const stoppedAt = f.count!();
    sleepSync(300);
    expect(f.count!()).toBe(stoppedAt);
    process.kill(pid, 'SIGCONT');
    waitFor('counting again', () => f.count!() > stoppedAt);
    f.go();
    expect(f.waitResult(60_000)).toMatch(/^PASS/);
  });

  it('in a container: every thread keeps its id at both pid-namespace levels', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-threads-'));
    const cmd = [...fixtureCommand('threads.py'), dir];
    const init = Number(ckptOk(['run', '--container', '--', ...cmd]).trim());
    fixtures.leftovers.push(init);
    try {
      waitFor('the fixture ready', () => fs.existsSync(path.join(dir, 'ready')), 10_000);
      const layout = readLayout(dir);
      const inner = layout.tids!.split(' ').map(Number);
      const levels = new Map(tidsOf(init).map((t) => [t, nsTids(init, t)]));
      // Its own view: the init is 1, its threads follow.
      expect(inner[0]).toBe(1);
      expect([...levels.values()].map((l) => l[1]).sort((a, b) => a! - b!)).toEqual(
        [...inner].sort((a, b) => a - b),
      );
      const img = imagePath();
      ckptOk(['checkpoint', String(init), '-o', img, '--kill']);
      waitFor('the container gone', () => !isAlive(init));
      const pid = Number(ckptOk(['restart', img, '-d']).trim());
      fs.rmSync(path.dirname(img), { recursive: true, force: true });
      expect(pid).toBe(init);
      expect(new Map(tidsOf(pid).map((t) => [t, nsTids(pid, t)]))).toEqual(levels);
      fs.writeFileSync(path.join(dir, 'go'), '');
      waitFor('the result', () => fs.existsSync(path.join(dir, 'result')), 20_000);
      expect(fs.readFileSync(path.join(dir, 'result'), 'utf8')).toMatch(/^PASS threads=7/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** A thread's ids at every pid-namespace level, outermost first (NSpid). */
function nsTids(pid: number, tid: number): number[] {
  const status = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
  return status
    .match(/^NSpid:\s+(.*)$/m)![1]!
    .split(/\s+/)
    .map(Number);
}

/** Make the next pid the kernel hands out `pid` (root), and start `sleep` there. */
function occupy(pid: number): number | undefined {
  for (let i = 0; i < 20; i++) {
    fs.writeFileSync('/proc/sys/kernel/ns_last_pid', String(pid - 1));
    const child = spawn('sleep', ['60'], { stdio: 'ignore', detached: true });
    if (child.pid === pid) return pid;
    child.kill('SIGKILL');
  }
  return undefined;
}

describe('failures with threads leave nothing behind', () => {
  it('a thread id given instead of its process: clear error, the process untouched', () => {
    const f = fixtures.start('threads');
    const thread = layoutTids(f).find((t) => t !== f.pid)!;
    const r = ckpt(['checkpoint', String(thread), '-o', imagePath(), '--kill']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `${thread} is a thread of process ${f.pid}, not a process; checkpoint pid ${f.pid}`,
      ),
    );
    for (const t of layoutTids(f)) expect(tracerPid(t)).toBe(0);
    f.go();
    expect(f.waitResult(60_000)).toBe('PASS threads 6');
  });

  it('a thread id in use: clear error naming it, no task left; --no-pids restores', () => {
    const f = fixtures.start('threads');
    const img = imagePath();
    ckptOk(['checkpoint', String(f.pid), '-o', img, '--kill']);
    waitFor('the checkpointed process gone', () => !isAlive(f.pid));
    const taken = Math.max(...layoutTids(f));
    expect(occupy(taken)).toBe(taken);
    fixtures.leftovers.push(taken);
    const r = ckpt(['restart', img, '-d']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(`thread id ${taken} of pid ${f.pid} is already in use.*--no-pids`),
    );
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(isAlive(f.pid)).toBe(false);
    // Under new ids, the process and its threads come back all the same.
    const pid = Number(ckptOk(['restart', img, '-d', '--no-pids']).trim());
    fixtures.leftovers.push(pid);
    expect(pid).not.toBe(f.pid);
    expect(tidsOf(pid)).toHaveLength(6);
    fs.rmSync(img);
  });

  it('ckpt killed mid-checkpoint: every thread keeps running, unharmed', async () => {
    const f = fixtures.start('threads');
    const maps = fs.readFileSync(`/proc/${f.pid}/maps`, 'utf8');
    const killedAfter = (ms: number) =>
      new Promise<boolean>((resolve) => {
        const img = imagePath();
        const child = spawn(process.execPath, [CKPT_BIN, 'checkpoint', String(f.pid), '-o', img], {
          stdio: 'ignore',
        });
        const timer = setTimeout(() => child.kill('SIGKILL'), ms);
        child.on('exit', (code) => {
          clearTimeout(timer);
          fs.rmSync(img, { force: true });
          resolve(code === null);
        });
      });
    const whole = Date.now();
    await killedAfter(60_000);
    const duration = Date.now() - whole;
    let kills = 0;
    for (let k = 1; k <= 8; k++) {
      if (await killedAfter(Math.round((duration * k) / 8))) kills++;
      sleepSync(20);
      for (const t of layoutTids(f)) {
        expect(tracerPid(t)).toBe(0);
        expect(procState(t)).toMatch(/^[RS]$/);
      }
    }
    expect(kills).toBeGreaterThan(4);
    // A complete checkpoint removes the code pages killed ones left.
    expect(await killedAfter(60_000)).toBe(false);
    expect(fs.readFileSync(`/proc/${f.pid}/maps`, 'utf8')).toBe(maps);
    // ...and the code a killed one left in the vDSO's padding.
    expect(vdsoTail(f.pid).every((b) => b === 0)).toBe(true);
    f.go();
    expect(f.waitResult(60_000)).toBe('PASS threads 6');
  });
});
