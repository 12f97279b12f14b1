/**
 * Freezing a whole subtree for checkpoint (the seed's "every task frozen
 * before any state is saved"). Tasks are frozen one by one while the others
 * still run, so a task may fork, exit or be reparented in between: the tree
 * is rescanned until one scan finds exactly the frozen tasks. A frozen task
 * cannot fork or reap, so once that holds nothing can change any more.
 *
 * Zombies cannot be seized (ptrace refuses a task that has exited); they
 * need no freezing either: once their parent is frozen nobody can reap
 * them, and all their state is in /proc/PID/stat.
 */
import { existsSync, readFileSync } from 'node:fs';
import { CkptError } from '../errors.js';
import {
  awaitFrozen,
  type FrozenTask,
  freezeTask,
  type SeizedTask,
  seizeTask,
  unfreezeTask,
} from '../kernel/freeze.js';
import { KCMP, kcmp } from '../kernel/kcmp.js';
import { type Logger, silentLogger } from '../log.js';
import { collectSubtree, type ProcessInfo, readStat, threadsOf } from '../proc/index.js';
import { frozenCgroupOf } from '../taskstate/cgroups.js';
import { type FreezerCgroup, resolveFreezerCgroup } from './freezer.js';
import { FreezerGuard } from './freezer-guard.js';

/** How many scans a tree may keep changing before the checkpoint gives up. */
const MAX_ROUNDS = 100;

/**
 * One process of a frozen tree, in depth-first order: a live one with its
 * leader and every other thread held, or a zombie.
 */
export type TreeMember =
  | { kind: 'live'; info: ProcessInfo; frozen: FrozenTask; threads: FrozenTask[] }
  | { kind: 'zombie'; info: ProcessInfo };

function isZombieState(state: string): boolean {
  return state === 'Z' || state === 'X';
}

/** Whether `pid` exited or became a zombie (why freezing it may have failed). */
function isGone(pid: number): boolean {
  try {
    return isZombieState(readStat(pid).state);
  } catch {
    return true;
  }
}

/**
 * A zombie whose other threads still run: its main thread called
 * pthread_exit (or exited by itself). /proc shows such a process as a
 * zombie; ckpt cannot recreate a thread group without its leader.
 * Returns false when the zombie is gone (reaped since the scan).
 */
function refuseHeadlessGroup(pid: number): boolean {
  let threads: number[];
  try {
    threads = threadsOf(pid);
  } catch (e) {
    // Reaped meanwhile by its parent (not frozen yet).
    if (e instanceof CkptError && e.code === 'ESRCH') return false;
    throw e;
  }
  if (threads.length > 1) {
    throw new CkptError(
      'ENOTSUP',
      `pid ${pid}: its main thread has exited while ${threads.length - 1} other thread(s) still run; such a process cannot be checkpointed`,
      { pid },
    );
  }
  return true;
}

/**
 * Freeze every thread of the process `pid` (its leader frozen already)
 * that `frozen` does not hold yet, until a reading of /proc/PID/task finds
 * no new one: a thread not frozen yet may start another. Threads that
 * exit before they are frozen are skipped. Returns the process's thread
 * ids other than the leader, ascending, and whether any was frozen now.
 */
function freezeThreads(
  pid: number,
  frozen: Map<number, FrozenTask>,
): { threads: number[]; changed: boolean } {
  let changed = false;
  for (let round = 0; round < MAX_ROUNDS; round++) {
    const threads = threadsOf(pid).filter((tid) => tid !== pid);
    const fresh = threads.filter((tid) => !frozen.has(tid));
    if (fresh.length === 0) return { threads, changed };
    changed = true;
    for (const tid of fresh) {
      refuseIoThread(pid, tid);
      try {
        frozen.set(tid, freezeTask(tid));
      } catch (e) {
        if (existsSync(`/proc/${pid}/task/${tid}`)) throw e;
      }
    }
  }
  throw new CkptError('EAGAIN', `pid ${pid} kept starting threads while being frozen; try again`, {
    pid,
  });
}

/** PF_IO_WORKER: a kernel thread of io_uring (iou-sqp-*, iou-wrk-*), listed among the process's threads. */
const PF_IO_WORKER = 0x10;

/**
 * The error for a task that did not stop (`e`, EAGAIN): when it is in a
 * frozen cgroup, one that says so and how to checkpoint it.
 */
function inFrozenCgroup(pid: number, e: unknown): unknown {
  if (!(e instanceof CkptError) || e.code !== 'EAGAIN') return e;
  return frozenCgroupError(pid, e) ?? e;
}

/** An error for `pid` when it is in a frozen cgroup: it cannot stop there (see `--freezer`). */
function frozenCgroupError(pid: number, cause?: unknown): CkptError | undefined {
  const cgroup = frozenCgroupOf(pid);
  if (!cgroup) return undefined;
  return new CkptError(
    'EAGAIN',
    `pid ${pid} is in frozen cgroup ${cgroup} and cannot stop for ckpt there; checkpoint it through that cgroup (--freezer ${cgroup.slice(cgroup.indexOf(':') + 1)}), or thaw it`,
    { pid },
    cause === undefined ? undefined : { cause },
  );
}

/**
 * Refuse thread `tid` of `pid` if it is an io_uring kernel thread: it never
 * runs user code, so it could not run ckpt's injected calls (ckpt would
 * wait for it for ever), and restart could not make one.
 */
function refuseIoThread(pid: number, tid: number): void {
  let stat: ReturnType<typeof readStat>;
  try {
    stat = readStat(pid, tid);
  } catch {
    return; // gone
  }
  if (stat.flags & PF_IO_WORKER) {
    throw new CkptError(
      'ENOTSUP',
      `pid ${pid} thread ${tid} (${stat.comm}) is an io_uring kernel thread: processes that use io_uring are not supported yet`,
      { pid },
    );
  }
}

/** Options of {@link freezeTree}. */
export interface FreezeTreeOptions {
  /**
   * Freeze through this freezer cgroup (a {@link resolveFreezerCgroup}
   * spec, or one resolved already); every task of the tree must be in it.
   */
  freezer?: string | FreezerCgroup;
  log?: Logger;
}

/** A frozen tree, and how to let it go. */
export interface FrozenTree {
  /** Depth-first, every live task held in a ptrace stop. */
  members: TreeMember[];
  /** The freezer cgroup it was frozen through, if any. */
  cgroup?: FreezerCgroup;
  /**
   * Let the tree go: `releaseTree` must release (resume, stop or kill)
   * every live member. Around it, a cgroup that was frozen before ckpt
   * touched it is frozen again (before the tasks are let go, or after they
   * are killed), and the cgroup's tasks outside the tree are let go.
   * Never throws for the cgroup: problems are logged.
   */
  letGo(releaseTree: () => void, killsTree?: boolean): void;
}

/**
 * Freeze `rootPid` and all its descendants, with ptrace alone or through a
 * freezer cgroup ({@link FreezeTreeOptions.freezer}). Returns the tree
 * depth-first, each live task frozen. On failure every task frozen so far
 * is let go and the cgroup is as it was.
 * @throws CkptError ESRCH if the root is gone or is a zombie, ENOTSUP for a
 *   zombie leader with live threads, EAGAIN if the tree never stops
 *   changing, EINVAL for a task outside the freezer cgroup
 */
export function freezeTree(rootPid: number, options: FreezeTreeOptions = {}): FrozenTree {
  const log = options.log ?? silentLogger;
  if (options.freezer !== undefined) {
    const cg =
      typeof options.freezer === 'string' ? resolveFreezerCgroup(options.freezer) : options.freezer;
    return freezeInCgroup(rootPid, cg, log);
  }
  // Said at once for the root, rather than after the wait for its stop.
  const stuck = frozenCgroupError(rootPid);
  if (stuck) throw stuck;
  const frozen = new Map<number, FrozenTask>();
  try {
    return { members: scanUntilStable(rootPid, frozen), letGo: (releaseTree) => releaseTree() };
  } catch (e) {
    for (const f of frozen.values()) letGoQuietly(f, log);
    throw e;
  }
}

function letGoQuietly(f: FrozenTask, log: Logger): void {
  try {
    unfreezeTask(f, 'resume');
  } catch (e) {
    // Gone already, most likely: nothing to let go.
    log.debug(`pid ${f.pid}: could not release it: ${(e as Error).message}`);
  }
}

function rootOf(rootPid: number, procs: ProcessInfo[]): ProcessInfo {
  const root = procs[0]!;
  // ckpt cannot trace (or freeze and go on) itself. (The tree of init
  // holds it too: init's own refusal says more.)
  if (rootPid !== 1 && procs.some((p) => p.pid === process.pid)) {
    throw new CkptError(
      'EINVAL',
      `ckpt itself (pid ${process.pid}) is in the tree of pid ${rootPid}; run ckpt from outside it (another shell, or start the workload with 'ckpt run')`,
      { pid: rootPid },
    );
  }
  if (isZombieState(root.state)) {
    throw new CkptError('ESRCH', `pid ${rootPid} is a zombie: there is nothing to checkpoint`, {
      pid: rootPid,
    });
  }
  return root;
}

/**
 * Freeze tasks, re-scanning the tree until one scan finds exactly the
 * frozen tasks. `frozen` (pid → task) may hold tasks frozen already; it
 * holds every frozen task when this returns or throws (the caller lets
 * them go on failure).
 */
function scanUntilStable(rootPid: number, frozen: Map<number, FrozenTask>): TreeMember[] {
  for (let round = 0; round < MAX_ROUNDS; round++) {
    const procs = collectSubtree(rootPid);
    rootOf(rootPid, procs);
    let changed = false;
    /** The threads of each live process other than its leader, as found now. */
    const threadsByPid = new Map<number, number[]>();
    for (const p of procs) {
      if (isZombieState(p.state)) {
        if (frozen.has(p.pid)) {
          throw new CkptError('ESRCH', `pid ${p.pid} was killed during the checkpoint`, {
            pid: p.pid,
          });
        }
        // Reaped since the scan: scan again.
        if (!refuseHeadlessGroup(p.pid)) changed = true;
        continue;
      }
      if (!frozen.has(p.pid)) {
        changed = true;
        try {
          frozen.set(p.pid, freezeTask(p.pid));
        } catch (e) {
          // The next scan sees it gone or as a zombie.
          if (p.pid !== rootPid && isGone(p.pid)) continue;
          throw inFrozenCgroup(p.pid, e);
        }
      }
      const t = freezeThreads(p.pid, frozen);
      threadsByPid.set(p.pid, t.threads);
      changed ||= t.changed;
    }
    // A task whose parent exited meanwhile was reparented out of the tree;
    // a frozen thread killed meanwhile (another called exit_group or exec)
    // is gone.
    const inTree = new Set(procs.map((p) => p.pid));
    for (const threads of threadsByPid.values()) for (const tid of threads) inTree.add(tid);
    for (const [pid, f] of frozen) {
      if (inTree.has(pid)) continue;
      frozen.delete(pid);
      letGoQuietly(f, silentLogger);
      changed = true;
    }
    if (!changed) {
      return procs.map((info) => {
        const f = frozen.get(info.pid);
        if (!f) return { kind: 'zombie', info };
        const threads = (threadsByPid.get(info.pid) ?? []).map((tid) => frozen.get(tid)!);
        return { kind: 'live', info, frozen: f, threads };
      });
    }
  }
  throw new CkptError(
    'EAGAIN',
    `the tree of pid ${rootPid} kept changing (forks or exits) while being frozen; try again`,
    { pid: rootPid },
  );
}

/** How long a cgroup may take to freeze. */
const CGROUP_FREEZE_TIMEOUT_MS = 10_000;

/**
 * Freezing through a freezer cgroup, CRIU's way: freeze the cgroup, which
 * stops every task at once and so makes the task set stable (nothing
 * forks), collect the tree and check it is all inside the cgroup, seize
 * every task with a pending PTRACE_INTERRUPT while frozen, then thaw the
 * cgroup: each task leaves the freezer straight into its ptrace stop, and
 * stays there until the image is complete.
 *
 * Why thaw, rather than keep the cgroup frozen for the whole checkpoint (the
 * seed's CHECKPOINTING state)? Injected syscalls need the tasks to run,
 * which a frozen task cannot. And a ptrace stop is the safer hold: a thaw
 * written by someone else meanwhile changes nothing (the tasks stay in
 * their ptrace stops), and if ckpt dies the kernel lets every task go,
 * whereas a cgroup left frozen by a dead ckpt would stay frozen. The one
 * window where that could happen, between the freeze and the thaw, is
 * covered by a {@link FreezerGuard}, which also re-freezes a cgroup the
 * user had frozen, should ckpt die after thawing it.
 *
 * A cgroup the user had frozen is frozen again at the end (as the seed's
 * cgroup goes back from CHECKPOINTING to FROZEN, whatever was written to
 * it meanwhile), and its tasks outside the tree are held in ptrace stops
 * too while it is thawed, so that none of them runs either.
 */
function freezeInCgroup(rootPid: number, cg: FreezerCgroup, log: Logger): FrozenTree {
  const ancestor = cg.frozenAncestor();
  if (ancestor !== undefined) {
    throw new CkptError(
      'EBUSY',
      `cgroup ${cg} is frozen through its ancestor ${ancestor}, which ckpt cannot thaw to checkpoint its tasks; thaw the ancestor, or name it with --freezer`,
      { path: cg.path },
    );
  }
  if (cg.pids().has(process.pid)) {
    throw new CkptError(
      'EINVAL',
      `ckpt itself (pid ${process.pid}) is in cgroup ${cg}, which it would freeze; run ckpt from outside the cgroup`,
      { pid: process.pid, path: cg.path },
    );
  }
  const wasFrozen = cg.selfFrozen();
  const guard = FreezerGuard.arm(cg, wasFrozen);
  const held = new Map<number, FrozenTask>();
  const bystanders: FrozenTask[] = [];
  let thawed = false;
  /** Back to the state before ckpt: frozen again, or thawed if ckpt froze it. */
  const restoreState = () => {
    const frozenNow = !thawed;
    if (frozenNow === wasFrozen) return;
    try {
      cg.setFrozen(wasFrozen);
    } catch (e) {
      log.warn((e as Error).message);
    }
  };
  try {
    cg.freezeAndWait(CGROUP_FREEZE_TIMEOUT_MS);
    // Frozen: nothing forks or exits, one scan is the whole tree.
    const procs = collectSubtree(rootPid);
    rootOf(rootPid, procs);
    const live = procs.filter((p) => !isZombieState(p.state));
    refuseOutside(cg, rootPid, live);
    for (const p of procs) if (isZombieState(p.state)) refuseHeadlessGroup(p.pid);
    // Every thread of the tree's processes is seized too.
    for (const p of live) for (const tid of threadsOf(p.pid)) refuseIoThread(p.pid, tid);
    const inTree = new Set(live.flatMap((p) => threadsOf(p.pid)));
    const treePids = new Set(procs.map((p) => p.pid));
    const others = wasFrozen
      ? [...cg.pids()].filter((pid) => !treePids.has(pid)).flatMap((pid) => threadsOf(pid))
      : [];
    // Tasks that cannot be seized while frozen are frozen by ptrace alone
    // once the cgroup is thawed (those of the tree by the rescan below).
    const later: number[] = [];
    const seized: SeizedTask[] = [];
    let failure: unknown;
    try {
      for (const pid of [...inTree, ...others]) {
        if (seizableWhileFrozen(pid)) seized.push(seizeTask(pid));
        else if (!inTree.has(pid)) later.push(pid);
      }
    } catch (e) {
      failure = e;
    }
    // Even after a failure: a seized task must reach its stop to be let go.
    cg.setFrozen(false);
    thawed = true;
    for (const s of seized) {
      try {
        const f = awaitFrozen(s);
        if (inTree.has(s.pid)) held.set(s.pid, f);
        else bystanders.push(f);
      } catch (e) {
        failure ??= e;
      }
    }
    try {
      if (failure === undefined) for (const tid of later) bystanders.push(freezeTask(tid));
    } catch (e) {
      failure = e;
    }
    if (failure !== undefined) throw failure;
    // Someone else's thaw between our freeze and the seizes may have let a
    // task fork or exit: the usual rescan settles that.
    const members = scanUntilStable(rootPid, held);
    refuseOutside(
      cg,
      rootPid,
      members.filter((m) => m.kind === 'live').map((m) => m.info),
    );
    log.info(
      `froze the tree of pid ${rootPid} through cgroup ${cg} (it was ${wasFrozen ? 'frozen' : 'thawed'})`,
    );
    return {
      members,
      cgroup: cg,
      letGo(releaseTree, killsTree = false) {
        try {
          // Frozen again before the tasks leave their ptrace stops (a traced
          // task freezes at once); killed tasks must die first: a frozen
          // task does not act on SIGKILL until thawed.
          if (!killsTree) restoreState();
          releaseTree();
          if (killsTree) restoreState();
        } finally {
          for (const f of bystanders) letGoQuietly(f, log);
          guard.disarm();
        }
      },
    };
  } catch (e) {
    restoreState();
    for (const f of [...held.values(), ...bystanders]) letGoQuietly(f, log);
    guard.disarm();
    throw e;
  }
}

/**
 * Whether a task of a frozen cgroup can be seized and held right away:
 * - not a job-control-stopped task: seizing one waits in the kernel until
 *   it moves from its stop to a ptrace stop, which a frozen task cannot
 *   do (ckpt would hang). It is told by its wchan, `do_signal_stop`: a v1
 *   freezer shows every frozen task as 'D'. An unknown wchan counts as
 *   stopped.
 * - not a vfork child before its exec (it shares its parent's address
 *   space): held, it would never let its parent, which waits for it,
 *   reach a stop.
 */
function seizableWhileFrozen(tid: number): boolean {
  let wchan: string;
  try {
    wchan = readFileSync(`/proc/${tid}/wchan`, 'utf8').trim();
  } catch {
    return false;
  }
  if (wchan === '' || wchan === '0' || wchan === 'do_signal_stop') return false;
  try {
    const parent = readStat(tid).ppid;
    return !(parent > 0 && kcmp(tid, parent, KCMP.VM) === 0);
  } catch {
    return true; // no address space to compare: not a vfork child
  }
}

/**
 * Every live task of the tree must be in the cgroup (or a descendant,
 * which it freezes too): one outside would not be frozen.
 * @throws CkptError EINVAL naming the first task outside
 */
function refuseOutside(cg: FreezerCgroup, rootPid: number, live: ProcessInfo[]): void {
  const inside = cg.pids();
  const out = live.find((p) => !inside.has(p.pid));
  if (!out) return;
  const where = cg.cgroupOf(out.pid);
  throw new CkptError(
    'EINVAL',
    `pid ${out.pid} (${out.comm}) of the tree of pid ${rootPid} is not in freezer cgroup ${cg}${where ? ` but in ${where}` : ''}; move it in (echo ${out.pid} > ${cg.path}/cgroup.procs) or checkpoint without --freezer. Nothing was saved`,
    { pid: out.pid, path: cg.path },
  );
}
