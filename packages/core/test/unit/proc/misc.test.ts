import { describe, expect, it } from 'vitest';
import type { ProcessInfo } from '../../../src/proc/index.js';
import {
  collectSubtree,
  parseAuxv,
  parseNsLink,
  parseNulList,
  parsePersonality,
} from '../../../src/proc/index.js';
import { sampleBytes } from './fixtures.js';

describe('parseAuxv', () => {
  it('reads u64 pairs up to AT_NULL', () => {
    const auxv = parseAuxv(sampleBytes('auxv.bin'));
    const byType = new Map(auxv.map((e) => [e.type, e.value]));
    expect(byType.get(6)).toBe(4096n); // AT_PAGESZ
    expect(byType.get(33)).toBe(0x7f51c78f3000n); // AT_SYSINFO_EHDR: the vdso
    expect(byType.get(0)).toBeUndefined();
    expect(auxv[auxv.length - 1]!.type).toBe(28); // AT_MINSIGSTKSZ, last before AT_NULL
  });

  it('rejects a partial pair', () => {
    expect(() => parseAuxv(new Uint8Array(24), '/proc/2/auxv')).toThrow(/\/proc\/2\/auxv/);
  });
});

describe('parseNulList', () => {
  it('splits argv-style lists', () => {
    expect(parseNulList(Buffer.from('sleep\x0030\x00'))).toEqual(['sleep', '30']);
    expect(parseNulList(Buffer.from('a\x00\x00b\x00'))).toEqual(['a', '', 'b']);
    expect(parseNulList(Buffer.from('rewritten title'))).toEqual(['rewritten title']);
    expect(parseNulList(new Uint8Array(0))).toEqual([]);
  });
});

describe('parsePersonality', () => {
  it('parses hex', () => {
    expect(parsePersonality('00000000\n')).toBe(0);
    expect(parsePersonality('00440000\n')).toBe(0x0440000);
    expect(() => parsePersonality('xyz')).toThrow(/personality/);
  });
});

describe('parseNsLink', () => {
  it('parses TYPE:[INODE]', () => {
    expect(parseNsLink('pid_for_children', 'pid:[4026531836]')).toEqual({
      type: 'pid_for_children',
      inode: 4026531836,
    });
    expect(() => parseNsLink('net', 'net:4026531833')).toThrow(/ns\/net/);
  });
});

describe('collectSubtree', () => {
  const p = (pid: number, ppid: number): ProcessInfo => ({
    pid,
    ppid,
    pgid: pid,
    sid: pid,
    state: 'S',
    comm: `p${pid}`,
    starttime: 0,
  });
  // 10 ─┬─ 30 ── 31
  //     ├─ 12 ─┬─ 50
  //     │      └─ 13
  //     └─ 40
  const procs = [
    p(1, 0),
    p(10, 1),
    p(30, 10),
    p(31, 30),
    p(12, 10),
    p(50, 12),
    p(13, 12),
    p(40, 10),
    p(99, 1),
  ];

  it('returns root first, then each child subtree in ascending pid order', () => {
    expect(collectSubtree(10, procs).map((x) => x.pid)).toEqual([10, 12, 13, 50, 30, 31, 40]);
    expect(collectSubtree(31, procs).map((x) => x.pid)).toEqual([31]);
  });

  it('fails with ESRCH for a missing root', () => {
    expect(() => collectSubtree(77, procs)).toThrow(/process 77 does not exist/);
  });

  it('survives a parent cycle from pid reuse during a scan', () => {
    expect(collectSubtree(5, [p(5, 6), p(6, 5)]).map((x) => x.pid)).toEqual([5, 6]);
  });

  it('handles a deep chain without recursion', () => {
    const chain = Array.from({ length: 20000 }, (_, i) => p(i + 2, i + 1));
    expect(collectSubtree(2, chain)).toHaveLength(20000);
  });
});
