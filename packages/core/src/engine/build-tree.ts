/**
 * Building the restored process tree before any state is restored (the
 * userspace mktree of linux-cr): every task is created in image
 * (depth-first) order with its pid, its parent, its session and its
 * process group, and the zombies are made zombies. Each task is then a
 * frozen copy of the stub with a restorer, ready for the phases.
 *
 * Creating everything first is what makes the rest simple: a child is
 * cloned by its parent while the parent is still a bare stub copy, so it
 * inherits nothing the parent's restore would otherwise have to undo.
 */
import type { ArchSupport } from '../arch.js';
import { CkptError } from '../errors.js';
import type { FrozenTask } from '../kernel/freeze.js';
import { setSigmask } from '../kernel/ptrace.js';
import type { Logger } from '../log.js';
import {
  checkPidLevels,
  existingPidLevels,
  mountContainerProc,
  taskPids,
  wantedTids,
} from './container.js';
import { giveSessionPty } from './ctty.js';
import { enterJobStop } from './job-stop.js';
import { CLONE_NEW_CONTAINER, type TaskFactory } from './mktree.js';
import { Placeholders } from './placeholders.js';
import { TaskState } from './records.js';
import { RestoringTask } from './restoring-task.js';
import {
  type CreatedTask,
  planSessions,
  restoreGroups,
  restoreSession,
  type TreeEntry,
} from './sessions.js';
import { closeInTask, openInTask, pidSeenBy } from './task-io.js';
import { makeTimeNsForChildren, type SavedTimeNs } from './time-ns.js';
import { zombify } from './zombie.js';

/** No signal may interrupt injected syscalls; restore blocks them all (see `signals`). */
const ALL_SIGNALS = (1n << 64n) - 1n;
const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;
const CLONE_NEWPID = 0x20000000;

/** The tasks of a built tree. */
export interface BuiltTree {
  /** Restored pid of each tree entry, in image order (zombies included). */
  pids: number[];
  /** The live tasks by index in the tree; zombies are already dead. */
  tasks: Map<number, RestoringTask>;
}

function badTree(what: string, pid: number): CkptError {
  return new CkptError('EBADREC', `tree record: ${what}`, { pid });
}

/**
 * Refuse a tree that cannot be built in order: the first entry is the only
 * root, every other task follows its parent, no zombie has children or
 * threads, threads are at their process's pid-namespace levels, and exit
 * signals are signals.
 */
function checkOrder(tree: readonly TreeEntry[], nsig: number): void {
  const seen = new Map<number, TreeEntry>();
  for (const [i, e] of tree.entries()) {
    if (seen.has(e.pid)) throw badTree(`pid ${e.pid} appears twice`, e.pid);
    const parent = seen.get(e.ppid);
    if (i > 0 && !parent) {
      throw badTree(
        `pid ${e.pid} comes before its parent ${e.ppid} or has none in the image`,
        e.pid,
      );
    }
    if (parent?.state === TaskState.ZOMBIE) {
      throw badTree(`pid ${e.pid} is the child of zombie ${parent.pid}`, e.pid);
    }
    if (i === 0 && e.state === TaskState.ZOMBIE) throw badTree('the root is a zombie', e.pid);
    if (e.threads.length > 0 && e.state === TaskState.ZOMBIE) {
      throw badTree(`zombie ${e.pid} has threads`, e.pid);
    }
    if (e.threads.some((t) => t.nsTids.length !== e.nsPids.length)) {
      throw badTree(`a thread of pid ${e.pid} is not in the pid namespaces of its process`, e.pid);
    }
    if (e.exitSignal > nsig) {
      throw badTree(`pid ${e.pid} has exit signal ${e.exitSignal}, not a signal`, e.pid);
    }
    seen.set(e.pid, e);
  }
}

/**
 * Refuse time namespace indexes that are not in the tree record, and a
 * live task not born in its parent's namespace for children (see
 * time-ns.ts: restart makes each namespace where its tasks are cloned).
 */
function checkTimeNamespaces(tree: readonly TreeEntry[], count: number): void {
  const byPid = new Map(tree.map((e) => [e.pid, e]));
  for (const [i, e] of tree.entries()) {
    if (e.timeNs > count || e.timeNsOfChildren > count) {
      throw badTree(
        `pid ${e.pid} is in time namespace ${Math.max(e.timeNs, e.timeNsOfChildren)} of ${count}`,
        e.pid,
      );
    }
    if (e.state === TaskState.ZOMBIE) continue;
    const parent = byPid.get(e.ppid);
    if (i > 0 && parent && e.timeNs !== parent.timeNsOfChildren) {
      throw badTree(
        `pid ${e.pid} is not in the time namespace its parent ${e.ppid} gives its children`,
        e.pid,
      );
    }
    if (e.timeNsOfChildren !== e.timeNs && e.timeNsOfChildren === 0) {
      throw badTree(`pid ${e.pid}'s children go to ckpt's time namespace, not its own`, e.pid);
    }
  }
}

/** Make `task`'s new children go to the pid namespace whose init is `init` (setns). */
function enterPidNsForChildren(task: RestoringTask, init: RestoringTask): void {
  const local = pidSeenBy(task, init.pid);
  const fd = openInTask(task, `/proc/${local}/ns/pid`, O_RDONLY | O_CLOEXEC);
  try {
    task.sys.check(
      'setns',
      [fd, CLONE_NEWPID],
      `making pid ${task.pid}'s new children go to the pid namespace of its child ${init.pid}`,
    );
  } finally {
    closeInTask(task, fd);
  }
}

/**
 * Create every task of `tree` (see the module comment). With `noPids`,
 * tasks get any free pid. Every task created is tracked by `factory`, so
 * `factory.destroyAll()` undoes a failure midway.
 * @throws CkptError EBADREC for a malformed tree, ENOTSUP for a session or
 *   group that cannot be rebuilt, EBUSY for a pid in use
 */
export function buildTree(
  factory: TaskFactory,
  tree: readonly TreeEntry[],
  opts: {
    arch: ArchSupport;
    noPids: boolean;
    log: Logger;
    container?: boolean;
    /** The tree record's `timeNamespaces` (see time-ns.ts). */
    timeNamespaces?: readonly SavedTimeNs[];
    /** Key of the ptys made for session leaders (see ctty.ts); none made without it. */
    ttyOwner?: object;
  },
): BuiltTree {
  const { arch } = opts;
  const container = opts.container === true;
  checkOrder(tree, arch.nsig);
  const timeNamespaces = opts.timeNamespaces ?? [];
  checkTimeNamespaces(tree, timeNamespaces.length);
  checkPidLevels(tree, container);
  const plan = planSessions(tree, opts.log, { container });
  const existing = existingPidLevels(tree, container);
  const placeholders = new Placeholders(factory, arch, { noPids: opts.noPids, existing });
  const treeByPid = new Map(tree.map((e) => [e.pid, e]));
  const bySavedPid = new Map<number, RestoringTask>();
  const created: (CreatedTask & { task: RestoringTask })[] = [];
  const pidsOf = (entry: TreeEntry) =>
    taskPids(entry, treeByPid.get(entry.ppid), { container, noPids: opts.noPids, existing });
  /**
   * The session of a member whose leader is gone and who is not in its
   * parent's: it is born in a placeholder's session, as its sibling.
   */
  const placeholderSession = (entry: TreeEntry) => {
    const session = plan.sessions.get(entry.sid);
    const inParents = treeByPid.get(entry.ppid)?.sid === entry.sid;
    return session && entry.sid !== entry.pid && !inParents ? session : undefined;
  };
  /** A child created like its siblings: no placeholder session, pid namespace or sharing. */
  const plain = (entry: TreeEntry) =>
    !placeholderSession(entry) && !pidsOf(entry).newPidNs && entry.shares === 0;
  /** Children created ahead in one batch (see `TaskFactory.createChildren`), by tree index. */
  const ahead = new Map<number, FrozenTask>();
  for (const [index, entry] of tree.entries()) {
    const isRoot = created.length === 0;
    const { tids: want, newPidNs } = pidsOf(entry);
    const parent = bySavedPid.get(entry.ppid);
    if (!isRoot && !ahead.has(index) && plain(entry)) {
      // Consecutive siblings in depth-first order have no children of
      // their own: all of them are created in one round trip.
      let end = index + 1;
      while (end < tree.length && tree[end]!.ppid === entry.ppid && plain(tree[end]!)) end++;
      if (end - index > 1) {
        const run = tree.slice(index, end);
        const kids = run.map((e) => ({ tids: pidsOf(e).tids, exitSignal: e.exitSignal }));
        for (const [i, f] of factory.createChildren(parent!, kids).entries())
          ahead.set(index + i, f);
      }
    }
    let task: RestoringTask;
    const early = ahead.get(index);
    if (early) {
      // Plain: it shares nothing with its parent (sharesWithParent stays 0).
      task = new RestoringTask(early, entry.pid, arch, parent!.restorer);
    } else if (isRoot) {
      const flags = container ? CLONE_NEW_CONTAINER : 0n;
      if (entry.timeNs !== 0) {
        // Born in it: the stub that clones it makes it first.
        const what = `making the time namespace of pid ${entry.pid}`;
        makeTimeNsForChildren(
          factory.probePid(),
          (flags) => factory.unshareInStub(flags, what),
          timeNamespaces[entry.timeNs - 1]!,
        );
      }
      task = new RestoringTask(factory.create(want, entry.exitSignal, flags), entry.pid, arch);
      setSigmask(task.pid, ALL_SIGNALS); // inherited by every other task
      if (container) mountContainerProc(task);
    } else {
      const session = placeholderSession(entry);
      const viaLeader = session ? placeholders.session(session, parent!) : undefined;
      const frozen = viaLeader
        ? factory.createChild(viaLeader, want, entry.exitSignal, {
            sibling: { parent: parent!.pid },
          })
        : factory.createChild(parent!, want, entry.exitSignal, {
            newPidNs,
            share: BigInt(entry.shares),
          });
      task = new RestoringTask(frozen, entry.pid, arch, parent!.restorer);
      if (!viaLeader) task.sharesWithParent = entry.shares;
    }
    task.ckptPidfd = factory.ckptPidfd;
    bySavedPid.set(entry.pid, task);
    if (entry.timeNsOfChildren !== entry.timeNs) {
      // It made a time namespace for its children: before they exist.
      const saved = timeNamespaces[entry.timeNsOfChildren - 1]!;
      makeTimeNsForChildren(
        task.pid,
        (flags) =>
          task.sys.check(
            'unshare',
            [flags],
            `making pid ${entry.pid}'s time namespace for its children`,
          ),
        saved,
      );
    }
    const c = { entry, pid: task.pid, sys: task.sys, task };
    // Before its children exist, so that they are born in the session
    // (and with its controlling terminal).
    restoreSession(c, plan);
    if (entry.ctty > 0 && opts.ttyOwner) giveSessionPty(opts.ttyOwner, entry.ctty - 1, task);
    created.push(c);
  }
  for (const g of plan.groups.values()) placeholders.group(g, bySavedPid.get(g.member)!);
  const pidOf = (saved: number) => bySavedPid.get(saved)?.pid ?? placeholders.pidOf(saved) ?? saved;
  restoreGroups(created, pidOf, opts.log, placeholders.pids());
  placeholders.retire();
  // The other threads of each process, once it has every child (a fork
  // copies only the calling thread anyway), before it enters a pid
  // namespace for its children: clone3 refuses CLONE_THREAD then.
  for (const c of created) {
    if (c.entry.threads.length === 0) continue;
    const want = c.entry.threads.map((t) =>
      wantedTids(t.nsTids, { noPids: opts.noPids, existing }),
    );
    for (const [i, frozen] of factory.createThreads(c.task, want).entries()) {
      c.task.threadsToRestore.push({ frozen, savedTid: c.entry.threads[i]!.nsTids[0]! });
    }
  }
  // Last, as new children would go there: a task that unshared a pid
  // namespace has its later children born in it.
  for (const c of created) {
    const init = c.entry.pidNsOfChildren && bySavedPid.get(c.entry.pidNsOfChildren);
    if (init) enterPidNsForChildren(c.task, init);
  }
  const tasks = new Map<number, RestoringTask>();
  for (const [i, c] of created.entries()) {
    // Before any parent's signals are restored (see job-stop.ts).
    if (c.entry.state === TaskState.STOPPED) enterJobStop(c.pid);
    if (c.entry.state === TaskState.ZOMBIE) zombify(c.task, c.entry.exitCode, c.entry.comm);
    else tasks.set(i, c.task);
  }
  return { pids: created.map((c) => c.pid), tasks };
}
