import { describe, expect, it } from 'vitest';
import { mapsFilePath, parseMaps, parseMapsLine } from '../../../src/proc/index.js';
import { sample } from './fixtures.js';

describe('parseMaps', () => {
  const maps = parseMaps(sample('maps-tricky.txt'));
  const at = (start: bigint) => maps.find((m) => m.start === start)!;

  it('parses every line of a real process', () => {
    expect(maps).toHaveLength(28);
    const exe = maps[0]!;
    expect(exe).toMatchObject({
      start: 0x559b3660d000n,
      end: 0x559b3660e000n,
      read: true,
      write: false,
      exec: false,
      shared: false,
      offset: 0n,
      devMajor: 0xfe,
      devMinor: 0,
      inode: 2146643,
      pathname: '/tmp/pcap/t',
      kind: 'file',
      deleted: false,
    });
    expect(maps[1]).toMatchObject({ exec: true, offset: 0x1000n });
  });

  it('classifies the special areas', () => {
    const kinds = new Map(maps.filter((m) => m.kind !== 'file').map((m) => [m.pathname, m.kind]));
    expect(kinds.get('[heap]')).toBe('heap');
    expect(kinds.get('[stack]')).toBe('stack');
    expect(kinds.get('[vdso]')).toBe('vdso');
    expect(kinds.get('[vvar]')).toBe('vvar');
    expect(kinds.get('[vvar_vclock]')).toBe('vvar_vclock');
    expect(kinds.get('[vsyscall]')).toBe('vsyscall');
    expect(kinds.get('')).toBe('anon');
    const vsyscall = maps[maps.length - 1]!;
    expect(vsyscall.start).toBe(0xffffffffff600000n);
    expect(vsyscall.exec && !vsyscall.read).toBe(true);
  });

  it('keeps spaces in pathnames and flags deleted files', () => {
    const f = at(0x7fe7af52d000n);
    expect(f.pathname).toBe('/tmp/pcap/with space.txt (deleted)');
    expect(f.deleted).toBe(true);
    expect(f.shared).toBe(true);
    expect(mapsFilePath(f)).toBe('/tmp/pcap/with space.txt');
    const shmem = at(0x7fe7af22d000n);
    expect(shmem).toMatchObject({
      pathname: '/dev/zero (deleted)',
      devMajor: 0,
      devMinor: 1,
      inode: 24,
    });
    expect(mapsFilePath(shmem)).toBe('/dev/zero');
  });

  it('parses anonymous names (not in this kernel: CONFIG_ANON_VMA_NAME is off)', () => {
    // Format from fs/proc/task_mmu.c; the name may contain spaces and brackets.
    const e = parseMapsLine(
      '7f0000000000-7f0000010000 rw-p 00000000 00:00 0                          [anon:my [odd] name]',
    )!;
    expect(e.kind).toBe('anon');
    expect(e.anonName).toBe('my [odd] name');
    const shm = parseMapsLine('7f0000000000-7f0000010000 rw-s 00000000 00:01 7  [anon_shmem:buf]')!;
    expect([shm.kind, shm.anonName]).toEqual(['anon', 'buf']);
  });

  it('keeps trailing spaces of a file name and handles 64-bit offsets', () => {
    const e = parseMapsLine('7f0000000000-7f0000001000 r--s fffffffffffff000 08:01 12 /a b /c ')!;
    expect(e.pathname).toBe('/a b /c ');
    expect(e.offset).toBe(0xfffffffffffff000n);
    const other = parseMapsLine('7f0000000000-7f0000001000 r-xp 00000000 00:00 0  [uprobes]')!;
    expect(other.kind).toBe('other');
  });

  it('rejects a line that is not a VMA, naming the file', () => {
    expect(() => parseMaps('hello\n', '/proc/5/maps')).toThrow(
      /\/proc\/5\/maps: not a VMA line: 'hello'/,
    );
    expect(parseMaps('')).toEqual([]);
  });
});
