import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireRoot } from '../../../../../test/support/prereq.js';
import {
  decodePagemapEntry,
  mapsFilePath,
  pageRuns,
  readMaps,
  readPagemap,
  readPageRuns,
  readSmaps,
  readSmapsRollup,
} from '../../../src/proc/index.js';
import { buildHelper, type HelperBuild, startHelper } from './support.js';

let build: HelperBuild;

beforeAll(() => {
  requireRoot();
  build = buildHelper();
});

afterAll(() => build?.cleanup());

describe('maps and smaps of a live process', () => {
  it('show the VMAs the helper created', async () => {
    const h = await startHelper(build, ['files', build.dir]);
    try {
      const [file, growsdown, dontdump, shared] = h.lines[0]!.split(' ').map((a) => BigInt(a));
      const maps = readMaps(h.pid);
      const at = (start: bigint | undefined) => maps.find((m) => m.start === start)!;
      expect(at(file)).toMatchObject({
        end: file! + 4n * 4096n,
        read: true,
        write: true,
        shared: true,
        deleted: true,
      });
      expect(mapsFilePath(at(file))).toBe(`${build.dir}/with space.txt`);
      expect(at(shared)).toMatchObject({
        kind: 'file',
        pathname: '/dev/zero (deleted)',
        shared: true,
      });
      expect(maps.filter((m) => m.kind === 'stack')).toHaveLength(1);
      expect(maps.filter((m) => m.kind === 'vdso')).toHaveLength(1);
      expect(maps.some((m) => m.kind === 'file' && m.pathname === build.binary)).toBe(true);

      const smaps = readSmaps(h.pid);
      expect(smaps.map((s) => s.start)).toEqual(maps.map((m) => m.start));
      const sat = (start: bigint | undefined) => smaps.find((m) => m.start === start)!;
      expect(sat(growsdown).vmFlags.has('gd')).toBe(true);
      expect(sat(dontdump).vmFlags.has('dd')).toBe(true);
      expect(sat(shared).vmFlags.has('sh')).toBe(true);
      expect(sat(shared).sizes.rss).toBe(4096); // one page written
      expect(sat(file).sizes.size).toBe(4 * 4096);

      const rollup = readSmapsRollup(h.pid);
      expect(rollup.start).toBe(maps[0]!.start);
      expect(rollup.sizes.rss).toBeGreaterThan(0);
    } finally {
      await h.kill();
    }
  });
});

describe('pagemap', () => {
  it('finds exactly the pages the helper touched', async () => {
    const h = await startHelper(build, ['touch', '1024', '0-9,20,100-199,1023']);
    try {
      const base = BigInt(h.lines[0]!);
      const end = base + 1024n * 4096n;
      expect(readPageRuns(h.pid, base, end)).toEqual([
        { start: base, pages: 10 },
        { start: base + 20n * 4096n, pages: 1 },
        { start: base + 100n * 4096n, pages: 100 },
        { start: base + 1023n * 4096n, pages: 1 },
      ]);
      const entries = readPagemap(h.pid, base, end);
      expect(entries).toHaveLength(1024);
      const touched = decodePagemapEntry(entries[0]!);
      expect(touched).toMatchObject({
        present: true,
        exclusive: true,
        filePage: false,
        swapped: false,
      });
      expect(touched.pfn).toBeGreaterThan(0n); // root sees page frame numbers
      expect(decodePagemapEntry(entries[10]!).present).toBe(false);
    } finally {
      await h.kill();
    }
  });

  it('joins a run that crosses a read chunk (every 4 GiB of address space)', async () => {
    const h = await startHelper(build, ['touch', String(5 * 262144), '1048570-1048580']);
    try {
      const base = BigInt(h.lines[0]!);
      expect(readPageRuns(h.pid, base, base + 5n * (1n << 30n))).toEqual([
        { start: base + 1048570n * 4096n, pages: 11 },
      ]);
    } finally {
      await h.kill();
    }
  });

  it('scans a huge sparse region (1 TiB) through PAGEMAP_SCAN, with the runs pagemap gives', async () => {
    const pages = 1 << 28; // 1 TiB
    const h = await startHelper(build, [
      'touch',
      String(pages),
      '0-2,262144-262145,8388608,268435455',
    ]);
    try {
      const base = BigInt(h.lines[0]!);
      const page = (n: number) => base + BigInt(n) * 4096n;
      const t0 = performance.now();
      const runs = readPageRuns(h.pid, base, page(pages));
      const ms = performance.now() - t0;
      expect(runs).toEqual([
        { start: base, pages: 3 },
        { start: page(262144), pages: 2 },
        { start: page(8388608), pages: 1 },
        { start: page(268435455), pages: 1 },
      ]);
      // The same as reading every entry, over the first 8 GiB.
      const eight = page(2 * 1048576);
      expect(readPageRuns(h.pid, base, eight)).toEqual(
        pageRuns(readPagemap(h.pid, base, eight), base),
      );
      console.log(`readPageRuns over 1 TiB with 7 pages touched: ${ms.toFixed(1)} ms`);
    } finally {
      await h.kill();
    }
  });

  it('reads the [vsyscall] page above the user address space as absent', () => {
    const vsyscall = readMaps(process.pid).find((m) => m.kind === 'vsyscall')!;
    expect(readPageRuns(process.pid, vsyscall.start, vsyscall.end)).toEqual([]);
  });

  it('rejects unaligned ranges', () => {
    expect(() => readPageRuns(process.pid, 4097n, 8192n)).toThrow(/page-aligned/);
  });

  it('scans a touched 1 GiB region quickly', async () => {
    const h = await startHelper(build, ['touch', '262144', 'all']);
    try {
      const base = BigInt(h.lines[0]!);
      const end = base + (1n << 30n);
      readPageRuns(h.pid, base, end); // warm up
      const times: number[] = [];
      for (let i = 0; i < 5; i++) {
        const t0 = performance.now();
        const runs = readPageRuns(h.pid, base, end);
        times.push(performance.now() - t0);
        expect(runs).toEqual([{ start: base, pages: 262144 }]);
      }
      const best = Math.min(...times);
      console.log(
        `readPageRuns over 1 GiB touched: best ${best.toFixed(1)} ms of ${times.map((t) => t.toFixed(1)).join(', ')}`,
      );
      expect(best).toBeLessThan(1000);
    } finally {
      await h.kill();
    }
  });
});
