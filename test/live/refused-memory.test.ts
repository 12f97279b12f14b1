/**
 * Memory ckpt cannot restore faithfully is refused at checkpoint, with a
 * message that names it, and the target keeps running: huge pages
 * (MAP_HUGETLB), native AIO rings (io_setup), memfd_secret memory.
 */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ckpt, imagePath } from '../support/ckpt.js';
import { isAlive, layoutRegion } from '../support/fixtures.js';
import { liveFixtures } from '../support/live.js';

const fixtures = liveFixtures();
const NR_HUGEPAGES = '/proc/sys/vm/nr_hugepages';

/** Checkpoint `pid` --kill; it must fail with `message`, before anything is saved. */
function expectRefused(pid: number, message: RegExp): void {
  const r = ckpt(['checkpoint', String(pid), '-o', imagePath(), '--kill']);
  expect(r.code).not.toBe(0);
  expect(r.stderr).toMatch(message);
  // A refused checkpoint leaves the target running.
  expect(isAlive(pid)).toBe(true);
}

describe('huge-page memory (MAP_HUGETLB) is refused, not saved as a file', () => {
  let saved: string | undefined;
  beforeAll(() => {
    saved = fs.readFileSync(NR_HUGEPAGES, 'utf8').trim();
    // Two 2 MiB pages per fixture, with room to spare.
    if (Number(saved) < 8) fs.writeFileSync(NR_HUGEPAGES, '8');
  });
  afterAll(() => {
    if (saved !== undefined) fs.writeFileSync(NR_HUGEPAGES, saved);
  });

  for (const mode of ['private', 'shared']) {
    it(`${mode} MAP_HUGETLB|MAP_ANONYMOUS`, (t) => {
      const free = Number(
        /HugePages_Free:\s+(\d+)/.exec(fs.readFileSync('/proc/meminfo', 'utf8'))![1],
      );
      if (free < 2) {
        // Memory too fragmented for huge pages: a real failure in CI.
        if (process.env.CI === 'true') throw new Error(`only ${free} huge pages could be reserved`);
        t.skip();
      }
      const f = fixtures.start('hugetlb', { args: [mode] });
      const { addr } = layoutRegion(f.layout, 'region');
      expect(fs.readFileSync(`/proc/${f.pid}/status`, 'utf8')).toMatch(/HugetlbPages:\s+4096 kB/);
      expectRefused(
        f.pid,
        new RegExp(
          `pid ${f.pid}: memory region 0x${addr.toString(16)}-0x[0-9a-f]+ is huge-page memory \\(hugetlbfs / MAP_HUGETLB\\).*not supported yet.*huge_pages = off`,
        ),
      );
      f.go();
      expect(f.waitResult(30_000)).toMatch(/^PASS/);
    });
  }
});

describe('native AIO and memfd_secret are refused by name', () => {
  it('a native AIO context (io_setup)', () => {
    const f = fixtures.start('refused_mem', { args: ['aio'] });
    expectRefused(
      f.pid,
      new RegExp(
        `pid ${f.pid}: memory region 0x[0-9a-f]+-0x[0-9a-f]+ is a native AIO context ring \\(io_setup\\): processes with native AIO contexts .*are not supported yet`,
      ),
    );
    f.go();
    expect(f.waitResult(30_000)).toMatch(/^PASS/);
  });

  it('memfd_secret memory', () => {
    const f = fixtures.start('refused_mem', { args: ['secretmem'] });
    const { addr } = layoutRegion(f.layout, 'secretmem');
    expectRefused(
      f.pid,
      new RegExp(
        `pid ${f.pid}: memory region 0x${addr.toString(16)}-0x[0-9a-f]+ is memfd_secret memory: memfd_secret memory is not supported`,
      ),
    );
    f.go();
    expect(f.waitResult(30_000)).toMatch(/^PASS/);
  });
});
