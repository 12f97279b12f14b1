/**
 * Nested pid namespaces: `unshare --pid --fork` inside the checkpointed
 * tree makes a task the init of a pid namespace below its parent's, and
 * leaves the parent's new children going there (pid_for_children). After
 * checkpoint --kill and restart, every task has its pid at every level,
 * the parent's children still go to the nested namespace, the nested tasks
 * keep the files they share with the parent (copied through ckpt, which
 * they cannot see), and no fd of ckpt's is left in any task.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ckptOk, imagePath } from '../support/ckpt.js';
import { procState, sleepSync } from '../support/fixtures.js';
import { requireCommand, requireRoot } from '../support/prereq.js';

const leftovers: number[] = [];
const dirs: string[] = [];

beforeAll(() => {
  requireRoot();
  for (const cmd of ['unshare', 'setsid', 'sh']) requireCommand(cmd);
});

afterEach(() => {
  for (const pid of leftovers.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): void {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    sleepSync(20);
  }
}

function nsPids(pid: number): number[] {
  const line = fs
    .readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('NSpid:'))!;
  return line.split(/\s+/).slice(1).filter(Boolean).map(Number);
}

/** Live descendants of `root` (host pids), depth-first by pid. */
function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (state === 'Z') continue;
      children.set(Number(ppid), [...(children.get(Number(ppid)) ?? []), Number(name)]);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of (children.get(p) ?? []).sort((a, b) => a - b)) {
      out.push(c);
      walk(c);
    }
  };
  walk(root);
  return out;
}

function lastCount(file: string): number {
  try {
    return Number(fs.readFileSync(file, 'utf8').trim() || 0);
  } catch {
    return 0;
  }
}

/** The nested init's loop: a long sleep child, and a counter written through inherited stdout. */
function nestedLoop(out: string): string {
  return `sleep 1000 & i=0; while :; do i=$((i+1)); echo $i > ${out}; echo $i; sleep 0.1; done`;
}

describe('nested pid namespaces', () => {
  it('a subtree with an unshared pid namespace comes back with pids at both levels', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-nested-'));
    dirs.push(dir);
    const out = path.join(dir, 'count');
    const log = path.join(dir, 'log');
    const root = Number(
      ckptOk([
        'run',
        '--stdout',
        log,
        '--',
        'unshare',
        '--pid',
        '--fork',
        'sh',
        '-c',
        nestedLoop(out),
      ]).trim(),
    );
    leftovers.push(root);
    waitFor('the nested loop', () => lastCount(out) >= 2);
    const before = descendants(root);
    leftovers.push(...before);
    const init = before[0]!;
    expect(nsPids(init)).toEqual([init, 1]);
    const sleeper = before.find(
      (p) => fs.readFileSync(`/proc/${p}/cmdline`, 'utf8') === 'sleep\x001000\x00',
    )!;
    const sleeperNs = nsPids(sleeper);
    expect(sleeperNs).toHaveLength(2);
    const nestedNs = fs.readlinkSync(`/proc/${init}/ns/pid`);
    expect(fs.readlinkSync(`/proc/${root}/ns/pid_for_children`)).toBe(nestedNs);

    const img = imagePath();
    dirs.push(path.dirname(img));
    ckptOk(['checkpoint', String(root), '-o', img, '--kill']);
    waitFor('the tree to die', () => procState(root) === undefined);
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(root);

    expect(nsPids(init)).toEqual([init, 1]);
    expect(nsPids(sleeper)).toEqual(sleeperNs);
    const restoredNs = fs.readlinkSync(`/proc/${init}/ns/pid`);
    expect(restoredNs).not.toBe(fs.readlinkSync('/proc/self/ns/pid'));
    expect(fs.readlinkSync(`/proc/${sleeper}/ns/pid`)).toBe(restoredNs);
    // unshare's later children would still go to the nested namespace.
    expect(fs.readlinkSync(`/proc/${root}/ns/pid_for_children`)).toBe(restoredNs);
    // stdout is still the one file the parent also holds (copied through ckpt).
    for (const p of [root, init]) {
      expect(fs.readlinkSync(`/proc/${p}/fd/1`)).toBe(log);
      // Only the program's own fds: ckpt's pidfd is gone.
      expect(fs.readdirSync(`/proc/${p}/fd`).map(Number).sort()).toEqual([0, 1, 2]);
    }
    const n = lastCount(out);
    waitFor('the nested loop to continue', () => lastCount(out) >= n + 3);
    const logged = fs.readFileSync(log, 'utf8').trim().split('\n').map(Number);
    expect(logged).toEqual(logged.map((_, i) => i + 1));
  });

  it('a container with a nested pid namespace keeps pids at all three levels', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-nested-'));
    dirs.push(dir);
    const out = path.join(dir, 'count');
    const script = `unshare --pid --fork sh -c '${nestedLoop(out)}' > /dev/null & while :; do sleep 1; done`;
    const init = Number(ckptOk(['run', '--container', '--', 'sh', '-c', script]).trim());
    leftovers.push(init);
    waitFor('the nested loop', () => lastCount(out) >= 2);
    const before = descendants(init).filter((p) => nsPids(p).length === 3);
    expect(before.length).toBeGreaterThanOrEqual(2); // the nested init and its sleep
    const levels = new Map(before.map((p) => [p, nsPids(p)]));

    const img = imagePath();
    dirs.push(path.dirname(img));
    ckptOk(['checkpoint', String(init), '-o', img, '--kill', '--container']);
    waitFor('the container to die', () => procState(init) === undefined);
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(init);

    for (const [p, ns] of levels) {
      if (procState(p) === undefined) continue; // a short sleep of the loop that ended
      expect(nsPids(p)).toEqual(ns);
    }
    const nestedInit = [...levels].find(([, ns]) => ns[2] === 1)![0];
    expect(procState(nestedInit)).toBeDefined();
    const n = lastCount(out);
    waitFor('the nested loop to continue', () => lastCount(out) >= n + 3);
  });
});
