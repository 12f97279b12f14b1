/**
 * The checkpoint driver (linux-cr's `sys_checkpoint`): collect the tree,
 * freeze it, write the header, the tree and every task through the
 * registered phases, write the tail, then leave the tree running, stopped
 * or killed. On any failure the stream ends with an error record and every
 * task is let go unharmed.
 */

import type { ArchSupport } from '../arch.js';
import { headerArchRecord } from '../codec/core-records.js';
import { EARLY_CRC_WORKER_BYTES, startChecksumWorker } from '../codec/crc.js';
import type { ByteSink } from '../codec/io.js';
import { ImageWriter } from '../codec/writer.js';
import { CheckpointCtx, type LeaveMode } from '../context.js';
import { asCkptError, CkptError } from '../errors.js';
import { CheckpointFlags } from '../flags.js';
import { hostArchId, makeHeader, writeHeader } from '../image.js';
import { type FrozenTask, unfreezeProcess } from '../kernel/freeze.js';
import { clearLeftoverPadCode, type Finish, findLeftoverParasites } from '../kernel/inject.js';
import { errno, libc } from '../kernel/libc.js';
import { getRegset, NT, PTRACE_O } from '../kernel/ptrace.js';
import type { Logger, Progress } from '../log.js';
import { type MapsEntry, type ProcStatus, readMaps, readStat, readStatus } from '../proc/index.js';
import type { Registry, TaskPhase } from '../registry.js';
import type { CheckpointTask } from '../task.js';
import { abortRseqCriticalSection } from '../taskstate/rseq.js';
import { allAtOnce } from './all-at-once.js';
import {
  checkMountNamespaces,
  checkPidLevels,
  isPidNsInit,
  pidNsOfChildren,
  refuseOutsideTracees,
} from './container.js';
import { controllingPtys } from './ctty.js';
import { type FrozenTree, freezeTree, type TreeMember } from './freeze-tree.js';
import type { FreezerCgroup } from './freezer.js';
import { checkLeaks, checkReverseLeaks } from './leaks.js';
import { TaskState, taskRecord, treeRecord } from './records.js';
import { refuseSharedWithOutsideParent, sharedWithParent } from './shared-structs.js';
import { InjectedSyscalls, ProcTaskMemory } from './syscalls.js';
import { checkpointThreads, checkThreadShares } from './threads.js';
import { treeTimeNamespaces } from './time-ns.js';

const SIGKILL = 9;
/** waitpid(2) status bit: the process dumped core. */
const WCOREFLAG = 0x80;

/** Options of {@link checkpoint}. */
export interface CheckpointOptions {
  /** Root of the tree to checkpoint. */
  pid: number;
  output: ByteSink;
  registry: Registry;
  /** Default 'running'. */
  leave?: LeaveMode;
  /**
   * With `leave: 'kill'`, wait until the tree is dead (default). A caller
   * that exits right away (the CLI) can skip the wait: tearing down a
   * gigabyte address space takes the kernel a while.
   */
  awaitKill?: boolean;
  /**
   * Freeze through this freezer cgroup (see `resolveFreezerCgroup`) rather
   * than by ptrace alone; every task of the tree must be in it, and it is
   * left as it was found (frozen or thawed).
   */
  freezer?: string | FreezerCgroup;
  uflags?: bigint;
  logger?: Logger;
  progress?: Progress;
}

/** Summary of a finished checkpoint. */
export interface CheckpointResult {
  pids: number[];
  records: number;
  bytes: number;
  pages: number;
  durations: Record<string, number>;
}

/** The arch support for this machine, or a clear error. */
export function hostArch(registry: Registry): ArchSupport {
  const id = hostArchId();
  const arch = id === undefined ? undefined : registry.arch(id);
  if (!arch) {
    throw new CkptError(
      'ENOTSUP',
      `no loaded plugin supports this machine's architecture (${process.arch})`,
    );
  }
  return arch;
}

/** A frozen task, as phases see it. */
class FrozenCheckpointTask implements CheckpointTask {
  readonly data = new Map<string, unknown>();
  readonly sys: InjectedSyscalls;
  readonly mem: ProcTaskMemory;
  readonly regs: Buffer;
  readonly stat;
  readonly status;
  /** /proc/PID/maps at freeze (ckpt's own code page aside, nothing changes it). */
  readonly maps;

  /**
   * The process's other threads (see threads.ts), frozen with it; phases
   * see them through `TaskPhase.checkpointThread`.
   */
  readonly threads: FrozenCheckpointTask[];

  /**
   * @param threads - the process's other threads, frozen (none for a
   *   thread itself)
   * @param maps - /proc/PID/maps if read already (a thread's are its process's)
   */
  constructor(
    readonly frozen: FrozenTask,
    readonly arch: ArchSupport,
    threads: readonly FrozenTask[] = [],
    maps?: MapsEntry[],
  ) {
    this.mem = new ProcTaskMemory(frozen.pid);
    this.regs = getRegset(frozen.pid, NT.PRSTATUS, arch.convention.regsSize);
    // Before anything runs in it (see rseq.ts).
    abortRseqCriticalSection(frozen.pid, this.regs, arch.convention, this.mem);
    this.stat = readStat(frozen.pid);
    this.status = readStatus(frozen.pid);
    this.maps = maps ?? readMaps(frozen.pid);
    // Kill-safe: if ckpt dies mid-call, the task resumes as it was. The
    // status tells the injector which signal can end a batch of calls,
    // the maps where the vDSO is. A task's seccomp filters are suspended
    // for ckpt's calls (see taskstate/seccomp.ts).
    this.sys = new InjectedSyscalls(frozen.pid, arch, {
      killSafe: true,
      status: this.status,
      maps: this.maps,
      ptraceOptions: this.status.seccomp !== 0 ? PTRACE_O.SUSPEND_SECCOMP : 0,
    });
    checkThreadShares(
      frozen.pid,
      threads.map((f) => f.pid),
    );
    this.threads = threads.map((f) => new FrozenCheckpointTask(f, arch, [], this.maps));
  }

  get pid(): number {
    return this.frozen.pid;
  }

  /** ckpt's scratch areas in the address space: the task's and its threads'. */
  get ownMappings(): { start: bigint; end: bigint }[] {
    return [this, ...this.threads].flatMap((t) => {
      const r = t.sys.scratchRange;
      return r ? [r] : [];
    });
  }

  /**
   * Put back everything ckpt changed in the task (registers, scratch), in
   * two steps (see `allAtOnce`).
   */
  startRelease(): Finish<void> {
    let finish: Finish<void>;
    try {
      finish = this.sys.startClose();
    } catch (e) {
      this.mem.close();
      throw e;
    }
    return () => {
      try {
        finish();
      } finally {
        this.mem.close();
      }
    };
  }
}

/**
 * Checkpoint the tree rooted at `opts.pid` into `opts.output`. Synchronous:
 * ptrace needs every call from one thread, and the image is one stream.
 */
export function checkpoint(opts: CheckpointOptions): CheckpointResult {
  const { registry } = opts;
  const arch = hostArch(registry);
  const leave = opts.leave ?? 'running';
  const writer = new ImageWriter(opts.output);
  let headerWritten = false;
  /** End the image with `err`, so that reading it says why it is incomplete. */
  const fail = (e: unknown, uflags = opts.uflags ?? 0n): CkptError => {
    const err = asCkptError(e, 'checkpoint');
    try {
      if (!headerWritten)
        writeHeader(writer, makeHeader({ archId: arch.archId, nsig: arch.nsig, uflags }));
      headerWritten = true;
      writer.abort(err.code, err.message, err.context.pid);
    } catch {
      // The output itself failed; the error thrown says why.
    }
    return err;
  };
  let uflags: bigint;
  try {
    uflags = containerFlags(opts.pid, opts.uflags ?? 0n);
  } catch (e) {
    throw fail(e);
  }
  const ctx = new CheckpointCtx(writer, {
    registry,
    uflags,
    logger: opts.logger,
    progress: opts.progress,
  });
  ctx.leave = leave;

  const t0 = performance.now();
  let frozenTree: FrozenTree;
  let members: TreeMember[];
  try {
    frozenTree = ctx.timed('freeze', () =>
      freezeTree(opts.pid, { freezer: opts.freezer, log: ctx.log }),
    );
    members = frozenTree.members;
  } catch (e) {
    ctx.dispose();
    throw fail(e, uflags);
  }
  const tree = members.map((m) => m.info.pid);
  ctx.pids = tree;

  // Zombies have no state to save beyond their tree entry and task record.
  const tasks: FrozenCheckpointTask[] = [];
  const byPid = new Map<number, FrozenCheckpointTask>();
  try {
    for (const m of members) {
      if (m.kind !== 'live') continue;
      const t = new FrozenCheckpointTask(m.frozen, arch, m.threads);
      tasks.push(t);
      byPid.set(t.pid, t);
    }
    const zombies = new Map(
      members.filter((m) => m.kind === 'zombie').map((m) => [m.info.pid, readZombie(m.info.pid)]),
    );
    for (const t of tasks) removeLeftovers(t, ctx.log);
    if (tasks.some(hasLargeWritableMapping)) startChecksumWorker();
    const isContainer = (uflags & CheckpointFlags.CONTAINER) !== 0n;
    const identity = (pid: number) => {
      const t = byPid.get(pid);
      if (t) {
        const state = t.frozen.wasStopped ? TaskState.STOPPED : TaskState.RUNNING;
        return { stat: t.stat, status: t.status, state, exitCode: 0 };
      }
      return { ...zombies.get(pid)!, state: TaskState.ZOMBIE };
    };
    // The tree entries first: what restart could not rebuild (pid levels,
    // structures shared with a parent, mount namespaces) is refused before
    // anything is saved.
    const timeNs = treeTimeNamespaces(
      tasks.map((t) => ({ pid: t.pid, ppid: t.status.ppid })),
      ctx.namespaces,
    );
    const entries = tree.map((pid) => {
      const { stat, status, state, exitCode } = identity(pid);
      return {
        pid,
        tgid: status.tgid,
        ppid: status.ppid,
        pgid: stat.pgrp,
        sid: stat.session,
        exitSignal: Math.max(stat.exitSignal, 0),
        state,
        exitCode,
        comm: stat.comm.slice(0, 16),
        nsPids: status.nsPid,
        nsPgid: status.nsPgid.at(-1) ?? stat.pgrp,
        nsSid: status.nsSid.at(-1) ?? stat.session,
        pidNsOfChildren: byPid.has(pid) ? pidNsOfChildren(pid, tree, ctx.namespaces) : 0,
        shares: byPid.has(pid) && byPid.has(status.ppid) ? sharedWithParent(pid, status.ppid) : 0,
        threads: (byPid.get(pid)?.threads ?? []).map((th) => ({ nsTids: th.status.nsPid })),
        ctty: 0,
        timeNs: timeNs.of.get(pid)?.timeNs ?? 0,
        timeNsOfChildren: timeNs.of.get(pid)?.timeNsOfChildren ?? 0,
      };
    });
    const root = byPid.get(tree[0]!);
    if (root) refuseSharedWithOutsideParent(root.pid, root.status.ppid);
    const cttys = controllingPtys(entries, (pid) => byPid.get(pid)?.stat.ttyNr);
    for (const [i, e] of entries.entries()) e.ctty = cttys[i]!;
    checkPidLevels(entries, isContainer);
    checkMountNamespaces(
      tasks.map((t) => t.pid),
      ctx.namespaces,
      isContainer,
    );
    refuseOutsideTracees(tasks.flatMap((t) => [t.pid, ...t.threads.map((th) => th.pid)]));
    // Before any state is saved: nothing outside may share the tree's objects.
    // The maps read at freeze: the frozen tree has not changed them.
    const objects = ctx.timed('leaks', () =>
      checkLeaks(tree, isContainer, ctx.log, (pid) => byPid.get(pid)?.maps, ctx.namespaces),
    );
    const phases = registry.phases();
    ctx.timed('prepare', () => prepareAll(ctx, tasks, phases));
    writeHeader(writer, makeHeader({ archId: arch.archId, nsig: arch.nsig, uflags }));
    headerWritten = true;
    writer.write(headerArchRecord, { archId: arch.archId, ...arch.headerArch(tasks[0]!.pid) });
    writer.write(treeRecord, { tasks: entries, timeNamespaces: timeNs.list });
    for (const [i, pid] of tree.entries()) {
      ctx.active = i;
      const { stat, state, exitCode } = identity(pid);
      writer.write(taskRecord, {
        pid,
        comm: stat.comm.slice(0, 16),
        state,
        exitCode,
        flags: stat.flags >>> 0,
        frozenAtNs: process.hrtime.bigint(),
      });
      const task = byPid.get(pid);
      if (!task) continue;
      for (const phase of phases) {
        ctx.inPhase(phase.name, `phase ${phase.name}`, task.pid, () => phase.checkpoint(ctx, task));
      }
      checkpointThreads(ctx, task, task.threads, phases);
      ctx.stats.tasks++;
    }
    ctx.timed('leaks', () => checkReverseLeaks(tree, objects, isContainer, ctx.log));
    writer.finish();
    // The image is complete: it may replace an older one (before the tree
    // is killed: a failure here still leaves it running), and works
    // deferred until then run (their destructors run if it fails).
    opts.output.commit?.();
    ctx.deferqueue.run();
    ctx.stats.bytes = writer.offset;
  } catch (e) {
    const err = fail(e, uflags);
    ctx.setError(err);
    releaseAll(tasks, ctx.log);
    frozenTree.letGo(() => {
      for (const m of members) {
        if (m.kind === 'live') unfreezeQuietly(m.frozen, m.threads, 'running', ctx.log);
      }
    });
    throw err;
  } finally {
    ctx.dispose();
  }
  // The image is complete: only now may the tree be killed.
  // Undo ckpt's changes in every task before any is let go: a cgroup the
  // user had frozen is frozen again in between, and frozen tasks cannot
  // run injected syscalls.
  releaseAll(tasks, ctx.log);
  frozenTree.letGo(() => {
    for (const t of tasks) {
      if (leave === 'kill' && opts.awaitKill === false) killWithoutWaiting(t, ctx.log);
      else
        unfreezeQuietly(
          t.frozen,
          t.threads.map((th) => th.frozen),
          leave,
          ctx.log,
        );
    }
  }, leave === 'kill');
  ctx.stats.durations.frozen = performance.now() - t0;
  return {
    pids: tree,
    records: writer.records,
    bytes: writer.offset,
    pages: ctx.stats.pages,
    durations: ctx.stats.durations,
  };
}

/**
 * The uflags of a checkpoint of `pid`: CONTAINER when it is the init of a
 * pid namespace below ckpt's (a whole container), unless the caller asked
 * for SUBTREE. Asking for CONTAINER when it is not an init is an error.
 * @throws CkptError EINVAL for --container on a task that is not an init,
 *   or for a thread id
 */
function containerFlags(pid: number, uflags: bigint): bigint {
  const { CONTAINER, SUBTREE } = CheckpointFlags;
  if ((uflags & CONTAINER) !== 0n && (uflags & SUBTREE) !== 0n) {
    throw new CkptError(
      'EINVAL',
      'a checkpoint is either of a container or of a subtree, not both',
    );
  }
  let status: ProcStatus;
  try {
    status = readStatus(pid);
  } catch (e) {
    throw asCkptError(e, 'checkpoint', pid);
  }
  if (status.tgid !== pid) {
    throw new CkptError(
      'EINVAL',
      `${pid} is a thread of process ${status.tgid}, not a process; checkpoint pid ${status.tgid} (its threads come with it)`,
      { pid },
    );
  }
  const nsPids = status.nsPid;
  const init = isPidNsInit(nsPids);
  if ((uflags & CONTAINER) !== 0n && !init) {
    throw new CkptError(
      'EINVAL',
      `pid ${pid} is not the init of a pid namespace (NSpid ${nsPids.join(' ')}), so it is not a container; checkpoint it with --subtree`,
      { pid },
    );
  }
  if ((uflags & SUBTREE) !== 0n || !init) return uflags;
  return uflags | CONTAINER;
}

/** What a zombie leaves: its /proc stat and status, and its exit status. */
function readZombie(pid: number) {
  const stat = readStat(pid);
  // Restart recreates the status by exiting or by a signal; a core dump it
  // cannot (and must not) produce again.
  if (stat.exitCode & WCOREFLAG) {
    throw new CkptError(
      'ENOTSUP',
      `zombie pid ${pid} died of signal ${stat.exitCode & 0x7f} with a core dump; such a zombie cannot be restored`,
      { pid },
    );
  }
  return { stat, status: readStatus(pid), exitCode: stat.exitCode };
}

/** Remove code pages an earlier, killed ckpt left in the task. */
function removeLeftovers(task: FrozenCheckpointTask, log: Logger): void {
  const conv = task.arch.convention;
  const ips = [task, ...task.threads].map((t) => conv.getIp(t.regs));
  if (clearLeftoverPadCode(task.pid, task.maps, ips, conv.syscallInsn)) {
    log.info(`pid ${task.pid}: cleared ckpt code a killed checkpoint left in the vDSO's padding`);
  }
  for (const r of findLeftoverParasites(task.pid, task.maps)) {
    log.info(
      `pid ${task.pid}: removing ckpt code page left by a killed checkpoint at 0x${r.start.toString(16)}`,
    );
    task.sys.check('munmap', [r.start, r.end - r.start], 'removing a leftover ckpt code page');
  }
}

function killWithoutWaiting(task: FrozenCheckpointTask, log: Logger): void {
  if (libc().kill(task.pid, SIGKILL) === -1)
    log.warn(`pid ${task.pid}: could not kill it (errno ${errno()})`);
}

/**
 * Whether `task` maps a writable region of {@link EARLY_CRC_WORKER_BYTES}
 * or more: its pages may fill the image with chunks the checksum worker sums.
 */
function hasLargeWritableMapping(task: FrozenCheckpointTask): boolean {
  return task.maps.some((m) => m.write && m.end - m.start >= BigInt(EARLY_CRC_WORKER_BYTES));
}

/**
 * Give every task ckpt's code page, then let every phase post the injected
 * reads it needs (`TaskPhase.prepare`) and run them: two round trips per
 * task, all tasks at once.
 */
function prepareAll(
  ctx: CheckpointCtx,
  tasks: readonly FrozenCheckpointTask[],
  phases: readonly TaskPhase[],
): void {
  inRounds(tasks, (t) => t.sys.startSetUp());
  for (const t of tasks) {
    for (const phase of phases) {
      try {
        phase.prepare?.(ctx, t);
        for (const th of t.threads) phase.prepareThread?.(ctx, th, t);
      } catch (e) {
        throw asCkptError(e, `phase ${phase.name}`, t.pid);
      }
    }
  }
  allAtOnce(
    tasks.flatMap((t) => [t, ...t.threads]),
    (t) => t.sys.startPosted(),
  );
}

/**
 * A round trip in every task and thread: all processes at once, the
 * threads of each one after another. Mapping and unmapping ckpt's code
 * page runs from the vDSO's padding, which the threads of a process share
 * (one vDSO): one at a time, each finds it free (see `startPadCall`).
 */
function inRounds(
  tasks: readonly FrozenCheckpointTask[],
  start: (t: FrozenCheckpointTask) => Finish<unknown> | undefined,
  onError?: (t: FrozenCheckpointTask, e: unknown) => void,
): void {
  const rounds = Math.max(0, ...tasks.map((t) => t.threads.length)) + 1;
  for (let k = 0; k < rounds; k++) {
    const members = tasks.flatMap((t) => (k === 0 ? [t] : t.threads.slice(k - 1, k)));
    allAtOnce(members, start, onError);
  }
}

/** Undo ckpt's changes in every task and thread; one that refuses is a warning. */
function releaseAll(tasks: readonly FrozenCheckpointTask[], log: Logger): void {
  inRounds(
    tasks,
    (t) => t.startRelease(),
    (t, e) => log.warn(`pid ${t.pid}: could not undo ckpt's changes: ${(e as Error).message}`),
  );
}

function unfreezeQuietly(
  frozen: FrozenTask,
  threads: readonly FrozenTask[],
  leave: LeaveMode,
  log: Logger,
): void {
  try {
    unfreezeProcess(frozen, threads, leave === 'running' ? 'resume' : leave);
  } catch (e) {
    log.warn(`pid ${frozen.pid}: could not release it: ${(e as Error).message}`);
  }
}
