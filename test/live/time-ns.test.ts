/**
 * Time namespaces the tree made (core's time-ns.ts): a python3 program
 * (two threads, and a child process) logs CLOCK_MONOTONIC and
 * CLOCK_BOOTTIME every 50 ms; it is checkpointed with `--kill`, the image
 * waits 2.5 s, and it is restarted. In a time namespace of the tree's
 * (`ckpt run --container --time`; `unshare --time --fork` below the root;
 * a subtree root in the namespace its launcher made) no step of either
 * clock is longer than a second: the clocks continue from where they were,
 * in a new namespace that every task and thread of it shares. The same
 * program in ckpt's own namespace sees the 2.5 s go by (the assertion can
 * fail). Refused, naming the task and the namespace: a task that entered
 * a time namespace by setns(2), a subtree whose namespace a process
 * outside it is in.
 */
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ckpt, ckptOk } from '../support/ckpt.js';
import { isAlive, procState, python, sleepSync } from '../support/fixtures.js';
import { cleanupAfterEach } from '../support/live.js';
import { requireCommand, requireRoot } from '../support/prereq.js';
import { childrenOf, descendants, namespaceOf, waitFor } from '../support/procs.js';

const { leftovers, tmpDir, tmpImage } = cleanupAfterEach();

beforeAll(() => {
  requireRoot();
  for (const cmd of ['unshare', 'nsenter', 'python3']) requireCommand(cmd);
});

/**
 * Every 50 ms, a second thread appends "MONOTONIC BOOTTIME" (seconds) to
 * DIR/log; a child process does the same to DIR/child.
 */
const PROGRAM = `
import os, sys, threading, time
d = sys.argv[1]
def tick(name):
    f = open(os.path.join(d, name), 'a', buffering=1)
    while True:
        f.write('%.6f %.6f\\n' % (time.clock_gettime(time.CLOCK_MONOTONIC), time.clock_gettime(time.CLOCK_BOOTTIME)))
        time.sleep(0.05)
if os.fork() == 0:
    tick('child')
threading.Thread(target=tick, args=('log',), daemon=True).start()
while True:
    time.sleep(1000)
`;

const GAP_S = 2.5;

function ticks(dir: string, name: string): [number, number][] {
  return fs
    .readFileSync(path.join(dir, name), 'utf8')
    .split('\n')
    .filter((l) => /^\d+\.\d+ \d+\.\d+$/.test(l))
    .map((l) => l.split(' ').map(Number) as [number, number]);
}

/** The longest step between two lines of the log, per clock. */
function longestSteps(dir: string, name: string): { monotonic: number; boottime: number } {
  const t = ticks(dir, name);
  let monotonic = 0;
  let boottime = 0;
  for (let i = 1; i < t.length; i++) {
    monotonic = Math.max(monotonic, t[i]![0] - t[i - 1]![0]);
    boottime = Math.max(boottime, t[i]![1] - t[i - 1]![1]);
    // Never backwards.
    expect(t[i]![0]).toBeGreaterThan(t[i - 1]![0]);
  }
  return { monotonic, boottime };
}

function writeProgram(dir: string): string {
  const prog = path.join(dir, 'ticks.py');
  fs.writeFileSync(prog, PROGRAM);
  return prog;
}

function waitTicking(dir: string, minLines = 5): void {
  for (const name of ['log', 'child']) {
    waitFor(
      `${name} to tick`,
      () => fs.existsSync(path.join(dir, name)) && ticks(dir, name).length >= minLines,
      10_000,
    );
  }
}

/** Checkpoint `root` with --kill (plus `flags`), wait GAP_S, restart it detached; returns stderr of the checkpoint. */
function killWaitRestart(root: number, flags: string[] = []): string {
  const img = tmpImage();
  const r = ckpt(['checkpoint', String(root), '-o', img, '--kill', ...flags]);
  expect(r.code, r.stderr).toBe(0);
  waitFor('the tree to die', () => procState(root) === undefined);
  sleepSync(GAP_S * 1000);
  expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(root);
  // The whole tree: killing the root alone leaves the program's child.
  leftovers.push(root, ...descendants(root));
  return r.stderr;
}

/** Wait for more ticks after the restart, then the longest steps of both logs. */
function stepsAfterRestart(dir: string): { monotonic: number; boottime: number }[] {
  const before = ticks(dir, 'log').length;
  waitTicking(dir, before + 10);
  return ['log', 'child'].map((name) => longestSteps(dir, name));
}

/** Every thread of `pid` is in time namespace `ns`. */
function expectThreadsIn(pid: number, ns: string): void {
  const tids = fs.readdirSync(`/proc/${pid}/task`);
  expect(tids.length).toBe(2);
  for (const tid of tids) expect(fs.readlinkSync(`/proc/${pid}/task/${tid}/ns/time`)).toBe(ns);
}

describe('time namespaces', () => {
  it('a container with --time keeps its clocks continuous through --kill and restart', () => {
    const dir = tmpDir('ckpt-timens-');
    const prog = writeProgram(dir);
    const init = Number(ckptOk(['run', '--container', '--time', '--', python(), prog, dir]).trim());
    leftovers.push(init);
    waitTicking(dir);
    const mine = namespaceOf('self', 'time');
    expect(namespaceOf(init, 'time')).not.toBe(mine);
    killWaitRestart(init, ['--container']);
    for (const step of stepsAfterRestart(dir)) {
      expect(step.monotonic).toBeLessThan(1);
      expect(step.boottime).toBeLessThan(1);
    }
    const ns = namespaceOf(init, 'time');
    expect(ns).not.toBe(mine);
    expect(namespaceOf(init, 'time_for_children')).toBe(ns);
    const [child] = childrenOf(init);
    expect(namespaceOf(child!, 'time')).toBe(ns);
    expectThreadsIn(init, ns);
    // The gap went into the new namespace's offsets: below zero.
    expect(fs.readFileSync(`/proc/${init}/timens_offsets`, 'utf8')).toMatch(/monotonic\s+-\d/);
  });

  it("in ckpt's own time namespace the clocks show the time the image waited", () => {
    const dir = tmpDir('ckpt-timens-');
    const prog = writeProgram(dir);
    const init = Number(ckptOk(['run', '--container', '--', python(), prog, dir]).trim());
    leftovers.push(init);
    waitTicking(dir);
    expect(namespaceOf(init, 'time')).toBe(namespaceOf('self', 'time'));
    killWaitRestart(init, ['--container']);
    for (const step of stepsAfterRestart(dir)) {
      expect(step.monotonic).toBeGreaterThan(GAP_S);
      expect(step.boottime).toBeGreaterThan(GAP_S);
    }
  });

  it('a namespace made below the root (unshare --time --fork) is made again there, with its offset', () => {
    const dir = tmpDir('ckpt-timens-');
    const prog = writeProgram(dir);
    const root = Number(
      ckptOk([
        'run',
        '--',
        'unshare',
        '--time',
        '--fork',
        '--monotonic',
        '86400',
        python(),
        prog,
        dir,
      ]).trim(),
    );
    leftovers.push(root);
    waitTicking(dir);
    const [py] = childrenOf(root);
    leftovers.push(py!);
    const mine = namespaceOf('self', 'time');
    killWaitRestart(root);
    for (const step of stepsAfterRestart(dir)) expect(step.monotonic).toBeLessThan(1);
    // Still a day ahead of the host's clock, less the time the image waited.
    const last = ticks(dir, 'log').at(-1)![0];
    const hostNow = Number(process.hrtime.bigint()) / 1e9;
    expect(last - hostNow).toBeGreaterThan(86400 - GAP_S - 60);
    expect(last - hostNow).toBeLessThan(86400 - GAP_S + 0.5);
    expect(namespaceOf(root, 'time')).toBe(mine);
    const ns = namespaceOf(root, 'time_for_children');
    expect(ns).not.toBe(mine);
    expect(childrenOf(root)).toEqual([py]);
    expect(namespaceOf(py!, 'time')).toBe(ns);
    expectThreadsIn(py!, ns);
  });

  it("a subtree root in its launcher's time namespace gets a new one, with a warning", () => {
    const dir = tmpDir('ckpt-timens-');
    const prog = writeProgram(dir);
    const launcher = Number(
      ckptOk(['run', '--', 'unshare', '--time', '--fork', python(), prog, dir]).trim(),
    );
    leftovers.push(launcher);
    waitTicking(dir);
    const [root] = childrenOf(launcher);
    const stderr = killWaitRestart(root!);
    expect(stderr).toMatch(
      new RegExp(`pid ${launcher} outside the checkpointed tree also holds the time namespace`),
    );
    for (const step of stepsAfterRestart(dir)) expect(step.monotonic).toBeLessThan(1);
    expect(namespaceOf(root!, 'time')).not.toBe(namespaceOf('self', 'time'));
  });
});

describe('time namespaces restart could not rebuild', () => {
  /** A process in a time namespace of its own, outside any tree checkpointed here; returns its pid. */
  function outsider(): number {
    const launcher = Number(
      ckptOk(['run', '--', 'unshare', '--time', '--fork', 'sleep', '1000']).trim(),
    );
    leftovers.push(launcher);
    waitFor('the outsider', () => childrenOf(launcher).length === 1);
    const [pid] = childrenOf(launcher);
    leftovers.push(pid!);
    return pid!;
  }

  it('a task that entered a time namespace with setns(2) is refused, naming it, and left running', () => {
    const other = outsider();
    const root = Number(
      ckptOk([
        'run',
        '--',
        'sh',
        '-c',
        `nsenter --time=/proc/${other}/ns/time sleep 1000; :`,
      ]).trim(),
    );
    leftovers.push(root);
    waitFor('the sleep in its namespace', () =>
      descendants(root).some((p) => {
        try {
          return (
            namespaceOf(p, 'time') === namespaceOf(other, 'time') && procState(p) !== undefined
          );
        } catch {
          return false;
        }
      }),
    );
    const inNs = descendants(root).at(-1)!;
    leftovers.push(inNs);
    const r = ckpt(['checkpoint', String(root), '-o', tmpImage(), '--kill']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `pid ${inNs} is in time namespace time:\\[\\d+\\], not the one its parent ${root} gives its children .*setns\\(2\\)`,
      ),
    );
    expect(isAlive(root)).toBe(true);
    expect(isAlive(inNs)).toBe(true);
  });

  it('a subtree whose time namespace a process outside it is in is refused, naming that process', () => {
    const other = outsider();
    const launcher = Number(
      fs.readFileSync(`/proc/${other}/stat`, 'utf8').split(') ')[1]!.split(' ')[1],
    );
    const root = Number(
      ckptOk(['run', '--', 'nsenter', `--time=/proc/${other}/ns/time`, 'sleep', '1000']).trim(),
    );
    leftovers.push(root);
    waitFor(
      'the root in its namespace',
      () => namespaceOf(root, 'time') === namespaceOf(other, 'time'),
    );
    const r = ckpt(['checkpoint', String(root), '-o', tmpImage(), '--kill']);
    expect(r.code).toBe(1);
    // The first found: the launcher that made it (for its children), or the sleep in it.
    expect(r.stderr).toMatch(
      new RegExp(
        `time namespace time:\\[\\d+\\] is also the namespace (for children of pid ${launcher} \\(unshare\\)|of pid ${other} \\(sleep\\)), outside the tree`,
      ),
    );
    expect(isAlive(root)).toBe(true);
  });
});
