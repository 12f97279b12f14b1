/**
 * Batches of injected syscalls with the x86-64 batch code: one stop of the
 * tracer for many calls, results of earlier calls as arguments, the marker
 * signal that ends a batch, and kill-safety while a batch runs.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  freezeTask,
  getRegset,
  getSigmask,
  NT,
  ProcMem,
  readMaps,
  readStat,
  readStatus,
  SyscallInjector,
  setSigmask,
  spawnProcess,
  unfreezeTask,
} from '@ckpt/core';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { requireRoot } from '../../../../test/support/prereq.js';
import { InjectedSyscalls } from '../../../core/src/engine/syscalls.js';
import { NR, x86_64Arch } from '../../src/index.js';
import {
  compileC,
  counterSource,
  killStarted,
  sleep,
  startSleeper,
  stateAfterRelease,
  track,
  waitUntil,
} from './support.js';

const conv = x86_64Arch.convention;
const ALL = (1n << 64n) - 1n;
const O_RDONLY = 0;
const AT_FDCWD = -100;
const F_GETFD = 1;
const NR_GETPPID = 110;

const fds = (pid: number) => readdirSync(`/proc/${pid}/fd`).sort();

describe('batches of injected syscalls (x86-64)', () => {
  beforeAll(() => requireRoot());
  afterEach(() => killStarted());

  it('runs many calls, more than one table holds, with the right result for each', async () => {
    const pid = await startSleeper();
    const frozen = freezeTask(pid);
    const before = getRegset(pid, NT.PRSTATUS);
    const maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
    const inj = new SyscallInjector(pid, conv, { killSafe: true });
    const calls = Array.from({ length: 300 }, (_, i) => ({
      nr: i % 3 === 0 ? NR.getpid : NR_GETPPID,
      args: [],
    }));
    const results = inj.callMany(calls);
    const ppid = BigInt(readStatus(pid).ppid);
    expect(results).toEqual(calls.map((c) => (c.nr === NR.getpid ? BigInt(pid) : ppid)));
    // Single calls go through batches too, and failures are negative errnos.
    expect(inj.call(NR.getpid)).toBe(BigInt(pid));
    expect(inj.callMany([{ nr: NR.close, args: [9999] }])).toEqual([-9n]);
    inj.close();
    expect(getRegset(pid, NT.PRSTATUS).equals(before)).toBe(true);
    expect(readFileSync(`/proc/${pid}/maps`, 'utf8')).toBe(maps);
    expect(await stateAfterRelease(frozen)).toBe('S');
  });

  it('passes results on as arguments and into memory, all in one batch', async () => {
    const pid = await startSleeper();
    const frozen = freezeTask(pid);
    const open = fds(pid);
    const inj = new SyscallInjector(pid, conv, { killSafe: true });
    const scratch = inj.scratch(64);
    const mem = new ProcMem(pid);
    mem.write(scratch, Buffer.from('/dev/null\0'));
    const fd = { result: 0 };
    const [opened, flags, closed] = inj.callMany([
      { nr: NR.openat, args: [AT_FDCWD, scratch, O_RDONLY, 0] },
      { nr: NR.fcntl, args: [fd, F_GETFD] },
      { nr: NR.close, args: [fd] },
    ]);
    expect(opened).toBeGreaterThanOrEqual(0n);
    expect(flags).toBe(0n);
    expect(closed).toBe(0n);
    // The result copied into memory, and into a later call.
    const [reopened, reclosed] = inj.callMany([
      { nr: NR.openat, args: [AT_FDCWD, scratch, O_RDONLY, 0], resultTo: [scratch + 32n] },
      { nr: NR.close, args: [fd] },
    ]);
    expect(mem.read(scratch + 32n, 8).readBigInt64LE(0)).toBe(reopened);
    expect(reclosed).toBe(0n);
    expect(inj.call(NR.close, [reopened!])).toBe(-9n); // EBADF: closed already
    expect(fds(pid)).toEqual(open);
    // A call cannot take a later call's result, nor a result go to three places.
    expect(() => inj.callMany([{ nr: NR.close, args: [{ result: 0 }] }])).toThrow(/earlier call/);
    expect(() =>
      inj.callMany([
        { nr: NR.getpid, args: [], resultTo: [scratch, scratch + 8n] },
        { nr: NR.close, args: [{ result: 0 }] },
      ]),
    ).toThrow(/earlier call|too often/);
    // A fault in the batch (a result copied to an unmapped address) is an
    // error, and the task is unharmed.
    expect(() => inj.callMany([{ nr: NR.getpid, args: [], resultTo: [0x1000n] }])).toThrow(
      /faulted/,
    );
    mem.close();
    inj.close();
    expect(await stateAfterRelease(frozen)).toBe('S');
  });

  it('with a code page of its own (restart), unblocks only its marker signal', async () => {
    const pid = await startSleeper();
    const frozen = freezeTask(pid);
    const first = new SyscallInjector(pid, conv, {});
    const page = first.call(NR.mmap, [0, 4096, 7, 0x22, -1, 0]);
    first.close();
    const mem = new ProcMem(pid);
    mem.write(page, conv.syscallInsn);
    mem.close();
    setSigmask(pid, ALL);
    const inj = new SyscallInjector(pid, conv, { syscallAddr: page, codePage: page });
    expect(
      inj.callMany([
        { nr: NR.getpid, args: [] },
        { nr: NR_GETPPID, args: [] },
      ]),
    ).toEqual([BigInt(pid), BigInt(readStatus(pid).ppid)]);
    const unblocked = ALL & ~getSigmask(pid);
    // One standard signal, not SIGKILL/SIGSTOP (which a mask never holds).
    const signals = Array.from({ length: 31 }, (_, i) => i + 1).filter(
      (s) => (unblocked & (1n << BigInt(s - 1))) !== 0n && s !== 9 && s !== 19,
    );
    expect(signals).toHaveLength(1);
    expect(readStatus(pid).sigPnd | readStatus(pid).shdPnd).toBe(0n);
    inj.close();
    unfreezeTask(frozen, 'kill');
  });

  it('leaves the target running, as it was, when the tracer dies in the middle of a batch', async () => {
    const out = `/tmp/ckpt-batch-counter-${process.pid}`;
    const counter = () => Number(readFileSync(out, 'utf8') || '-1');
    const prog = compileC('batch-counter', counterSource(2));
    const pid = track(spawnProcess([prog, out]));
    await waitUntil(() => {
      try {
        return counter() > 1;
      } catch {
        return false;
      }
    });
    const maps = () =>
      readMaps(pid)
        .filter((m) => !(m.read && m.write && m.exec && m.pathname === ''))
        .map((m) => `${m.start}-${m.end}`)
        .join(' ');
    const before = maps();
    const dist = (pkg: string) =>
      fileURLToPath(new URL(`../../../${pkg}/dist/index.js`, import.meta.url));
    // The tracer runs batches of 40 sleeps of 1 ms in a loop until killed.
    const script = `
import * as core from ${JSON.stringify(dist('core'))};
import { x86_64Arch, NR } from ${JSON.stringify(dist('arch-x86'))};
const pid = Number(process.argv[1]);
core.freezeTask(pid);
const inj = new core.SyscallInjector(pid, x86_64Arch.convention, { killSafe: true });
const ts = inj.scratch(16);
const t = Buffer.alloc(16); t.writeBigInt64LE(1000000n, 8);
core.writeMemory(pid, ts, t);
inj.callMany([{ nr: NR.getpid, args: [] }]);
process.stdout.write('ready\\n');
for (;;) inj.callMany(Array.from({ length: 40 }, () => ({ nr: NR.nanosleep, args: [ts, 0] })));
`;
    const tracers: ChildProcess[] = [];
    try {
      for (const delay of [3, 11, 17, 29, 41]) {
        const tracer = spawn(process.execPath, ['--input-type=module', '-e', script, String(pid)], {
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        tracers.push(tracer);
        await new Promise<void>((resolve, reject) => {
          tracer.stdout?.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
          tracer.on('exit', (code) => reject(new Error(`tracer exited with ${code}`)));
        });
        await sleep(delay);
        tracer.kill('SIGKILL');
        await new Promise((resolve) => tracer.once('exit', resolve));
        expect(await waitUntil(() => readStatus(pid).tracerPid === 0)).toBe(true);
        const at = counter();
        expect(await waitUntil(() => counter() > at + 3)).toBe(true);
        expect(readStat(pid).state).not.toMatch(/^[tTZX]$/); // running, not stopped
        // Only ckpt's code page is left behind (the next checkpoint removes it).
        expect(maps()).toBe(before);
      }
    } finally {
      for (const t of tracers) t.kill('SIGKILL');
    }
  });

  it('runs posted calls whose data together outgrow the scratch area in more than one batch', async () => {
    const pid = await startSleeper();
    const frozen = freezeTask(pid);
    const open = fds(pid);
    const maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
    const sys = new InjectedSyscalls(pid, x86_64Arch, { killSafe: true });
    // Two paths of 7000 bytes each (NUL-padded): more than the 12 KiB of
    // scratch room together. Each must arrive intact for its open to work.
    const path = () => Buffer.concat([Buffer.from('/dev/null\0'), Buffer.alloc(6990)]);
    const opened: bigint[] = [];
    for (let i = 0; i < 2; i++) {
      sys.postChecked(
        [
          { name: 'openat', args: [AT_FDCWD, { data: 0 }, O_RDONLY, 0], what: 'opening /dev/null' },
          { name: 'close', args: [{ result: 0 }], what: 'closing it' },
        ],
        { data: [path()], done: ([fd]) => opened.push(fd!) },
      );
    }
    sys.batch([]);
    expect(opened).toHaveLength(2);
    // Data one batch cannot hold is a clear error, not a write past the area.
    sys.post([{ name: 'getpid', args: [{ data: 0 }] }], { data: [Buffer.alloc(16000)] });
    expect(() => sys.batch([])).toThrow(/does not fit the \d+ bytes of scratch room/);
    sys.close();
    expect(fds(pid)).toEqual(open);
    expect(readFileSync(`/proc/${pid}/maps`, 'utf8')).toBe(maps);
    expect(await stateAfterRelease(frozen)).toBe('S');
  });
});
