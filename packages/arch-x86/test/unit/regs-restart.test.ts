import { describe, expect, it } from 'vitest';
import {
  assertXstateCompatible,
  decodeRegs,
  decodeXstateInfo,
  ERESTART_RESTARTBLOCK,
  ERESTARTNOHAND,
  ERESTARTSYS,
  encodeRegs,
  NR,
  REG_OFFSET,
  resumeRegs,
  syscallRestartState,
  USER_REGS,
  USER_REGS_SIZE,
  type UserRegs,
  x86_64Syscalls,
  xfeatureNames,
} from '../../src/index.js';

const NONE = 0xffff_ffff_ffff_ffffn;
const neg = (n: number) => BigInt.asUintN(64, BigInt(-n));

function regs(over: Partial<UserRegs> = {}): UserRegs {
  const r = Object.fromEntries(USER_REGS.map((n, i) => [n, BigInt(i + 1) * 0x1000n])) as UserRegs;
  return { ...r, ...over };
}

describe('user_regs_struct', () => {
  it('has 27 registers in kernel order and round-trips', () => {
    expect(USER_REGS_SIZE).toBe(216);
    expect(REG_OFFSET.rax).toBe(80);
    expect(REG_OFFSET.orig_rax).toBe(120);
    expect(REG_OFFSET.rip).toBe(128);
    expect(REG_OFFSET.fs_base).toBe(168);
    const r = regs({ rax: NONE });
    const buf = encodeRegs(r);
    expect(buf.readBigUInt64LE(REG_OFFSET.rdi)).toBe(r.rdi);
    expect(decodeRegs(buf)).toEqual(r);
  });

  it('refuses a short buffer', () => {
    expect(() => decodeRegs(Buffer.alloc(100))).toThrow(/100 bytes, expected 216/);
  });
});

describe('syscall convention', () => {
  it('puts nr and args in rax, rdi rsi rdx r10 r8 r9, neutralises restart and TF/DF', () => {
    const buf = encodeRegs(regs({ eflags: 0x746n, orig_rax: 35n }));
    x86_64Syscalls.setSyscall(buf, NR.mmap, [1n, 2n, 3n, 4n, 5n, 6n]);
    const r = decodeRegs(buf);
    expect([r.rax, r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9]).toEqual([9n, 1n, 2n, 3n, 4n, 5n, 6n]);
    expect(r.orig_rax).toBe(NONE);
    expect(r.eflags).toBe(0x246n);
    r.rax = neg(22);
    expect(x86_64Syscalls.getReturn(encodeRegs(r))).toBe(-22n);
  });
});

describe('syscall restart rules', () => {
  it('leaves a task that is not in a syscall alone', () => {
    const r = regs({ orig_rax: NONE, rax: neg(ERESTARTSYS) });
    expect(syscallRestartState(r).kind).toBe('none');
    expect(resumeRegs(r)).toEqual({ regs: r, action: 'none' });
    // A syscall that completed normally is not restarted either.
    expect(resumeRegs(regs({ orig_rax: 0n, rax: 5n })).action).toBe('none');
  });

  it('re-executes -ERESTARTSYS / -ERESTARTNOHAND syscalls', () => {
    for (const code of [ERESTARTSYS, 513, ERESTARTNOHAND]) {
      const r = regs({ orig_rax: 34n, rax: neg(code), rip: 0x401002n });
      const { regs: out, action } = resumeRegs(r);
      expect(action).toBe('reexecute');
      expect(out.rax).toBe(34n);
      expect(out.rip).toBe(0x401000n);
      expect(out.orig_rax).toBe(NONE);
      expect(out.rdi).toBe(r.rdi);
    }
  });

  it('uses restart_syscall only in the same task', () => {
    const r = regs({ orig_rax: 202n, rax: neg(ERESTART_RESTARTBLOCK), rip: 0x1002n });
    expect(resumeRegs(r, { sameTask: true }).regs).toMatchObject({ rax: 219n, rip: 0x1000n });
    // A futex wait elsewhere returns EINTR, rip unchanged.
    const { regs: out, action } = resumeRegs(r);
    expect(action).toBe('eintr');
    expect(out).toMatchObject({ rax: neg(4), rip: 0x1002n, orig_rax: NONE });
  });

  it('re-executes relative sleeps for the remaining time the kernel wrote into rem', () => {
    const sleep = (over: Partial<UserRegs>) =>
      resumeRegs(regs({ rax: neg(ERESTART_RESTARTBLOCK), rip: 0x2002n, ...over }));
    // nanosleep(req, rem): the request now points at rem.
    for (const rem of [0x7000n, 0x7100n]) {
      const { regs: out, action } = sleep({ orig_rax: 35n, rdi: 0x7000n, rsi: rem });
      expect(action).toBe('reexecute');
      expect(out).toMatchObject({ rax: 35n, rip: 0x2000n, orig_rax: NONE, rdi: rem, rsi: rem });
    }
    // clock_nanosleep(clock, 0, req, rem): req (rdx) points at rem (r10); clock and flags kept.
    const { regs: out, action } = sleep({
      orig_rax: 230n,
      rdi: 1n,
      rsi: 0n,
      rdx: 0x7000n,
      r10: 0x7100n,
    });
    expect(action).toBe('reexecute');
    expect(out).toMatchObject({
      rax: 230n,
      rip: 0x2000n,
      rdi: 1n,
      rsi: 0n,
      rdx: 0x7100n,
      r10: 0x7100n,
    });
    // TIMER_ABSTIME: exact as it is, arguments untouched.
    expect(sleep({ orig_rax: 230n, rsi: 1n, rdx: 0x7000n, r10: 0n }).regs).toMatchObject({
      rdx: 0x7000n,
      r10: 0n,
    });
  });

  it('interrupts a relative sleep without rem with EINTR', () => {
    for (const over of [
      { orig_rax: 35n, rdi: 0x7000n, rsi: 0n },
      { orig_rax: 230n, rsi: 0n, rdx: 0x7000n, r10: 0n },
    ]) {
      const saved = regs({ rax: neg(ERESTART_RESTARTBLOCK), rip: 0x2002n, ...over });
      const r = resumeRegs(saved);
      expect(r.action).toBe('eintr');
      expect(r.regs).toEqual({ ...saved, rax: neg(4), orig_rax: NONE });
    }
  });
});

describe('xstate', () => {
  it('names the features an image needs and this CPU lacks', () => {
    expect(xfeatureNames(0x7n)).toEqual(['x87', 'SSE', 'AVX']);
    expect(() => assertXstateCompatible(0x2e7n, 0x2e7n)).not.toThrow();
    expect(() => assertXstateCompatible(0x2e7n, 0x7n)).toThrow(
      /AVX-512 opmask, AVX-512 ZMM_Hi256, AVX-512 Hi16_ZMM, PKRU/,
    );
  });

  it('decodes the ptrace format (XCR0 at 464) and the signal-frame format', () => {
    const x = Buffer.alloc(1024);
    x.writeBigUInt64LE(0x2e7n, 464);
    x.writeBigUInt64LE(0x3n, 512);
    expect(decodeXstateInfo(x)).toEqual({ xfeatures: 0x2e7n, xstateSize: 1024, xstateBv: 3n });
    x.writeUInt32LE(0x46505853, 464);
    x.writeUInt32LE(1024, 468);
    x.writeBigUInt64LE(0x7n, 472);
    x.writeUInt32LE(1020, 480);
    expect(decodeXstateInfo(x)).toEqual({ xfeatures: 0x7n, xstateSize: 1020, xstateBv: 3n });
  });

  it('refuses a buffer without a feature mask', () => {
    expect(() => decodeXstateInfo(Buffer.alloc(1024))).toThrow(/no valid feature mask/);
  });
});

describe('poll and ppoll after -ERESTART_RESTARTBLOCK', () => {
  const base = decodeRegs(Buffer.alloc(USER_REGS_SIZE));
  const interrupted = (nr: number, rdx: bigint) => ({
    ...base,
    orig_rax: BigInt(nr),
    rax: BigInt.asUintN(64, -516n),
    rip: 0x1002n,
    rdx,
  });
  it('poll without a timeout is re-executed; with one it returns EINTR', () => {
    expect(resumeRegs(interrupted(7, BigInt.asUintN(64, -1n))).action).toBe('reexecute');
    expect(resumeRegs(interrupted(7, 500n)).action).toBe('eintr');
  });
  it('ppoll is re-executed (its timespec holds the time left)', () => {
    const r = resumeRegs(interrupted(271, 0x7000n));
    expect(r.action).toBe('reexecute');
    expect(r.regs.rip).toBe(0x1000n);
    expect(r.regs.rax).toBe(271n);
  });
});
