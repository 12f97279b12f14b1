import { closeSync, openSync, readFileSync } from 'node:fs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { requireRoot } from '../../../../../test/support/prereq.js';
import { isCkptError } from '../../../src/errors.js';
import {
  DescriptionIndex,
  decodePrctlMmMap,
  encodePrctlMmMap,
  grabFd,
  KCMP,
  kcmp,
  PR,
  PRCTL_MM_MAP_SIZE,
  prctl,
  sameFile,
  spawnProcess,
} from '../../../src/kernel/index.js';
import { compileC, freshPath, killStarted, track, waitUntil } from './support.js';

// Opens a file as fd 3 and /dev/null as fd 4, forks; both wait. The parent
// writes the child's pid to argv[1].
const FORKED_PAIR = `
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
  int a = open("/etc/passwd", O_RDONLY), b = open("/dev/null", O_RDONLY);
  if (a != 3 || b != 4) return 1;
  pid_t child = fork();
  if (child == 0) for (;;) pause();
  FILE *f = fopen(argv[1], "w");
  fprintf(f, "%d\\n", child);
  fclose(f);
  for (;;) pause();
}
`;

describe('kcmp, pidfd, prctl', () => {
  beforeAll(() => requireRoot());
  afterEach(() => killStarted());

  async function forkedPair(): Promise<[number, number]> {
    const out = freshPath('kcmp');
    const parent = track(spawnProcess([compileC('forkedpair', FORKED_PAIR), out]));
    await waitUntil(() => {
      try {
        return Number(readFileSync(out, 'utf8')) > 0;
      } catch {
        return false;
      }
    });
    return [parent, track(Number(readFileSync(out, 'utf8')))];
  }

  it('says the fds of a forked pair are the same open file, and other objects differ', async () => {
    const [parent, child] = await forkedPair();
    expect(sameFile(parent, 3, child, 3)).toBe(true);
    expect(kcmp(parent, child, KCMP.FILE, 3, 3)).toBe(0);
    expect(sameFile(parent, 3, child, 4)).toBe(false);
    // Different address spaces and fd tables, ordered consistently.
    const vm = kcmp(parent, child, KCMP.VM);
    expect(vm).not.toBe(0);
    expect(kcmp(child, parent, KCMP.VM)).toBe(-vm);
    expect(kcmp(parent, child, KCMP.FILES)).not.toBe(0);
    expect(kcmp(parent, parent, KCMP.SIGHAND)).toBe(0);
  });

  it('fails with a message naming the fd when it is not open', async () => {
    const [parent, child] = await forkedPair();
    try {
      kcmp(parent, child, KCMP.FILE, 3, 99);
      expect.unreachable();
    } catch (e) {
      expect(isCkptError(e, 'ESYS')).toBe(true);
      expect((e as Error).message).toContain('fd 99');
      expect((e as Error).message).toContain('EBADF');
    }
  });

  it('copies a file descriptor of another process with pidfd_getfd', async () => {
    const [parent] = await forkedPair();
    const fd = grabFd(parent, 3);
    try {
      expect(sameFile(process.pid, fd, parent, 3)).toBe(true);
    } finally {
      closeSync(fd);
    }
  });

  it('encodes struct prctl_mm_map and calls prctl on itself', () => {
    const m = {
      startCode: 0x400000n,
      endCode: 0x401000n,
      startData: 0x600000n,
      endData: 0x601000n,
      startBrk: 0x602000n,
      brk: 0x603000n,
      startStack: 0x7ffd0000n,
      argStart: 0x7ffd1000n,
      argEnd: 0x7ffd1010n,
      envStart: 0x7ffd1010n,
      envEnd: 0x7ffd1100n,
      auxv: 0x7ffd2000n,
      auxvSize: 352,
      exeFd: -1,
    };
    const buf = encodePrctlMmMap(m);
    expect(buf.length).toBe(PRCTL_MM_MAP_SIZE);
    expect(buf.readBigUInt64LE(88)).toBe(0x7ffd2000n); // auxv
    expect(buf.readUInt32LE(96)).toBe(352);
    expect(buf.readUInt32LE(100)).toBe(0xffffffff);
    expect(decodePrctlMmMap(buf)).toEqual(m);
    // PR_SET_MM_MAP_SIZE would need a pointer; PR_GET_DUMPABLE is a harmless call.
    expect(prctl(PR.GET_DUMPABLE)).toBe(1);
  });
});

describe('DescriptionIndex', () => {
  it('keeps one holder per open file description, found by kcmp order', () => {
    // 200 separate opens of one file, and a dup of every tenth.
    const opens = Array.from({ length: 200 }, () => openSync('/etc/passwd', 'r'));
    const dups = opens.filter((_, i) => i % 10 === 0).map((fd) => ({ fd, dup: openDup(fd) }));
    try {
      const index = new DescriptionIndex<{ pid: number; fd: number }>();
      for (const fd of opens) expect(index.add({ pid: process.pid, fd }).fd).toBe(fd);
      expect(index.all).toHaveLength(200);
      for (const { fd, dup } of dups) {
        expect(index.add({ pid: process.pid, fd: dup }).fd).toBe(fd);
        expect(index.find(process.pid, dup)?.fd).toBe(fd);
      }
      expect(index.all).toHaveLength(200);
      const other = openSync('/etc/passwd', 'r');
      expect(index.find(process.pid, other)).toBeUndefined();
      closeSync(other);
    } finally {
      for (const fd of opens) closeSync(fd);
      for (const { dup } of dups) closeSync(dup);
    }
  });
});

/** A new fd on the same open file description as `fd` (dup through /proc would reopen). */
function openDup(fd: number): number {
  return grabFd(process.pid, fd);
}
