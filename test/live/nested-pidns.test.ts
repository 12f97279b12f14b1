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
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ckptOk } from '../support/ckpt.js';
import { procState } from '../support/fixtures.js';
import { cleanupAfterEach } from '../support/live.js';
import { requireCommand, requireRoot } from '../support/prereq.js';
import { descendants, nsPids, waitFor } from '../support/procs.js';

const { leftovers, tmpDir, tmpImage } = cleanupAfterEach();

beforeAll(() => {
  requireRoot();
  for (const cmd of ['unshare', 'setsid', 'sh']) requireCommand(cmd);
});

/** How long each wait here may take (longer than waitFor's default). */
const WAIT_MS = 10_000;

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
    const dir = tmpDir('ckpt-nested-');
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
    waitFor('the nested loop', () => lastCount(out) >= 2, WAIT_MS);
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

    const img = tmpImage();
    ckptOk(['checkpoint', String(root), '-o', img, '--kill']);
    waitFor('the tree to die', () => procState(root) === undefined, WAIT_MS);
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
    waitFor('the nested loop to continue', () => lastCount(out) >= n + 3, WAIT_MS);
    const logged = fs.readFileSync(log, 'utf8').trim().split('\n').map(Number);
    expect(logged).toEqual(logged.map((_, i) => i + 1));
  });

  it('a container with a nested pid namespace keeps pids at all three levels', () => {
    const dir = tmpDir('ckpt-nested-');
    const out = path.join(dir, 'count');
    const script = `unshare --pid --fork sh -c '${nestedLoop(out)}' > /dev/null & while :; do sleep 1; done`;
    const init = Number(ckptOk(['run', '--container', '--', 'sh', '-c', script]).trim());
    leftovers.push(init);
    waitFor('the nested loop', () => lastCount(out) >= 2, WAIT_MS);
    const before = descendants(init).filter((p) => nsPids(p).length === 3);
    expect(before.length).toBeGreaterThanOrEqual(2); // the nested init and its sleep
    const levels = new Map(before.map((p) => [p, nsPids(p)]));

    const img = tmpImage();
    ckptOk(['checkpoint', String(init), '-o', img, '--kill', '--container']);
    waitFor('the container to die', () => procState(init) === undefined, WAIT_MS);
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(init);

    for (const [p, ns] of levels) {
      if (procState(p) === undefined) continue; // a short sleep of the loop that ended
      expect(nsPids(p)).toEqual(ns);
    }
    const nestedInit = [...levels].find(([, ns]) => ns[2] === 1)![0];
    expect(procState(nestedInit)).toBeDefined();
    const n = lastCount(out);
    waitFor('the nested loop to continue', () => lastCount(out) >= n + 3, WAIT_MS);
  });
});
