import { readFileSync } from 'node:fs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { requireRoot } from '../../../../../test/support/prereq.js';
import { ProcTaskMemory } from '../../../src/engine/syscalls.js';
import { isCkptError } from '../../../src/errors.js';
import {
  freezeTask,
  ProcMem,
  readMemory,
  readRanges,
  sendSignal,
  spawnProcess,
  unfreezeTask,
  writeMemory,
  writeRanges,
  writeScattered,
} from '../../../src/kernel/index.js';
import { compileC, freshPath, killStarted, track, waitUntil } from './support.js';

// Publishes the addresses of a writable buffer and a read-only page; on
// SIGUSR1 writes the sum of the buffer and the first word of the read-only
// page, as the target itself sees them.
const TARGET = `
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#define SIZE ((size_t)SIZE_MB << 20)
static unsigned char *buf, *ro;
static const char *out;
static volatile sig_atomic_t asked;
static void on_usr1(int s) { (void)s; asked = 1; }
int main(int argc, char **argv) {
  out = argv[1];
  buf = mmap(0, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  memset(buf, 1, SIZE);
  ro = mmap(0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  // SIGUSR1 stays blocked except inside sigsuspend: none is lost between
  // checking \`asked\` and waiting.
  sigset_t usr1, none;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigemptyset(&none);
  sigprocmask(SIG_BLOCK, &usr1, 0);
  signal(SIGUSR1, on_usr1);
  FILE *f = fopen(out, "w");
  fprintf(f, "%p %p\\n", buf, ro);
  fclose(f);
  for (;;) {
    while (!asked) sigsuspend(&none);
    asked = 0;
    unsigned long long sum = 0;
    for (size_t i = 0; i < SIZE; i++) sum += buf[i];
    f = fopen(out, "w");
    fprintf(f, "sum %llu %llu\\n", sum, *(unsigned long long *)ro);
    fclose(f);
  }
}
`;

function startTarget(
  sizeMb: number,
): Promise<{ pid: number; buf: bigint; ro: bigint; out: string }> {
  const out = freshPath('mem');
  const bin = compileC(`memtarget${sizeMb}`, TARGET, [`-DSIZE_MB=${sizeMb}`]);
  const pid = track(spawnProcess([bin, out]));
  const parse = () => {
    try {
      const [a, b] = readFileSync(out, 'utf8').trim().split(' ');
      return a && b && !a.startsWith('sum') ? { buf: BigInt(a), ro: BigInt(b) } : undefined;
    } catch {
      return undefined;
    }
  };
  // Touching its memory takes a while on a loaded VM.
  return waitUntil(() => parse() !== undefined, 30_000).then((ready) => {
    if (!ready) throw new Error(`memory target ${pid} (${sizeMb} MiB) did not start within 30 s`);
    return { pid, out, ...parse()! };
  });
}

async function askSum(pid: number, out: string): Promise<[bigint, bigint]> {
  sendSignal(pid, 10);
  // The line may be read half-written: wait for all of it.
  const seen: { line: RegExpExecArray | null } = { line: null };
  await waitUntil(() => {
    // Keep the first whole line seen: the file may be rewritten meanwhile.
    seen.line ??= /^sum (\d+) (\d+)\n/.exec(readFileSync(out, 'utf8'));
    return seen.line !== null;
  }, 30_000);
  if (seen.line === null) {
    throw new Error(`pid ${pid} did not answer SIGUSR1 with its sum within 30 s`);
  }
  const [, sum, ro] = seen.line;
  return [BigInt(sum!), BigInt(ro!)];
}

describe('memory', () => {
  beforeAll(() => requireRoot());
  afterEach(() => killStarted());

  it('writes a pattern the target sees, and reads it back, through many iovecs', async () => {
    const t = await startTarget(1);
    const frozen = freezeTask(t.pid);
    expect(readMemory(t.pid, t.buf, 8).equals(Buffer.alloc(8, 1))).toBe(true);
    // 256 scattered 16-byte ranges, one per 4 KiB page: bytes 0..15 of each.
    const ranges = Array.from({ length: 256 }, (_, i) => ({
      addr: t.buf + BigInt(i * 4096),
      length: 16,
    }));
    const pattern = Buffer.alloc(256 * 16);
    for (let i = 0; i < pattern.length; i++) pattern[i] = i % 16;
    writeRanges(t.pid, ranges, pattern);
    expect(readRanges(t.pid, ranges).equals(pattern)).toBe(true);
    unfreezeTask(frozen);
    // Each range went from 16 ones (16) to 0..15 (120): +104 per range.
    const [sum] = await askSum(t.pid, t.out);
    expect(sum).toBe(BigInt((1 << 20) + 256 * 104));
  });

  it('writes a read-only page through /proc/PID/mem but not process_vm_writev', async () => {
    const t = await startTarget(1);
    const frozen = freezeTask(t.pid);
    const word = Buffer.alloc(8);
    word.writeBigUInt64LE(0x1122334455667788n);
    try {
      writeMemory(t.pid, t.ro, word);
      expect.unreachable();
    } catch (e) {
      expect(isCkptError(e)).toBe(true);
      expect((e as Error).message).toContain(`pid ${t.pid}`);
    }
    const mem = new ProcMem(t.pid);
    mem.write(t.ro, word);
    expect(mem.read(t.ro, 8).equals(word)).toBe(true);
    mem.close();
    unfreezeTask(frozen);
    const [, ro] = await askSum(t.pid, t.out);
    expect(ro).toBe(0x1122334455667788n);
  });

  it('writes scattered buffers in one call, stopping at a read-only page; writeEach goes on past it', async () => {
    const t = await startTarget(1);
    const frozen = freezeTask(t.pid);
    const word = (v: bigint) => {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(v);
      return b;
    };
    // Two writable pages' first words, then the read-only page, then a third.
    const writes = [
      { addr: t.buf, data: word(5n) },
      { addr: t.buf + 4096n, data: word(6n) },
      { addr: t.ro, data: word(0xabcdefn) },
      { addr: t.buf + 8192n, data: word(7n) },
    ];
    expect(writeScattered(t.pid, writes)).toBe(2);
    expect(readMemory(t.pid, t.buf + 8192n, 8).equals(Buffer.alloc(8, 1))).toBe(true);
    const mem = new ProcTaskMemory(t.pid);
    mem.writeEach(writes);
    mem.close();
    for (const w of writes) expect(readMemory(t.pid, w.addr, 8).equals(w.data)).toBe(true);
    unfreezeTask(frozen);
    // Three words went from eight ones (8) to 5, 6 and 7: -6 in all.
    const [sum, ro] = await askSum(t.pid, t.out);
    expect(sum).toBe(BigInt(1 << 20) - 6n);
    expect(ro).toBe(0xabcdefn);
  });

  it('fails with EFAULT on an unmapped address, naming the pid and address', async () => {
    const t = await startTarget(1);
    for (const read of [
      () => readMemory(t.pid, 0x1000n, 16),
      () => new ProcMem(t.pid, false).read(0x1000n, 16),
    ]) {
      try {
        read();
        expect.unreachable();
      } catch (e) {
        expect(isCkptError(e, 'EFAULT')).toBe(true);
        expect((e as Error).message).toMatch(new RegExp(`pid ${t.pid}.*0x1000`));
      }
    }
  });

  it('moves 256 MiB intact through every path (speed is measured by pnpm bench)', async () => {
    const size = 256 << 20;
    const t = await startTarget(256);
    const frozen = freezeTask(t.pid);
    const buf = Buffer.alloc(size, 7);
    const back = Buffer.alloc(size);
    writeMemory(t.pid, t.buf, buf);
    readRanges(t.pid, [{ addr: t.buf, length: size }], back);
    expect(back.equals(buf)).toBe(true);
    back.fill(0);
    const pages = Array.from({ length: size >> 12 }, (_, i) => ({
      addr: t.buf + BigInt(i << 12),
      length: 4096,
    }));
    readRanges(t.pid, pages, back);
    expect(back.equals(buf)).toBe(true);
    const mem = new ProcMem(t.pid);
    mem.write(t.buf, buf);
    back.fill(0);
    mem.read(t.buf, back);
    mem.close();
    expect(back.equals(buf)).toBe(true);
    unfreezeTask(frozen);
    const [sum] = await askSum(t.pid, t.out);
    expect(sum).toBe(BigInt(size) * 7n);
  });
});
