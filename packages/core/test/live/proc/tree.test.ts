import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireRoot } from '../../../../../test/support/prereq.js';
import {
  collectSubtree,
  readComm,
  readStat,
  scanProcesses,
  threadsOf,
} from '../../../src/proc/index.js';
import { buildHelper, type HelperBuild, startHelper } from './support.js';

let build: HelperBuild;

beforeAll(() => {
  requireRoot();
  build = buildHelper();
});

afterAll(() => build?.cleanup());

describe('process tree', () => {
  it('collects a subtree depth-first, children by ascending pid', async () => {
    const h = await startHelper(build, ['tree']);
    const [root, a, a1, a2, b] = h.lines[0]!.split(' ').map(Number) as [
      number,
      number,
      number,
      number,
      number,
    ];
    try {
      expect(root).toBe(h.pid);
      const sub = collectSubtree(root);
      const sorted = (x: number[]) => [...x].sort((p, q) => p - q);
      const [first, second] = sorted([a, b]);
      const subtreeOf = (pid: number) => (pid === a ? [a, ...sorted([a1, a2])] : [b]);
      expect(sub.map((p) => p.pid)).toEqual([root, ...subtreeOf(first!), ...subtreeOf(second!)]);
      expect(sub.find((p) => p.pid === a1)).toMatchObject({
        ppid: a,
        pgid: readStat(root).pgrp, // forks inherit the group
        state: 'S',
        comm: 'helper',
      });

      const all = scanProcesses();
      expect(all.find((p) => p.pid === process.pid)?.comm).toBeDefined();
      expect(all.map((p) => p.pid)).toEqual(sorted(all.map((p) => p.pid)));
      expect(collectSubtree(process.pid, all).map((p) => p.pid)).toContain(a2);
    } finally {
      await h.kill([a1, a2, a, b]);
    }
  });
});

describe('threads', () => {
  it('lists threads and reads each one through the stat parser', async () => {
    const h = await startHelper(build, ['threads', '3'], 3);
    try {
      const tids = h.lines.map(Number).sort((p, q) => p - q);
      expect(threadsOf(h.pid)).toEqual([h.pid, ...tids]);
      expect(readStat(h.pid).numThreads).toBe(4);
      const names = tids.map((tid) => readComm(h.pid, tid)).sort();
      expect(names).toEqual(['t1', 't2', 't3']);
      const s = readStat(h.pid, tids[0]);
      expect(s.pid).toBe(tids[0]);
      expect(s.ppid).toBe(process.pid);
      expect(s.exitSignal).toBe(-1); // threads send no signal on exit
      expect(() => readStat(h.pid, 999999)).toThrow(/thread 999999 of process/);
    } finally {
      await h.kill();
    }
  });
});
