import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
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

  it('finds one run across 4 GiB of address space (a pread chunk without PAGEMAP_SCAN)', async () => {
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

  it('gives through PAGEMAP_SCAN the runs pagemap gives: copied-on-write file pages, zero pages', async () => {
    // 40 MiB: above the size from which regions are scanned; every other
    // page of the anonymous region gives more runs than one call returns.
    const pages = 10240;
    const path = join(build.dir, 'cow-40m');
    writeFileSync(path, Buffer.alloc(pages * 4096, 5));
    const h = await startHelper(build, ['cow', path, '0-2,100,2047-2050,10000-10239']);
    try {
      const [file, anon] = h.lines[0]!.split(' ').map((a) => BigInt(a)) as [bigint, bigint];
      const end = (base: bigint) => base + BigInt(pages * 4096);
      const page = (base: bigint, n: number) => base + BigInt(n) * 4096n;
      const written = [
        { start: file, pages: 3 },
        { start: page(file, 100), pages: 1 },
        { start: page(file, 2047), pages: 4 },
        { start: page(file, 10000), pages: 240 },
      ];
      // Without the file's own page-cache pages: only the copies.
      const cowOnly = { excludeFilePages: true };
      expect(readPageRuns(h.pid, file, end(file), cowOnly)).toEqual(written);
      expect(written).toEqual(pageRuns(readPagemap(h.pid, file, end(file)), file, cowOnly));
      // All of it is present: file pages and copies.
      expect(readPageRuns(h.pid, file, end(file))).toEqual([{ start: file, pages }]);
      // Every other page only read (the zero page), some written.
      const anonRuns = readPageRuns(h.pid, anon, end(anon));
      expect(anonRuns).toEqual(pageRuns(readPagemap(h.pid, anon, end(anon)), anon));
      expect(anonRuns).toContainEqual({ start: page(anon, 2046), pages: 5 });
      expect(anonRuns.length).toBeGreaterThan(4096);
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
