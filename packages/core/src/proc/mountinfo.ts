/**
 * /proc/PID/mountinfo: what of it ckpt needs — the mounts of a namespace,
 * the cgroup hierarchies mounted (for freezer cgroups and cgroup
 * membership) and the unescaping of its paths.
 */
import { readFileSync } from 'node:fs';

/** Undo mountinfo's octal escapes (\040 space, \011 tab, \012 newline, \134 backslash). */
export function unescapeMountinfo(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, o: string) =>
    String.fromCharCode(Number.parseInt(o, 8)),
  );
}

/** A cgroup filesystem mounted here. */
export interface CgroupMount {
  /** 2 for cgroup2, 1 for a v1 hierarchy. */
  version: 1 | 2;
  /** A v1 hierarchy's controllers ("cpu", "cpuacct", "name=systemd"), from the super options. */
  controllers: Set<string>;
  /** Which cgroup of the hierarchy is mounted there (mountinfo's root). */
  root: string;
  /** Where it is mounted. */
  point: string;
}

/** The cgroup mounts listed in `mountinfo` (default: ckpt's own mount namespace's), in order. */
export function cgroupMounts(
  mountinfo = readFileSync('/proc/self/mountinfo', 'utf8'),
): CgroupMount[] {
  return parseMounts(mountinfo)
    .filter((m) => m.fstype === 'cgroup' || m.fstype === 'cgroup2')
    .map((m) => ({
      version: m.fstype === 'cgroup2' ? 2 : 1,
      controllers: new Set(
        m.superOptions
          .split(',')
          .filter((o) => (o !== 'rw' && o !== 'ro' && !o.includes('=')) || o.startsWith('name=')),
      ),
      root: m.root,
      point: m.point,
    }));
}

/** One mount, as /proc/PID/mountinfo lists it. */
export interface Mount {
  /** The mount's id, unique in the system. */
  id: number;
  /** The id of the mount it is attached to (its own id for the namespace's root). */
  parentId: number;
  /** The filesystem's device, "major:minor" (a new tmpfs has a new one; a bind mount shares it). */
  dev: string;
  /** Per-mount options ("rw,nosuid,nodev,relatime"). */
  options: string;
  /** Where it is mounted, as the namespace's processes see it. */
  point: string;
  /** What of its filesystem is mounted there (not `/` for a bind mount). */
  root: string;
  fstype: string;
  /** The mount source ("tmpfs", "/dev/vda1", "none"). */
  source: string;
  /** The filesystem's options ("rw,size=1024k", a v1 cgroup's controllers). */
  superOptions: string;
}

/** Every mount listed in `mountinfo`, in order. */
export function parseMounts(mountinfo: string): Mount[] {
  const out: Mount[] = [];
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const fields = line.slice(0, sep).split(' ');
    const [fstype = '', source = '', superOptions = ''] = line.slice(sep + 3).split(' ');
    out.push({
      id: Number(fields[0]),
      parentId: Number(fields[1]),
      dev: fields[2] ?? '',
      options: fields[5] ?? '',
      point: unescapeMountinfo(fields[4] ?? ''),
      root: unescapeMountinfo(fields[3] ?? '/'),
      fstype,
      source: unescapeMountinfo(source),
      superOptions,
    });
  }
  return out;
}
