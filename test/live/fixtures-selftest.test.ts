/**
 * Self-test of the checkpoint/restart fixtures WITHOUT checkpointing: each
 * fixture is started, told to go (or signalled), and must PASS; negative
 * cases corrupt the state from outside and the fixture must notice (FAIL).
 */

import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  compileAll,
  type FixtureHandle,
  isAlive,
  layoutRegion,
  peekMemory,
  pokeMemory,
  pokeRegister,
  type StartOptions,
  sleepSync,
  startFixture,
  waitSyscall,
} from '../support/fixtures.ts';
import { requireRoot } from './../support/prereq.ts';

const started: FixtureHandle[] = [];
function start(name: string, opts?: StartOptions): FixtureHandle {
  const f = startFixture(name, opts);
  started.push(f);
  return f;
}

beforeAll(() => {
  requireRoot();
  compileAll();
});

afterEach(() => {
  for (const f of started.splice(0)) f.dispose();
});

describe('fixtures pass without checkpoint', () => {
  for (const name of ['mem_vmas', 'fpu_regs', 'gp_regs', 'files', 'signals', 'rlimits_creds']) {
    it(name, () => {
      const f = start(name);
      expect(isAlive(f.pid)).toBe(true);
      sleepSync(100);
      f.go();
      expect(f.waitResult()).toMatch(/^PASS/);
      // the launcher reaps it (no zombie left behind) and then writes `exit`
      const exitFile = path.join(f.dir, 'exit');
      for (let i = 0; i < 400 && !fs.existsSync(exitFile); i++) sleepSync(5);
      expect(fs.existsSync(`/proc/${f.pid}`)).toBe(false);
      expect(fs.readFileSync(exitFile, 'utf8')).toBe('exit 0\n');
    });
  }

  it('sleeper: one uninterrupted nanosleep', () => {
    const f = start('sleeper', { args: ['2'] });
    waitSyscall(f.pid, 230);
    const r = f.waitResult(10_000);
    expect(r).toMatch(/^PASS slept=2\.\d\d$/);
  });

  it('pauser: pause() woken by SIGUSR1', () => {
    const f = start('pauser');
    waitSyscall(f.pid, 34);
    sleepSync(200);
    expect(isAlive(f.pid)).toBe(true);
    expect(fs.existsSync(path.join(f.dir, 'result'))).toBe(false);
    process.kill(f.pid, 'SIGUSR1');
    expect(f.waitResult()).toBe('PASS');
  });

  for (const name of ['counter', 'counter.py', 'counter.sh']) {
    it(`${name}: counts, continues, reports`, () => {
      const f = start(name);
      expect(f.count).toBeDefined();
      const c0 = f.count!();
      sleepSync(400);
      const c1 = f.count!();
      expect(c0).toBeGreaterThanOrEqual(1);
      expect(c1).toBeGreaterThan(c0);
      f.go();
      const r = f.waitResult();
      expect(r).toMatch(/^PASS count=\d+$/);
      expect(Number(r.split('=')[1])).toBeGreaterThanOrEqual(c1);
      expect(f.count!()).toBe(Number(r.split('=')[1]));
    });
  }
});

describe('fixtures fail when their state is corrupted', () => {
  it('mem_vmas: a byte of the 256 MiB region and of the read-only region', () => {
    const f = start('mem_vmas');
    const big = layoutRegion(f.layout, 'big');
    expect(big.len).toBe(256 << 20);
    // the layout is right: the first word is xorshift64(seed)
    let s = BigInt(f.layout.seed!);
    const m = (1n << 64n) - 1n;
    s ^= (s << 13n) & m;
    s ^= s >> 7n;
    s ^= (s << 17n) & m;
    expect(peekMemory(f.pid, big.addr, 8).readBigUInt64LE()).toBe(s);

    const off = 123_456_789n;
    const orig = peekMemory(f.pid, big.addr + off, 1)[0]!;
    pokeMemory(f.pid, big.addr + off, Uint8Array.of(orig ^ 0x40));
    const ro = layoutRegion(f.layout, 'rdonly');
    pokeMemory(f.pid, ro.addr + 5000n, Uint8Array.of(0xee));
    f.go();
    const r = f.waitResult();
    expect(r).toMatch(/^FAIL: /);
    expect(r).toContain(`big: word at 0x${(big.addr + (off & ~7n)).toString(16)}`);
    expect(r).toContain('rdonly: byte at');
    expect(r).not.toContain('maps differs');
  });

  it('mem_vmas: the untouched page of a private file mapping follows the file', () => {
    const f = start('mem_vmas');
    // page 0 of priv.dat is not COWed: changing the file changes the mapping
    const fd = fs.openSync(path.join(f.dir, 'priv.dat'), 'r+');
    fs.writeSync(fd, Uint8Array.of(0), 0, 1, 100);
    fs.closeSync(fd);
    f.go();
    expect(f.waitResult()).toMatch(/^FAIL: privfile: byte at 0x[0-9a-f]+ \(\+100\)/);
  });

  it('gp_regs: r13 flipped with ptrace', () => {
    const f = start('gp_regs');
    pokeRegister(f.pid, 'gp', 'r13', 0x100);
    f.go();
    expect(f.waitResult()).toBe('FAIL: r13 = 0x8765432113131213, want 0x8765432113131313');
  });

  it('fpu_regs: upper half of ymm5, and zmm20 and k3 when AVX-512', () => {
    const f = start('fpu_regs');
    const ymmHi = Number(f.layout.xsave_ymm_hi);
    pokeRegister(f.pid, 'xstate', ymmHi + 16 * 5 + 15, 0x80);
    const avx512 = f.layout.avx512 === '1';
    if (avx512) {
      pokeRegister(f.pid, 'xstate', Number(f.layout.xsave_hi16_zmm) + 64 * 4 + 63, 0x01);
      pokeRegister(f.pid, 'xstate', Number(f.layout.xsave_opmask) + 8 * 3, 0x01);
    }
    f.go();
    const r = f.waitResult();
    expect(r).toMatch(/^FAIL: /);
    expect(r).toContain('after-wait ymm(upper128) 5:');
    expect(r).not.toContain('before-wait');
    if (avx512) {
      expect(r).toContain('after-wait zmm20:');
      expect(r).toContain('after-wait k3:');
    }
  });

  it('files: the read-only file changed under its fd', () => {
    const f = start('files');
    expect(f.layout.fd_ro).toBe('5');
    fs.writeFileSync(path.join(f.dir, 'ro.txt'), 'X'.repeat(64));
    f.go();
    expect(f.waitResult()).toMatch(/^FAIL: ro: byte at 7 is 'X'/);
  });

  it('signals: an extra SIGRTMIN+2 in the queue', () => {
    const f = start('signals');
    process.kill(f.pid, Number(f.layout.rtsig));
    sleepSync(50);
    f.go();
    expect(f.waitResult()).toBe('FAIL: SIGRTMIN+2 delivered 3 times, want 2');
  });

  it('signals: SIGUSR1 delivered before go', () => {
    const f = start('signals');
    process.kill(f.pid, 'SIGUSR1');
    sleepSync(50);
    f.go();
    expect(f.waitResult()).toMatch(/^FAIL: handlers ran before go \(usr1=1 usr2=0 rt=0\)/);
  });

  it('sleeper: a signal interrupts the sleep', () => {
    const f = start('sleeper', { args: ['3'] });
    waitSyscall(f.pid, 230);
    process.kill(f.pid, 'SIGUSR1');
    expect(f.waitResult()).toMatch(/^FAIL: nanosleep returned -1 errno 4/);
  });

  it('pauser: woken by SIGUSR2 instead', () => {
    const f = start('pauser');
    waitSyscall(f.pid, 34);
    process.kill(f.pid, 'SIGUSR2');
    expect(f.waitResult()).toMatch(/^FAIL: woken by SIGUSR2/);
  });
});
