/**
 * The `cgroups` phase: the cgroup of each process in every hierarchy
 * (/proc/PID/cgroup), and restart moving the new process back into it by
 * writing its pid to that cgroup's `cgroup.procs` from ckpt's side. The
 * limits and accounting of those cgroups are theirs: a process restored in
 * its memory or pids cgroup is held to its limits again.
 *
 * It runs early (order 120, before the memory is rebuilt), so the memory a
 * restart allocates is charged to the process's own memory cgroup; threads
 * created later inherit the cgroup. A cgroup that does not exist here (or a
 * hierarchy not mounted) leaves the process in ckpt restart's, with a
 * warning naming both: ckpt does not create cgroups or set their limits.
 * A cgroup outside ckpt restart's own (a parent or a sibling of it) is
 * refused the same way: restart never grants more than its caller holds,
 * and a process moved there would escape the caller's limits. Zombies have
 * no cgroup to restore.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CheckpointCtx, RestartCtx } from '../context.js';
import { CkptError } from '../errors.js';
import { type CgroupMount, cgroupMounts } from '../proc/mountinfo.js';
import type { TaskPhase } from '../registry.js';
import type { CheckpointTask, RestartTask } from '../task.js';
import { cgroupsRecord } from './records.js';

/** One line of /proc/PID/cgroup. */
export interface CgroupEntry {
  hierarchy: number;
  controllers: string;
  path: string;
}

/**
 * Parses /proc/PID/cgroup: "ID:CONTROLLERS:PATH" lines (the path may hold
 * colons).
 * @throws CkptError EINVAL for a malformed line
 */
export function parseProcCgroup(text: string): CgroupEntry[] {
  const out: CgroupEntry[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) throw new CkptError('EINVAL', `malformed /proc/PID/cgroup line '${line}'`);
    out.push({ hierarchy: Number(m[1]), controllers: m[2]!, path: m[3]! });
  }
  return out;
}

/**
 * The directory of cgroup `entry` under the mounts here, or undefined when
 * its hierarchy is not mounted (or only a part of it that does not hold it).
 */
export function cgroupDir(entry: CgroupEntry, mounts: readonly CgroupMount[]): string | undefined {
  const wanted = entry.controllers.split(',').filter((c) => c !== '');
  for (const m of mounts) {
    const matches =
      entry.hierarchy === 0 && entry.controllers === ''
        ? m.version === 2
        : m.version === 1 && wanted.length > 0 && wanted.every((c) => m.controllers.has(c));
    if (!matches) continue;
    const root = m.root === '/' ? '' : m.root;
    if (entry.path !== root && !entry.path.startsWith(`${root}/`)) continue;
    return join(m.point, entry.path.slice(root.length));
  }
  return undefined;
}

/**
 * Whether the cgroup at `dir` is frozen or freezing (a v1 freezer
 * hierarchy's `freezer.state`, cgroup2's `cgroup.freeze` or `frozen 1`):
 * a task in it cannot reach a ptrace stop.
 */
export function isFrozenCgroupDir(dir: string, version: 1 | 2): boolean {
  const read = (file: string) => {
    try {
      return readFileSync(join(dir, file), 'utf8');
    } catch {
      return '';
    }
  };
  if (version === 1) return /^(FROZEN|FREEZING)/.test(read('freezer.state'));
  return read('cgroup.freeze').trim() === '1' || /^frozen 1$/m.test(read('cgroup.events'));
}

/** A freezer hierarchy's entry (v1 with the freezer controller, or cgroup2): its version. */
function freezerVersion(e: CgroupEntry): 1 | 2 | undefined {
  if (e.hierarchy === 0 && e.controllers === '') return 2;
  return e.controllers.split(',').includes('freezer') ? 1 : undefined;
}

/**
 * The frozen cgroup `pid` is in ("freezer:/x"), if any: it cannot stop for
 * ckpt there (see `--freezer`).
 */
export function frozenCgroupOf(pid: number): string | undefined {
  let entries: readonly CgroupEntry[];
  try {
    entries = readProcCgroup(pid);
  } catch {
    return undefined; // gone
  }
  const mounts = cgroupMounts();
  for (const e of entries) {
    const version = freezerVersion(e);
    const dir = version && cgroupDir(e, mounts);
    if (version && dir && isFrozenCgroupDir(dir, version)) return describe(e);
  }
  return undefined;
}

function describe(e: CgroupEntry): string {
  return `${e.controllers === '' ? 'cgroup2' : e.controllers}:${e.path}`;
}

/**
 * /proc/PID/cgroup of `pid`, parsed (paths as the caller's thread's cgroup
 * namespace shows them). A tree's processes mostly share their cgroups, so
 * the text is parsed once per distinct text (read-only result).
 */
export function readProcCgroup(pid: number): readonly CgroupEntry[] {
  const text = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  let entries = parsed.get(text);
  if (!entries) {
    if (parsed.size >= 64) parsed.clear();
    entries = parseProcCgroup(text);
    parsed.set(text, entries);
  }
  return entries;
}
const parsed = new Map<string, readonly CgroupEntry[]>();

function checkpoint(ctx: CheckpointCtx, task: CheckpointTask): void {
  const entries = [...readProcCgroup(task.pid)];
  ctx.write(cgroupsRecord, { entries });
}

/** The cgroup mounts here and ckpt restart's own cgroups, read once per restart (on the first move). */
const byRestart = new WeakMap<RestartCtx, { mounts: CgroupMount[]; own: readonly CgroupEntry[] }>();
function cgroupsHere(ctx: RestartCtx): { mounts: CgroupMount[]; own: readonly CgroupEntry[] } {
  let here = byRestart.get(ctx);
  if (!here) {
    here = { mounts: cgroupMounts(), own: readProcCgroup(process.pid) };
    byRestart.set(ctx, here);
  }
  return here;
}

function restore(ctx: RestartCtx, task: RestartTask): void {
  const { entries } = ctx.read(cgroupsRecord);
  moveIntoCgroups(ctx, task, entries);
}

/**
 * Move restored `task` into `entries` (one cgroup per hierarchy, as
 * /proc/PID/cgroup names them from ckpt's cgroup namespace) where it is not
 * there yet. A cgroup outside ckpt restart's own, missing here or on a
 * hierarchy not mounted is a warning: the task stays where it is.
 */
export function moveIntoCgroups(
  ctx: RestartCtx,
  task: RestartTask,
  entries: readonly CgroupEntry[],
  what = 'its cgroup',
): void {
  const pid = task.pid;
  const now = readProcCgroup(pid);
  for (const e of entries) {
    // By controllers: hierarchy ids are numbered at mount time and differ
    // between machines ("" is cgroup2's).
    const here = now.find((n) => n.controllers === e.controllers);
    if (here?.path === e.path) continue; // already there
    const { mounts, own } = cgroupsHere(ctx);
    // Restart never grants more than its caller holds: out of its own
    // cgroup (and its limits) into a parent or a sibling, no.
    const mine = own.find((n) => n.controllers === e.controllers);
    if (mine && mine.path !== '/' && e.path !== mine.path && !e.path.startsWith(`${mine.path}/`)) {
      ctx.log.warn(
        `pid ${task.savedPid}: ${what} ${describe(e)} is outside ckpt restart's own (${describe(mine)}): it stays where it is`,
      );
      continue;
    }
    const dir = cgroupDir(e, mounts);
    const where = here ? ` it stays in ${describe(here)}` : '';
    const version = freezerVersion(e);
    if (dir && version && isFrozenCgroupDir(dir, version)) {
      // A task moved in would stop for good, and restart wait for it.
      throw new CkptError(
        'EBUSY',
        `pid ${task.savedPid}: ${what} ${describe(e)} (${dir}) is frozen here, and a task moved into it could not be restored; thaw it first (write ${version === 1 ? 'THAWED to freezer.state' : '0 to cgroup.freeze'}) and freeze it again once the restart is done`,
        { pid: task.savedPid, path: dir },
      );
    }
    if (!dir || !existsSync(dir)) {
      ctx.log.warn(
        `pid ${task.savedPid}: ${what} ${describe(e)} ${dir ? 'does not exist here' : 'is not mounted here'}:${where}`,
      );
      continue;
    }
    try {
      writeFileSync(join(dir, 'cgroup.procs'), String(pid));
    } catch (err) {
      ctx.log.warn(
        `pid ${task.savedPid}: cannot move it into ${what} ${describe(e)} (${(err as Error).message}):${where}`,
      );
    }
  }
}

/** Saves each process's cgroups and moves the restored process back into them. */
export const cgroupsPhase: TaskPhase = {
  name: 'cgroups',
  order: 120,
  checkpoint,
  restore,
};
