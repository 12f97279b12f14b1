import { describe, expect, it } from 'vitest';
import { decodePagemapEntry, pageRuns } from '../../../src/proc/index.js';

const PRESENT = 1n << 63n;
const SWAPPED = 1n << 62n;
const FILE = 1n << 61n;
const EXCLUSIVE = 1n << 56n;

describe('decodePagemapEntry', () => {
  it('decodes a present page', () => {
    const e = decodePagemapEntry(PRESENT | EXCLUSIVE | 0x12345n);
    expect(e).toMatchObject({ present: true, swapped: false, exclusive: true, filePage: false });
    expect(e.pfn).toBe(0x12345n);
    expect(e.softDirty).toBe(false);
  });

  it('decodes a swapped page into type and offset', () => {
    const e = decodePagemapEntry(SWAPPED | (0x777n << 5n) | 3n);
    expect(e).toMatchObject({
      present: false,
      swapped: true,
      swapType: 3,
      swapOffset: 0x777n,
      pfn: 0n,
    });
  });

  it('decodes an absent page', () => {
    expect(decodePagemapEntry(0n)).toMatchObject({ present: false, swapped: false, pfn: 0n });
  });
});

describe('pageRuns', () => {
  const base = 0x7f0000000000n;
  const entries = BigUint64Array.from([
    PRESENT | 1n,
    PRESENT | 2n,
    0n,
    SWAPPED,
    PRESENT | FILE,
    0n,
    0n,
    PRESENT | FILE,
  ]);

  it('coalesces present and swapped pages into runs', () => {
    expect(pageRuns(entries, base)).toEqual([
      { start: base, pages: 2 },
      { start: base + 3n * 4096n, pages: 2 },
      { start: base + 7n * 4096n, pages: 1 },
    ]);
  });

  it('can skip page-cache pages', () => {
    expect(pageRuns(entries, base, { excludeFilePages: true })).toEqual([
      { start: base, pages: 2 },
      { start: base + 3n * 4096n, pages: 1 },
    ]);
  });

  it('handles empty, all-absent and all-present ranges', () => {
    expect(pageRuns(new BigUint64Array(0), base)).toEqual([]);
    expect(pageRuns(new BigUint64Array(5), base)).toEqual([]);
    expect(pageRuns(new BigUint64Array(262144).fill(PRESENT), base)).toEqual([
      { start: base, pages: 262144 },
    ]);
  });

  it('works on a view that does not start at offset 0 of its buffer', () => {
    const view = entries.subarray(3);
    expect(pageRuns(view, base)).toEqual([
      { start: base, pages: 2 },
      { start: base + 4n * 4096n, pages: 1 },
    ]);
  });
});
