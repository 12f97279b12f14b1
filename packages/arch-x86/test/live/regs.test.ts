import { execFileSync } from 'node:child_process';
import {
  getRegset,
  injectSyscall,
  NT,
  reap,
  setRegset,
  spawnProcess,
  unfreezeTask,
} from '@ckpt/core';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { requireRoot } from '../../../../test/support/prereq.js';
import {
  assertXstateCompatible,
  decodeRegs,
  decodeXstateInfo,
  encodeRegs,
  getYmm,
  isDefaultDebugRegs,
  NR,
  readDebugRegs,
  readXstate,
  writeDebugRegs,
  x86_64Syscalls,
  xfeatureNames,
} from '../../src/index.js';
import { compileC, freezeWhen, killStarted, track } from './support.js';

// Puts known values in r12-r15, ymm7 and zmm16, then spins until r14 is
// 0x42 (set by the test through ptrace) and exits with r13's low byte.
const SPINNER = `
#include <stdint.h>
static const uint64_t pat[8] __attribute__((aligned(64))) = {
  0x0706050403020100, 0x0f0e0d0c0b0a0908, 0x1716151413121110, 0x1f1e1d1c1b1a1918,
  0x2726252423222120, 0x2f2e2d2c2b2a2928, 0x3736353433323130, 0x3f3e3d3c3b3a3938 };
int main(void) {
  __asm__ volatile(
    // Vector registers first: seeing r12 and r15 set then means all is set.
    "vmovdqu (%0), %%ymm7\\n"
    "vmovdqu64 (%0), %%zmm16\\n"
    "movabs $0x1212121212121212, %%r12\\n"
    "movabs $0x1313131313131313, %%r13\\n"
    "movabs $0x1414141414141414, %%r14\\n"
    "movabs $0x1515151515151515, %%r15\\n"
    "1: pause\\n"
    "cmp $0x42, %%r14\\n"
    "jne 1b\\n"
    "mov %%r13, %%rdi\\n"
    "mov $60, %%eax\\n"
    "syscall\\n"
    :: "r"(pat) : "r12", "r13", "r14", "r15", "xmm7", "memory");
  return 0;
}
`;

// Prints the standard-format offset of each XSAVE component (CPUID 0xD).
const CPUID_OFFSETS = `
#include <cpuid.h>
#include <stdio.h>
int main(void) {
  for (unsigned i = 2; i < 20; i++) {
    unsigned a, b, c, d;
    __cpuid_count(0xd, i, a, b, c, d);
    printf("%u %u\\n", i, b);
  }
}
`;

function xstateOffset(component: number): number {
  const out = execFileSync(compileC('cpuid-offsets', CPUID_OFFSETS), { encoding: 'utf8' });
  const line = out.split('\n').find((l) => l.startsWith(`${component} `));
  return Number(line?.split(' ')[1]);
}

const PATTERN = Buffer.from(Array.from({ length: 64 }, (_, i) => i));
const spinning = (r: { r12: bigint; r15: bigint }) =>
  r.r12 === 0x1212121212121212n && r.r15 === 0x1515151515151515n;

describe('x86-64 registers of a live task', () => {
  let bin: string;
  beforeAll(() => {
    requireRoot();
    bin = compileC('spinner', SPINNER);
  });
  afterEach(() => killStarted());

  it('reads the general registers and the AVX/AVX-512 state the program set', async () => {
    const pid = track(spawnProcess([bin]));
    const { frozen, regs } = await freezeWhen(pid, spinning);
    expect(regs.r13).toBe(0x1313131313131313n);
    expect(regs.r14).toBe(0x1414141414141414n);
    expect(regs.orig_rax).toBe(0xffff_ffff_ffff_ffffn); // not in a syscall
    expect(regs.cs).toBe(0x33n); // 64-bit user code segment

    const xstate = readXstate(pid);
    const info = decodeXstateInfo(xstate);
    expect(xfeatureNames(info.xfeatures)).toEqual(expect.arrayContaining(['x87', 'SSE', 'AVX']));
    expect(xstate.length).toBe(info.xstateSize);
    expect(getYmm(xstate, 7).equals(PATTERN.subarray(0, 32))).toBe(true);
    expect(() => assertXstateCompatible(info.xfeatures, info.xfeatures)).not.toThrow();
    if (info.xfeatures & 0x80n) {
      // zmm16 is the first register of Hi16_ZMM, whose offset is the CPU's
      // (CPUID leaf 0xD): 1664 on Intel, 1408 on AMD without MPX.
      const off = xstateOffset(7);
      expect(xstate.subarray(off, off + 64).equals(PATTERN)).toBe(true);
      expect(info.xstateBv & 0x80n).toBe(0x80n);
    }
    unfreezeTask(frozen);
  });

  it('changes a register and the program observes it', async () => {
    const pid = track(spawnProcess([bin]));
    const { frozen } = await freezeWhen(pid, spinning);
    const buf = getRegset(pid, NT.PRSTATUS);
    const regs = decodeRegs(buf);
    setRegset(pid, NT.PRSTATUS, encodeRegs({ ...regs, r14: 0x42n, r13: 7n }));
    unfreezeTask(frozen);
    expect(reap(pid)).toEqual({ kind: 'exited', pid, code: 7 });
  });

  // The trap itself is not tested: on this Firecracker VM hardware
  // breakpoints never fire (gdb's hbreak and watch hang the same way).
  it('writes and reads back the debug registers', async () => {
    const pid = track(spawnProcess([bin]));
    const { frozen, regs } = await freezeWhen(pid, spinning);
    const before = readDebugRegs(pid);
    // What restart relies on to skip writing them into its new tasks.
    expect(isDefaultDebugRegs(before)).toBe(true);
    // An execute breakpoint on the spin loop (L0, 1 byte) and a 4-byte
    // write watchpoint (L1, RW1=01, LEN1=11) on the stack.
    const dr7 = 0x1n | 0x4n | (0x1n << 20n) | (0x3n << 22n);
    writeDebugRegs(pid, { ...before, dr0: regs.rip, dr1: regs.rsp & ~3n, dr7 });
    expect(readDebugRegs(pid)).toMatchObject({ dr0: regs.rip, dr1: regs.rsp & ~3n, dr7 });
    // `fresh` skips only default registers: these are not, and get written.
    writeDebugRegs(pid, { ...before, dr0: regs.rip, dr7: 0x1n }, true);
    expect(readDebugRegs(pid)).toMatchObject({ dr0: regs.rip, dr7: 0x1n });
    writeDebugRegs(pid, before);
    expect(readDebugRegs(pid)).toEqual(before);
    unfreezeTask(frozen);
  });

  it('injects getpid with the x86-64 convention', async () => {
    const pid = track(spawnProcess([bin]));
    const { frozen } = await freezeWhen(pid, spinning);
    const before = getRegset(pid, NT.PRSTATUS);
    expect(injectSyscall(pid, x86_64Syscalls, NR.getpid)).toBe(BigInt(pid));
    expect(getRegset(pid, NT.PRSTATUS).equals(before)).toBe(true);
    unfreezeTask(frozen);
  });
});
