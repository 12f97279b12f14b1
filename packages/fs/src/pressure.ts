/**
 * Pressure stall information files (/proc/pressure/cpu|memory|io|irq, and
 * a cgroup's cpu|memory|io|irq.pressure). Read, they give averages, and a
 * reopen by path gives them again. Written, they take a trigger ("some
 * 10000 2000000": a stall of 10 ms within 2 s) that then wakes poll(2) with
 * POLLPRI (systemd-oomd, Android's lmkd wait so). The kernel shows no
 * trigger anywhere (not in fdinfo, not in the file), so a reopen would come
 * back without it, and poll would report POLLERR at once, every time: a
 * program waiting for it spins. A trigger can only be written through a
 * writable fd: such an fd is refused.
 */

import { statfsSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { CkptError, type FileInfo } from '@ckpt/core';
import { O_ACCMODE, O_RDONLY } from './flags.js';

const PROC_SUPER_MAGIC = 0x9fa0;
const CGROUP2_SUPER_MAGIC = 0x63677270;
/** The resources PSI reports on. */
const RESOURCES = new Set(['cpu', 'memory', 'io', 'irq']);

/**
 * The filesystem a PSI file that takes triggers lives in, when `path`
 * names one: /proc/pressure/RESOURCE, or a cgroup's RESOURCE.pressure
 * ("cgroup.pressure", which turns PSI on or off for a cgroup, takes none).
 */
export function pressureFileKind(path: string): 'proc' | 'cgroup' | undefined {
  const name = basename(path);
  if (basename(dirname(path)) === 'pressure' && RESOURCES.has(name)) return 'proc';
  const suffix = '.pressure';
  if (name.endsWith(suffix) && RESOURCES.has(name.slice(0, -suffix.length))) return 'cgroup';
  return undefined;
}

/** Whether `file`, open at `path`, is a PSI file that takes triggers. */
function isPressureFile(file: FileInfo, path: string): boolean {
  const kind = pressureFileKind(path);
  if (!kind) return false;
  let fsType: number;
  try {
    fsType = statfsSync(`/proc/${file.pid}/fd/${file.fd}`).type;
  } catch {
    return false; // closed meanwhile: whatever comes next says so
  }
  return fsType === (kind === 'proc' ? PROC_SUPER_MAGIC : CGROUP2_SUPER_MAGIC);
}

/**
 * Refuse `file`, open at `path`, when it is a PSI file open for writing
 * (it may hold a trigger, which cannot be read back); a read-only one is
 * left to be reopened by path.
 * @throws CkptError ENOTSUP naming the pid, fd and path
 */
export function refusePressureTrigger(file: FileInfo, path: string): void {
  if ((file.info.flags & O_ACCMODE) === O_RDONLY || !isPressureFile(file, path)) return;
  throw new CkptError(
    'ENOTSUP',
    `pid ${file.pid} fd ${file.fd}: ${path} is a pressure (PSI) file open for writing, so it may hold a trigger; the kernel does not show a trigger, so it cannot be read back and set again (reopened without it, poll(2) reports POLLERR at once, every time); only read-only PSI files are supported`,
    { pid: file.pid, fd: file.fd, path },
  );
}
