import { readFileSync } from 'node:fs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { requireRoot } from '../../../../../test/support/prereq.js';
import {
  encodePrctlMmMap,
  findSyscallInsn,
  freezeTask,
  getRegset,
  injectSyscall,
  NT,
  PR,
  ProcMem,
  readMemory,
  type SyscallConvention,
  SyscallInjector,
  unfreezeTask,
  writeMemory,
} from '../../../src/kernel/index.js';
import { readMaps, readStat } from '../../../src/proc/index.js';
import { killStarted, startSleeper, stateAfterRelease } from './support.js';

// A minimal x86-64 convention, so core's injector is tested without the
// arch package (which has the real one, tested in its own package).
const R = { rax: 80, orig_rax: 120, rip: 128, eflags: 144 };
const ARGS = [112, 104, 96, 56, 72, 64]; // rdi rsi rdx r10 r8 r9
const x86: SyscallConvention = {
  arch: 'x86_64',
  syscallInsn: Buffer.from([0x0f, 0x05]),
  regsSize: 216,
  nr: { mmap: 9, munmap: 11 },
  getIp: (r) => r.readBigUInt64LE(R.rip),
  setIp: (r, ip) => r.writeBigUInt64LE(ip, R.rip),
  setSyscall(r, nr, args) {
    r.writeBigUInt64LE(BigInt(nr), R.rax);
    r.writeBigInt64LE(-1n, R.orig_rax);
    r.writeBigUInt64LE(r.readBigUInt64LE(R.eflags) & ~0x500n, R.eflags);
    ARGS.forEach((off, i) => {
      r.writeBigUInt64LE(args[i] ?? 0n, off);
    });
  },
  getReturn: (r) => r.readBigInt64LE(R.rax),
};
const NR_GETPID = 39;
const NR_PRCTL = 157;
const NR_NANOSLEEP = 35;

describe('syscall injection', () => {
  beforeAll(() => requireRoot());
  afterEach(() => killStarted());

  it('runs getpid() in the target and restores its registers', async () => {
    const pid = await startSleeper();
    const frozen = freezeTask(pid);
    const before = getRegset(pid, NT.PRSTATUS);
    expect(injectSyscall(pid, x86, NR_GETPID)).toBe(BigInt(pid));
    expect(getRegset(pid, NT.PRSTATUS).equals(before)).toBe(true);
    expect(await stateAfterRelease(frozen)).toBe('S');
  });

  it('finds a syscall instruction in the vDSO', async () => {
    const pid = await startSleeper();
    const frozen = freezeTask(pid);
    const at = findSyscallInsn(pid, x86);
    expect(at).toBeDefined();
    expect(readMemory(pid, at!, 2).equals(x86.syscallInsn)).toBe(true);
    const vdso = readMaps(pid).find((m) => m.kind === 'vdso');
    expect(vdso && at! >= vdso.start && at! < vdso.end).toBe(true);
    unfreezeTask(frozen);
  });

  it('plants a syscall instruction at the IP when given none, and removes it', async () => {
    const pid = await startSleeper();
    const frozen = freezeTask(pid);
    const ip = x86.getIp(getRegset(pid, NT.PRSTATUS));
    // Make the injector plant: point it at the current IP with other bytes there.
    const original = readMemory(pid, ip - 2n, 4);
    const mem = new ProcMem(pid);
    const inj = new SyscallInjector(pid, x86, { syscallAddr: ip - 2n }); // the sleep's own syscall
    expect(inj.call(NR_GETPID)).toBe(BigInt(pid));
    inj.close();
    expect(mem.read(ip - 2n, 4).equals(original)).toBe(true);
    mem.close();
    unfreezeTask(frozen);
  });

  it('injects mmap: the mapping appears in /proc/PID/maps, and scratch memory passes structs', async () => {
    const pid = await startSleeper();
    const frozen = freezeTask(pid);
    const inj = new SyscallInjector(pid, x86);
    const addr = inj.callChecked(9, [0, 8192, 3, 0x22, -1, 0], 'mmap');
    const line = readFileSync(`/proc/${pid}/maps`, 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`${addr.toString(16)}-`));
    expect(line).toMatch(/rw-p/);
    writeMemory(pid, addr, Buffer.from('hello'));
    expect(readMemory(pid, addr, 5).toString()).toBe('hello');

    // prctl(PR_SET_NAME, scratch) with the name passed in scratch memory.
    const scratch = inj.scratch(64);
    writeMemory(pid, scratch, Buffer.from('ckpt-renamed\0'));
    expect(inj.call(NR_PRCTL, [PR.SET_NAME, scratch])).toBe(0n);
    expect(readStat(pid).comm).toBe('ckpt-renamed');

    // A struct prctl_mm_map with garbage must be refused (EINVAL), not crash the target.
    const mmScratch = inj.scratch(256);
    writeMemory(
      pid,
      mmScratch,
      encodePrctlMmMap({
        startCode: 1n,
        endCode: 0n,
        startData: 0n,
        endData: 0n,
        startBrk: 0n,
        brk: 0n,
        startStack: 0n,
        argStart: 0n,
        argEnd: 0n,
        envStart: 0n,
        envEnd: 0n,
        auxv: 0n,
        auxvSize: 0,
        exeFd: -1,
      }),
    );
    expect(inj.call(NR_PRCTL, [PR.SET_MM, 14, mmScratch, 104, 0])).toBe(-22n);

    // Latency of one injected call.
    const n = 2000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) inj.call(NR_GETPID);
    const us = ((performance.now() - t0) * 1000) / n;
    console.log(`injected getpid: ${us.toFixed(1)} µs per call`);
    expect(us).toBeLessThan(1000);

    expect(inj.call(11, [addr, 8192])).toBe(0n);
    inj.close();
    expect(readFileSync(`/proc/${pid}/maps`, 'utf8')).not.toContain(`${addr.toString(16)}-`);
    expect(readFileSync(`/proc/${pid}/maps`, 'utf8')).not.toContain(`${scratch.toString(16)}-`);
    expect(await stateAfterRelease(frozen)).toBe('S');
  });

  it('reports a failing injected syscall as its negative errno', async () => {
    const pid = await startSleeper();
    const frozen = freezeTask(pid);
    // nanosleep with a bad pointer: -EFAULT.
    expect(injectSyscall(pid, x86, NR_NANOSLEEP, [8, 0])).toBe(-14n);
    unfreezeTask(frozen);
  });
});
