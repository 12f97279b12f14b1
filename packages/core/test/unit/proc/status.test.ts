import { describe, expect, it } from 'vitest';
import { isCkptError } from '../../../src/errors.js';
import { parseStatus } from '../../../src/proc/index.js';
import { sample } from './fixtures.js';

describe('parseStatus', () => {
  it('parses ids, masks and capabilities', () => {
    const s = parseStatus(sample('status-weird-comm.txt'));
    expect(s.name).toBe('a) (b c)');
    expect(s.umask).toBe(0o022);
    expect(s.state).toBe('S');
    expect([s.tgid, s.pid, s.ppid, s.tracerPid, s.ngid]).toEqual([3538, 3538, 1, 0, 0]);
    expect(s.uid).toEqual({ real: 0, effective: 0, saved: 0, fs: 0 });
    expect(s.groups).toEqual([]);
    expect(s.fdSize).toBe(256);
    expect(s.nsPid).toEqual([3538]);
    expect(s.nsPgid).toEqual([3528]);
    expect(s.threads).toBe(1);
    expect(s.sigQ).toEqual({ queued: 0, limit: 96364 });
    expect(s.sigBlk).toBe(1n << 9n); // SIGUSR1 (10)
    expect(s.sigIgn & (1n << 11n)).toBe(1n << 11n); // SIGUSR2 (12)
    expect(s.capEff).toBe(0x1fffeffffffn);
    expect(s.capAmb).toBe(0n);
    expect(s.noNewPrivs).toBe(false);
    expect(s.seccomp).toBe(0);
    expect(s.raw.get('VmRSS')).toBe('1660 kB');
    expect(s.raw.get('Cpus_allowed_list')).toBe('0-1');
  });

  it('lists the pid at every pid-namespace level, 0 where not visible', () => {
    const s = parseStatus(sample('status-nested-pidns.txt'));
    expect(s.nsTgid).toEqual([4038, 2]);
    expect(s.nsPid).toEqual([4038, 2]);
    expect(s.nsPgid).toEqual([4033, 0]);
    expect(s.nsSid).toEqual([2694, 0]);
  });

  it('undoes the escapes of Name', () => {
    const text = sample('status-weird-comm.txt').replace(
      /^Name:.*$/m,
      sample('status-name-escaped.txt').trimEnd(),
    );
    expect(parseStatus(text).name).toBe('x\n) 1 (\\y');
  });

  it('parses a zombie (no Umask) and a kernel thread', () => {
    const z = parseStatus(sample('status-zombie.txt'));
    expect(z.state).toBe('Z');
    expect(z.umask).toBeUndefined();
    expect(z.fdSize).toBe(0);
    expect(z.sigIgn).toBe(6n);
    const k = parseStatus(sample('status-kthread.txt'));
    expect(k.name).toBe('kthreadd');
    expect(k.raw.get('Kthread')).toBe('1');
  });

  it('parses supplementary groups', () => {
    const text = sample('status-zombie.txt').replace(/^Groups:.*$/m, 'Groups:\t4 24 27 ');
    expect(parseStatus(text).groups).toEqual([4, 24, 27]);
  });

  it('rejects missing and malformed keys naming the file', () => {
    const noUid = sample('status-zombie.txt').replace(/^Uid:.*\n/m, '');
    expect(() => parseStatus(noUid, '/proc/7/status')).toThrow(/\/proc\/7\/status: no Uid line/);
    const badMask = sample('status-zombie.txt').replace(/^SigBlk:.*$/m, 'SigBlk:\tzz');
    try {
      parseStatus(badMask);
      expect.unreachable();
    } catch (e) {
      expect(isCkptError(e, 'EINVAL')).toBe(true);
    }
    const threeUids = sample('status-zombie.txt').replace(/^Uid:.*$/m, 'Uid:\t0\t0\t0');
    expect(() => parseStatus(threeUids)).toThrow(/Uid has 3 values/);
  });
});
