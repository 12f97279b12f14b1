import { describe, expect, it } from 'vitest';
import { O_CLOEXEC, parseFdinfo, parseFdTarget } from '../../../src/proc/index.js';
import { sample } from './fixtures.js';

describe('parseFdinfo', () => {
  it('parses pos, octal flags with O_CLOEXEC, mnt_id and ino', () => {
    const f = parseFdinfo(sample('fdinfo-3.txt'));
    expect(f.pos).toBe(5n);
    expect(f.flags).toBe(0o2100002); // O_RDWR | O_LARGEFILE | O_CLOEXEC
    expect(f.flags & O_CLOEXEC).toBe(O_CLOEXEC);
    expect(f.cloexec).toBe(true);
    expect(f.mntId).toBe(26);
    expect(f.ino).toBe(2146640);
    expect(f.extra).toEqual([]);
  });

  it('keeps type-specific lines raw', () => {
    const ev = parseFdinfo(sample('fdinfo-6.txt'));
    expect(ev.cloexec).toBe(false);
    expect(ev.flags).toBe(0o4002); // O_RDWR | O_NONBLOCK
    expect(ev.extra).toEqual([
      'eventfd-count:                7',
      'eventfd-id: 1',
      'eventfd-semaphore: 0',
    ]);
    expect(parseFdinfo(sample('fdinfo-7.txt')).extra[0]).toMatch(/^inotify wd:1 ino:3f7e8 /);
    expect(parseFdinfo(sample('fdinfo-8.txt')).extra).toContain('it_interval: (10, 0)');
    expect(parseFdinfo(sample('fdinfo-9.txt')).extra[0]).toMatch(/^tfd: +4 events: +19 data: +2a/);
    expect(parseFdinfo(sample('fdinfo-11.txt')).extra).toEqual(['sigmask:\t0000000000000200']);
  });

  it('rejects text without the common lines, naming the file', () => {
    expect(() => parseFdinfo('pos:\t0\n', '/proc/1/fdinfo/4')).toThrow(
      /\/proc\/1\/fdinfo\/4: no flags line/,
    );
    expect(() => parseFdinfo(sample('fdinfo-3.txt').replace('02100002', '9'))).toThrow(/not octal/);
  });
});

describe('parseFdTarget', () => {
  it('classifies link texts', () => {
    expect(parseFdTarget('/dev/null')).toEqual({
      kind: 'path',
      text: '/dev/null',
      path: '/dev/null',
      deleted: false,
    });
    expect(parseFdTarget('/tmp/pcap/with space.txt (deleted)')).toMatchObject({
      kind: 'path',
      path: '/tmp/pcap/with space.txt',
      deleted: true,
    });
    expect(parseFdTarget('pipe:[8026]')).toMatchObject({ kind: 'pipe', inode: 8026 });
    expect(parseFdTarget('socket:[456]')).toMatchObject({ kind: 'socket', inode: 456 });
    expect(parseFdTarget('anon_inode:[eventfd]')).toMatchObject({
      kind: 'anon_inode',
      anonType: 'eventfd',
    });
    expect(parseFdTarget('anon_inode:inotify')).toMatchObject({
      kind: 'anon_inode',
      anonType: 'inotify',
    });
    expect(parseFdTarget('net:[4026531833]')).toMatchObject({
      kind: 'other',
      type: 'net',
      inode: 4026531833,
    });
    expect(parseFdTarget('weird')).toEqual({ kind: 'other', text: 'weird' });
  });
});
