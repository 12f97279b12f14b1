/**
 * Which of a container's mounts the `mounts` phase saves, and how restart
 * makes each again (planMounts), from mountinfo lines; the flags of
 * per-mount options (mountFlags).
 */
import { parseMounts } from '@ckpt/core';
import { describe, expect, it } from 'vitest';
import { MountKind, mountFlags, planMounts } from '../../src/index.js';

const HOST = parseMounts(
  [
    '22 1 254:0 / / rw,relatime - ext4 /dev/vda rw',
    '23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw',
    '24 22 0:30 / /run rw,nosuid,nodev - tmpfs tmpfs rw,size=400k,mode=755',
  ].join('\n'),
);

/** The container's own lines, after the copies of the host's it has. */
function inside(...own: string[]) {
  return parseMounts(
    [
      '40 39 254:0 / / rw,relatime - ext4 /dev/vda rw',
      '41 40 0:30 / /run rw,nosuid,nodev - tmpfs tmpfs rw,size=400k,mode=755',
      // The container's own /proc: made again by restart, not saved.
      '42 40 0:45 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw',
      ...own,
    ].join('\n'),
  );
}

const plan = (...own: string[]) =>
  planMounts(7, inside(...own), HOST).map((p) => ({
    kind: p.kind,
    point: p.mount.point,
    source: p.source,
  }));

describe('planMounts', () => {
  it('saves nothing of a container that only has the host mounts and its /proc', () => {
    expect(plan()).toEqual([]);
  });

  it('fills a new tmpfs, even one on a place the host has a tmpfs on', () => {
    expect(plan('50 41 0:50 / /run rw,relatime - tmpfs tmpfs rw,size=1024k')).toEqual([
      { kind: MountKind.TMPFS, point: '/run', source: 'tmpfs' },
    ]);
  });

  it('binds a host path again from where the host mounts its filesystem', () => {
    expect(
      plan(
        '50 40 254:0 /srv/data /data ro,relatime - ext4 /dev/vda rw',
        '51 40 0:30 /sub\\040dir /sock rw - tmpfs tmpfs rw,size=400k',
      ),
    ).toEqual([
      { kind: MountKind.BIND, point: '/data', source: '/srv/data' },
      { kind: MountKind.BIND, point: '/sock', source: '/run/sub dir' },
    ]);
  });

  it('binds part of a tmpfs the container mounted from there, and mounts proc, sysfs and mqueue anew', () => {
    expect(
      plan(
        '50 40 0:50 / /scratch rw - tmpfs t rw',
        '51 40 0:50 /a/b /mnt/b rw - tmpfs t rw',
        '52 40 0:51 / /dev/mqueue rw - mqueue mqueue rw',
        '53 40 0:52 / /sys rw - sysfs sysfs rw',
      ),
    ).toEqual([
      { kind: MountKind.TMPFS, point: '/scratch', source: 't' },
      { kind: MountKind.BIND, point: '/mnt/b', source: '/scratch/a/b' },
      { kind: MountKind.NEW, point: '/dev/mqueue', source: 'mqueue' },
      { kind: MountKind.NEW, point: '/sys', source: 'sysfs' },
    ]);
  });

  it('refuses what it cannot make again, naming it', () => {
    expect(() => plan('50 40 0:60 / /dev/pts rw - devpts devpts rw,mode=600')).toThrow(
      'the container of pid 7 has a mount ckpt cannot save: devpts devpts at /dev/pts;',
    );
    // Part of a tmpfs no longer mounted anywhere.
    expect(() => plan('50 40 0:50 /part /x rw - tmpfs t rw')).toThrow(
      'tmpfs t at /x (/part of it)',
    );
  });
});

describe('mountFlags', () => {
  it('maps per-mount options to mount(2) flags', () => {
    expect(mountFlags('rw,relatime')).toBe(0x200000);
    expect(mountFlags('ro,nosuid,nodev,noexec,noatime')).toBe(0x1 | 0x2 | 0x4 | 0x8 | 0x400);
  });
});
