/**
 * Placeholder leaders for sessions and process groups whose leader has
 * exited (CRIU calls them helpers). Only a leader can create a session or
 * a group, and its id is the leader's pid; so restart creates a short-lived
 * task with that pid which makes the session (setsid) or the group
 * (setpgid(0, 0)), lets the members in, and ends before anything runs.
 *
 * - A session placeholder is created as a child of the parent the session's
 *   topmost members have now (init, which adopted them when the leader
 *   exited). It calls setsid and then creates those members itself, with
 *   CLONE_PARENT, so they are born in its session and group but are its
 *   parent's children, as they were.
 * - A group placeholder is created by a member of the group (so it is in
 *   the group's session) with exit signal 0, and calls setpgid(0, 0); the
 *   members join as every task does (see restoreGroups).
 *
 * Ending one leaves the session or group to its members. The placeholder is
 * killed, collected by ckpt (its tracer) and then by its parent, with a
 * wait4 injected there; the SIGCHLD a session placeholder sends its parent
 * is discarded by the parent's `signals` phase like any signal that arrives
 * during restore.
 */
import type { ArchSupport } from '../arch.js';
import { libc } from '../kernel/libc.js';
import { reap } from '../kernel/wait.js';
import type { TaskFactory } from './mktree.js';
import { RestoringTask } from './restoring-task.js';
import type { GroupPlaceholder, SessionPlaceholder } from './sessions.js';
import { pidSeenBy } from './task-io.js';

const SIGKILL = 9;
const __WALL = 0x40000000;

interface Placeholder {
  task: RestoringTask;
  /** The task that must collect it once it has ended. */
  parent: RestoringTask;
}

/** The placeholders of one restart, by the saved id they stand for. */
export class Placeholders {
  private readonly byId = new Map<number, Placeholder>();

  constructor(
    private readonly factory: TaskFactory,
    private readonly arch: ArchSupport,
    private readonly opts: { noPids: boolean; existing: number },
  ) {}

  /**
   * Pids to ask clone3 for: the saved id in ckpt's namespace and in the
   * members' own; in between (nested namespaces), any. With `noPids`, only
   * the members' own, in a namespace the restart creates.
   */
  private tids(id: number, nsId: number, levels: number): number[] | undefined {
    if (this.opts.noPids) return levels > this.opts.existing ? [nsId] : undefined;
    return levels === 1 ? [id] : levels === 2 ? [nsId, id] : [nsId];
  }

  /** Pids of the placeholders that exist now. */
  pids(): number[] {
    return [...this.byId.values()].map((p) => p.task.pid);
  }

  /** Restored pid of the placeholder standing for saved pid `id`, if there is one. */
  pidOf(id: number): number | undefined {
    return this.byId.get(id)?.task.pid;
  }

  /**
   * The leader of session `plan.sid`, created on first use as a child of
   * `parent` (the restored task with saved pid `plan.parent`); members are
   * then created by it as its siblings.
   */
  session(plan: SessionPlaceholder, parent: RestoringTask): RestoringTask {
    const have = this.byId.get(plan.sid);
    if (have) return have.task;
    const frozen = this.factory.createChild(
      parent,
      this.tids(plan.sid, plan.nsSid, plan.levels),
      plan.exitSignal,
    );
    const task = new RestoringTask(frozen, plan.sid, this.arch, parent.restorer);
    this.byId.set(plan.sid, { task, parent });
    task.sys.check('setsid', [], `making placeholder pid ${task.pid} lead session ${plan.sid}`);
    return task;
  }

  /** Create the leader of group `plan.pgid` as a child of `member`, one of its members. */
  group(plan: GroupPlaceholder, member: RestoringTask): RestoringTask {
    const frozen = this.factory.createChild(
      member,
      this.tids(plan.pgid, plan.nsPgid, plan.levels),
      0,
    );
    const task = new RestoringTask(frozen, plan.pgid, this.arch, member.restorer);
    this.byId.set(plan.pgid, { task, parent: member });
    task.sys.check(
      'setpgid',
      [0, 0],
      `making placeholder pid ${task.pid} lead process group ${plan.pgid}`,
    );
    return task;
  }

  /**
   * End every placeholder once the members are in their sessions and
   * groups: kill it, collect it as its tracer and then as its parent.
   */
  retire(): void {
    for (const { task, parent } of this.byId.values()) {
      // wait4 runs inside the parent: name the child by its pid there.
      const local = pidSeenBy(parent, task.pid);
      task.closeInjection();
      libc().kill(task.pid, SIGKILL);
      reap(task.pid);
      parent.sys.check(
        'wait4',
        [local, 0, __WALL, 0],
        `collecting placeholder pid ${task.pid} in its parent ${parent.pid}`,
      );
      this.factory.forget(task.pid);
    }
    this.byId.clear();
  }
}
