/**
 * Freezer cgroups: finding one from what the user typed, reading and
 * writing its state, and listing its tasks. Both interfaces are handled:
 * cgroup v1's `freezer.state` (THAWED, FREEZING, FROZEN) on a hierarchy
 * with the freezer controller, and cgroup v2's `cgroup.freeze` with
 * `frozen 1` in `cgroup.events`. Which one applies is decided by the
 * mount the cgroup's directory is under.
 *
 * The linux-cr seed puts the cgroup in a CHECKPOINTING state the kernel
 * refuses to thaw; userspace cannot, so `freeze-tree.ts` holds the tasks
 * in ptrace stops instead (see there).
 */
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CkptError } from '../errors.js';
import { type CgroupMount, cgroupMounts } from '../proc/mountinfo.js';

/** Which cgroup freezer interface a cgroup has. */
export type FreezerVersion = 1 | 2;

/** A mounted hierarchy that can freeze. */
export interface FreezerMount {
  version: FreezerVersion;
  /** Where it is mounted. */
  point: string;
  /** Which cgroup of the hierarchy is mounted there (mountinfo's root). */
  root: string;
}

const POLL_MAX_MS = 10;
/** How often {@link FreezerCgroup.freezeAndWait} writes the freeze again. */
const KICK_MS = 50;
const sleepCell = new Int32Array(new SharedArrayBuffer(4));

function sleepMs(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}

/**
 * The first cgroup v1 hierarchy with the freezer controller and the first
 * cgroup2 mount, from /proc/self/mountinfo.
 */
export function freezerMounts(): { v1?: FreezerMount; v2?: FreezerMount } {
  const mounts = cgroupMounts();
  const pick = (m: CgroupMount | undefined): FreezerMount | undefined =>
    m && { version: m.version, point: m.point, root: m.root };
  return {
    v1: pick(mounts.find((m) => m.version === 1 && m.controllers.has('freezer'))),
    v2: pick(mounts.find((m) => m.version === 2)),
  };
}

function isUnder(dir: string, point: string): boolean {
  return dir === point || dir.startsWith(point === '/' ? '/' : `${point}/`);
}

/**
 * One freezer cgroup: its directory and interface. Reads and writes are
 * synchronous and go straight to the cgroup's files.
 */
export class FreezerCgroup {
  /** The cgroup's directory, absolute. */
  readonly path: string;
  /** Its path inside the hierarchy, as /proc/PID/cgroup prints it ("/x"). */
  readonly name: string;

  /** Prefer {@link resolveFreezerCgroup}, which finds the mount and checks the cgroup. */
  constructor(
    dir: string,
    readonly version: FreezerVersion,
    private readonly mount: FreezerMount,
  ) {
    this.path = dir;
    this.name = path.posix.join(mount.root, path.relative(mount.point, dir));
  }

  /** The file whose content freezes and thaws this cgroup. */
  get stateFile(): string {
    return path.join(this.path, this.version === 1 ? 'freezer.state' : 'cgroup.freeze');
  }

  /** What to write to {@link stateFile} to freeze (true) or thaw it. */
  stateValue(frozen: boolean): string {
    if (this.version === 1) return frozen ? 'FROZEN' : 'THAWED';
    return frozen ? '1' : '0';
  }

  /** "/x (/sys/fs/cgroup/freezer/x)": how messages name it. */
  toString(): string {
    return `${this.name} (${this.path})`;
  }

  private read(file: string, dir = this.path): string {
    try {
      return readFileSync(path.join(dir, file), 'utf8').trim();
    } catch (e) {
      throw new CkptError(
        'ENOENT',
        `cannot read ${path.join(dir, file)}: ${(e as Error).message} (was the cgroup removed?)`,
        { path: path.join(dir, file) },
        { cause: e },
      );
    }
  }

  /** Whether the cgroup itself is asked to be frozen (not through an ancestor). */
  selfFrozen(): boolean {
    if (this.version === 1) return this.read('freezer.self_freezing') === '1';
    return this.read('cgroup.freeze') === '1';
  }

  /** Whether every task of it is frozen now (v1 FROZEN, v2 `frozen 1`). */
  isFrozen(): boolean {
    if (this.version === 1) return this.read('freezer.state') === 'FROZEN';
    return /^frozen 1$/m.test(this.read('cgroup.events'));
  }

  /** The state as the cgroup's files say it, for messages and tests. */
  describeState(): string {
    if (this.version === 1) return this.read('freezer.state');
    const events = this.read('cgroup.events');
    return `cgroup.freeze ${this.read('cgroup.freeze')}, ${/^frozen \d/m.exec(events)?.[0] ?? 'frozen ?'}`;
  }

  /**
   * The ancestor cgroup that freezes this one, if any: ckpt cannot thaw
   * such a cgroup, and its tasks cannot reach their ptrace stops.
   */
  frozenAncestor(): string | undefined {
    if (this.version === 1) {
      if (this.read('freezer.parent_freezing') !== '1') return undefined;
      return path.dirname(this.path);
    }
    for (let dir = path.dirname(this.path); isUnder(dir, this.mount.point); ) {
      if (dir === this.mount.point) return undefined; // the root cannot be frozen
      if (existsSync(path.join(dir, 'cgroup.freeze')) && this.read('cgroup.freeze', dir) === '1')
        return dir;
      dir = path.dirname(dir);
    }
    return undefined;
  }

  /** Ask the kernel to freeze (true) or thaw the cgroup; does not wait. */
  setFrozen(frozen: boolean): void {
    const file = this.stateFile;
    try {
      writeFileSync(file, this.stateValue(frozen));
    } catch (e) {
      throw new CkptError(
        'ESYS',
        `cannot ${frozen ? 'freeze' : 'thaw'} cgroup ${this}: writing ${file} failed: ${(e as Error).message}`,
        { path: file },
        { cause: e },
      );
    }
  }

  /**
   * Freeze the cgroup and wait until every task of it is frozen.
   * @throws CkptError EAGAIN after `timeoutMs` (a task stuck in the kernel?)
   */
  freezeAndWait(timeoutMs: number): void {
    const end = Date.now() + timeoutMs;
    let kick = 0;
    for (let pause = 0.1; ; pause = Math.min(pause * 2, POLL_MAX_MS)) {
      // v1 tries to freeze each task once per write: a task that enters a
      // freezable sleep just after (a vfork parent waiting for its child)
      // stays unfrozen, and the cgroup FREEZING, until the next write.
      if (Date.now() >= kick) {
        this.setFrozen(true);
        kick = Date.now() + KICK_MS;
      }
      if (this.isFrozen()) return;
      if (Date.now() > end) {
        throw new CkptError(
          'EAGAIN',
          `cgroup ${this} did not finish freezing within ${timeoutMs} ms (${this.describeState()}): a task may be stuck in uninterruptible sleep; try again later`,
          { path: this.path },
        );
      }
      sleepMs(pause);
    }
  }

  /** This cgroup's directory and every descendant's. */
  private dirs(): string[] {
    const out: string[] = [];
    const stack = [this.path];
    for (let dir = stack.pop(); dir !== undefined; dir = stack.pop()) {
      out.push(dir);
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        if (e.isDirectory()) stack.push(path.join(dir, e.name));
      }
    }
    return out;
  }

  private listIds(file: string): number[] {
    const out: number[] = [];
    for (const dir of this.dirs()) {
      for (const l of this.read(file, dir).split('\n')) if (l) out.push(Number(l));
    }
    return out;
  }

  /** Pids of the processes in the cgroup and its descendants (which it freezes too). */
  pids(): Set<number> {
    return new Set(this.listIds('cgroup.procs'));
  }

  /** The cgroup `pid` is in, in this cgroup's hierarchy ("/y"), if readable. */
  cgroupOf(pid: number): string | undefined {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
    } catch {
      return undefined;
    }
    for (const line of text.split('\n')) {
      const m = /^(\d+):([^:]*):(.*)$/.exec(line);
      if (!m) continue;
      const [, id, controllers = '', where] = m;
      if (this.version === 2 && id === '0' && controllers === '') return where;
      if (this.version === 1 && controllers.split(',').includes('freezer')) return where;
    }
    return undefined;
  }
}

/**
 * The freezer cgroup named by `spec`, as `ckpt checkpoint --freezer` takes it:
 * - a directory under a mounted freezer hierarchy
 *   (`/sys/fs/cgroup/freezer/x`, or a cgroup2 directory such as
 *   `/sys/fs/cgroup/unified/x`): that cgroup, v1 or v2 by its mount;
 * - anything else (`x`, `x/y`, or `/x` as /proc/PID/cgroup prints it): a
 *   path inside the cgroup v1 freezer hierarchy, or inside cgroup2 where
 *   there is no v1 freezer.
 * @throws CkptError ENOENT when no such cgroup (or no freezer) exists,
 *   EINVAL for a root cgroup (which cannot be frozen)
 */
export function resolveFreezerCgroup(spec: string): FreezerCgroup {
  if (spec === '') throw new CkptError('EINVAL', 'the freezer cgroup name is empty');
  const { v1, v2 } = freezerMounts();
  const home = v1 ?? v2;
  if (!home) {
    throw new CkptError(
      'ENOENT',
      'no cgroup freezer is mounted (neither a cgroup v1 hierarchy with the freezer controller nor cgroup2); mount one, e.g. mount -t cgroup -o freezer freezer /sys/fs/cgroup/freezer',
    );
  }
  const abs = path.resolve(spec);
  const mount = path.isAbsolute(spec)
    ? [v1, v2]
        .filter((m): m is FreezerMount => m !== undefined && isUnder(abs, m.point))
        .sort((a, b) => b.point.length - a.point.length)[0]
    : undefined;
  const m = mount ?? home;
  const dir = mount ? abs : path.join(home.point, path.posix.normalize(`/${spec}`));
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    // reported below
  }
  if (!isDir) {
    const mounts = [v1 && `v1 freezer at ${v1.point}`, v2 && `cgroup2 at ${v2.point}`]
      .filter(Boolean)
      .join(', ');
    throw new CkptError(
      'ENOENT',
      `no freezer cgroup '${spec}': ${dir} does not exist (mounted: ${mounts}); create it with mkdir and move the tree into it`,
      { path: dir },
    );
  }
  const cg = new FreezerCgroup(dir, m.version, m);
  if (dir === m.point || !existsSync(cg.stateFile)) {
    throw new CkptError(
      'EINVAL',
      `cgroup ${cg} has no ${path.basename(cg.stateFile)}: a root cgroup cannot be frozen; put the tree in a child cgroup`,
      { path: dir },
    );
  }
  return cg;
}
