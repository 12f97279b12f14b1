import { describe, expect, it } from 'vitest';
import { isCkptError } from '../../../src/errors.js';
import { parseStat, parseStatBrief } from '../../../src/proc/index.js';
import { sample } from './fixtures.js';

describe('parseStat', () => {
  it('takes comm up to the last parenthesis when it contains ") ("', () => {
    const s = parseStat(sample('stat-weird-comm.txt'));
    expect(s.pid).toBe(3538);
    expect(s.comm).toBe('a) (b c)');
    expect(s.state).toBe('S');
    expect([s.ppid, s.pgrp, s.session, s.ttyNr, s.tpgid]).toEqual([1, 3528, 2694, 0, -1]);
    expect(s.numThreads).toBe(1);
    expect(s.starttime).toBe(36418);
    expect(s.vsize).toBe(2658304n);
    expect(s.rss).toBe(383);
    expect(s.rsslim).toBe(18446744073709551615n);
    expect(s.startcode).toBe(94125120610304n);
    expect(s.exitSignal).toBe(17);
    expect(s.startData).toBe(94125120622032n);
    expect(s.startBrk).toBe(94125810581504n);
    expect(s.argStart).toBe(140728707738167n);
    expect(s.envEnd).toBe(140728707739636n);
    expect(s.exitCode).toBe(0);
  });

  it('keeps a newline inside comm', () => {
    const s = parseStat(sample('stat-newline-comm.txt'));
    expect(s.comm).toBe('x\n) 1 (\\y');
    expect(s.ppid).toBe(1);
    expect(s.exitSignal).toBe(17);
  });

  it('parses a kernel thread and a zombie (addresses are 0)', () => {
    const k = parseStat(sample('stat-kthread.txt'));
    expect([k.pid, k.comm, k.ppid, k.vsize, k.startcode]).toEqual([2, 'kthreadd', 0, 0n, 0n]);
    const z = parseStat(sample('stat-zombie.txt'));
    expect(z.state).toBe('Z');
    expect(z.flags & 0x4).toBe(0x4); // PF_EXITING
    expect(z.argStart).toBe(0n);
  });

  it('parses negative fields (tpgid, nice)', () => {
    const line = sample('stat-weird-comm.txt').replace(' 20 0 1 0 ', ' 39 19 1 0 ');
    const s = parseStat(line);
    expect([s.priority, s.nice, s.tpgid]).toEqual([39, 19, -1]);
  });

  it('rejects truncated and garbled lines naming the file', () => {
    for (const bad of ['', '12 (x) S 1 2', 'garbage', '1 (a) S x 1 1 0 -1']) {
      try {
        parseStat(bad, '/proc/9/stat');
        expect.unreachable();
      } catch (e) {
        expect(isCkptError(e, 'EINVAL')).toBe(true);
        expect((e as Error).message).toContain('/proc/9/stat');
      }
    }
    const shifted = sample('stat-weird-comm.txt').replace(' 1 3528 ', ' one 3528 ');
    expect(() => parseStat(shifted)).toThrow(/ppid is not a decimal integer/);
  });
});

describe('parseStatBrief', () => {
  it('gives the tree fields exactly as parseStat does', () => {
    for (const name of [
      'stat-weird-comm.txt',
      'stat-newline-comm.txt',
      'stat-kthread.txt',
      'stat-zombie.txt',
    ]) {
      const full = parseStat(sample(name));
      expect(parseStatBrief(sample(name))).toEqual({
        pid: full.pid,
        comm: full.comm,
        state: full.state,
        ppid: full.ppid,
        pgrp: full.pgrp,
        session: full.session,
        starttime: full.starttime,
      });
    }
  });

  it('rejects truncated and garbled lines naming the file', () => {
    for (const bad of ['', '12 (x) S 1 2', 'garbage', '1 (a) S x 1 1 0 -1']) {
      expect(() => parseStatBrief(bad, '/proc/9/stat')).toThrow(/\/proc\/9\/stat/);
    }
    const shifted = sample('stat-weird-comm.txt').replace(' 1 3528 ', ' one 3528 ');
    expect(() => parseStatBrief(shifted)).toThrow(/ppid is not a decimal integer/);
  });
});
