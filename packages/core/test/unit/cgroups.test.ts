import { describe, expect, it } from 'vitest';
import { isCkptError } from '../../src/errors.js';
import { cgroupDir, cgroupMounts, parseProcCgroup } from '../../src/index.js';

const MOUNTINFO = [
  '30 25 0:26 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,pids',
  '31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct',
  '32 25 0:28 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd',
  '33 25 0:29 /inner /mnt/my\\040cg rw,relatime - cgroup2 cgroup2 rw,nsdelegate',
  '34 25 0:30 / /tmp rw - tmpfs tmpfs rw',
].join('\n');

describe('cgroups', () => {
  it('parses /proc/PID/cgroup, keeping colons in paths', () => {
    expect(parseProcCgroup('4:cpu,cpuacct:/a/b\n1:name=systemd:/\n0::/x:y\n')).toEqual([
      { hierarchy: 4, controllers: 'cpu,cpuacct', path: '/a/b' },
      { hierarchy: 1, controllers: 'name=systemd', path: '/' },
      { hierarchy: 0, controllers: '', path: '/x:y' },
    ]);
    try {
      parseProcCgroup('garbage');
      expect.unreachable();
    } catch (e) {
      expect(isCkptError(e, 'EINVAL')).toBe(true);
    }
  });

  it('finds the directory of a cgroup under the mounted hierarchies', () => {
    const mounts = cgroupMounts(MOUNTINFO);
    expect(mounts).toHaveLength(4);
    const dir = (line: string) => cgroupDir(parseProcCgroup(line)[0]!, mounts);
    expect(dir('8:pids:/ckpt/a')).toBe('/sys/fs/cgroup/pids/ckpt/a');
    // Co-mounted controllers, in either order; a named hierarchy.
    expect(dir('3:cpuacct,cpu:/x')).toBe('/sys/fs/cgroup/cpu,cpuacct/x');
    expect(dir('1:name=systemd:/user')).toBe('/sys/fs/cgroup/systemd/user');
    // cgroup2 mounted from a subdirectory (and an escaped mount point).
    expect(dir('0::/inner/job')).toBe('/mnt/my cg/job');
    expect(dir('0::/elsewhere')).toBeUndefined();
    expect(dir('5:memory:/m')).toBeUndefined();
  });
});
