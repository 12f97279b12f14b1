import { describe, expect, it } from 'vitest';
import {
  parseSmaps,
  parseSmapsFlags,
  parseSmapsRollup,
  VM_FLAG_MEANINGS,
} from '../../../src/proc/index.js';
import { sample } from './fixtures.js';

describe('parseSmaps', () => {
  const smaps = parseSmaps(sample('smaps-tricky.txt'));
  const at = (start: bigint) => smaps.find((m) => m.start === start)!;

  it('has one entry per VMA with maps fields, sizes in bytes and flags', () => {
    expect(smaps).toHaveLength(28);
    const heap = smaps.find((m) => m.kind === 'heap')!;
    expect(heap.sizes.size).toBe(132 * 1024);
    expect(heap.sizes.kernelPageSize).toBe(4096);
    expect([...heap.vmFlags]).toEqual(['rd', 'wr', 'mr', 'mw', 'me', 'ac']);
    expect(heap.thpEligible).toBe(false); // THP is "madvise" on this machine
    expect(heap.extra.size).toBe(0);
  });

  it('shows the VmFlags of special VMAs', () => {
    expect(at(0x7fe7af32f000n).vmFlags.has('gd')).toBe(true); // MAP_GROWSDOWN
    expect(at(0x7fe7af529000n).vmFlags.has('dd')).toBe(true); // MADV_DONTDUMP
    const shmem = at(0x7fe7af22d000n);
    expect(shmem.vmFlags.has('sh')).toBe(true);
    expect(shmem.sizes.rss).toBe(4096);
    const vsyscall = smaps[smaps.length - 1]!;
    expect([...vsyscall.vmFlags]).toEqual(['ex']);
    expect(VM_FLAG_MEANINGS.gd).toMatch(/grows down/);
  });

  it('keeps unknown keys raw', () => {
    const text = sample('smaps-tricky.txt')
      .replace('Locked:', 'ProtectionKey:         0\nLocked:')
      .replace('THPeligible:           0', 'THPeligible:           1');
    const first = parseSmaps(text)[0]!;
    expect(first.extra.get('ProtectionKey')).toBe('0');
    expect(first.thpEligible).toBe(true);
  });

  it('rejects fields before the first VMA and malformed sizes', () => {
    expect(() => parseSmaps('Rss: 4 kB\n', '/proc/3/smaps')).toThrow(/\/proc\/3\/smaps/);
    const bad = sample('smaps-tricky.txt').replace(/^Rss:.*$/m, 'Rss: many');
    expect(() => parseSmaps(bad)).toThrow(/Rss is not "N kB"/);
  });
});

describe('parseSmapsFlags', () => {
  it('gives the VMAs, flags and THP eligibility of parseSmaps, without sizes', () => {
    const text = sample('smaps-tricky.txt').replace(
      'THPeligible:           0',
      'THPeligible:           1',
    );
    const full = parseSmaps(text);
    const lean = parseSmapsFlags(text);
    expect(lean).toEqual(full.map(({ sizes: _s, extra: _e, ...rest }) => rest));
    expect(lean[0]!.thpEligible).toBe(true);
  });

  it('rejects fields before the first VMA and a malformed VMA line, naming the file', () => {
    expect(() => parseSmapsFlags('Rss: 4 kB\n', '/proc/3/smaps')).toThrow(/\/proc\/3\/smaps/);
    expect(() => parseSmapsFlags('00400000-zz r-xp\n')).toThrow(/not a VMA line/);
  });
});

describe('parseSmapsRollup', () => {
  it('sums the whole address space', () => {
    const r = parseSmapsRollup(sample('smaps_rollup.txt'));
    expect(r.start).toBe(0x559b3660d000n);
    expect(r.end).toBe(0x7ffdf4a27000n);
    expect(r.sizes.rss).toBe(1660 * 1024);
    expect(r.sizes.pssAnon).toBe(124 * 1024);
    expect(r.sizes.privateDirty).toBe(144 * 1024);
  });

  it('rejects a per-VMA smaps', () => {
    expect(() => parseSmapsRollup(sample('smaps-tricky.txt'))).toThrow(/\[rollup\]/);
  });
});
