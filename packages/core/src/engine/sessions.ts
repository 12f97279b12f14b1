/**
 * Sessions and process groups of a restored tree (linux-cr's mktree did
 * this in userspace too). A new task inherits its parent's session and
 * group; so a session leader calls setsid() right after it is created,
 * before its children exist, and once every task exists each one joins its
 * group with setpgid(0, pgid), group leaders first.
 *
 * A session or group can only be created by its leader, and joined only
 * while it has members. When the leader has exited (a double-forked
 * daemon, a job whose leading subshell is gone), restart creates a
 * short-lived placeholder with the leader's pid that plays its part (see
 * placeholders.ts); {@link planSessions} says which ones a tree needs.
 */
import type { RecordValue } from '../codec/record.js';
import { CkptError } from '../errors.js';
import type { Logger } from '../log.js';
import { readStat, scanProcesses } from '../proc/index.js';
import type { TaskSyscalls } from '../task.js';
import type { treeRecord } from './records.js';
import { pidAtLevel } from './task-io.js';

/** One entry of the `tree` record. */
export type TreeEntry = RecordValue<typeof treeRecord>['tasks'][number];

/** A created task: where it came from in the image, and how to run syscalls in it. */
export interface CreatedTask {
  entry: TreeEntry;
  /** Its pid as restored. */
  pid: number;
  sys: TaskSyscalls;
}

/** A session whose leader is gone: a placeholder leads it while its members are created. */
export interface SessionPlaceholder {
  /** The session id (the leader's saved pid) and its id in the tree's innermost pid namespace. */
  sid: number;
  nsSid: number;
  /**
   * Saved pid of the parent of the session's topmost members (init, as a
   * rule: they were orphaned when the leader exited). The placeholder is
   * its child, and creates those members as its siblings (CLONE_PARENT).
   */
  parent: number;
  /** Exit signal the members get (a CLONE_PARENT child gets its creator's). */
  exitSignal: number;
  /** Pid-namespace levels of the members (their NSpid length). */
  levels: number;
}

/** A process group whose leader is gone: a placeholder leads it while members join. */
export interface GroupPlaceholder {
  pgid: number;
  nsPgid: number;
  /** Saved pid of the member that creates the placeholder (in the group's session). */
  member: number;
  /** Pid-namespace levels of that member (its NSpid length). */
  levels: number;
}

/** What a tree needs, beyond its own tasks, to rebuild its sessions and groups. */
export interface SessionPlan {
  sessions: Map<number, SessionPlaceholder>;
  groups: Map<number, GroupPlaceholder>;
  /**
   * Saved pid of a root whose session's leader has exited (a double-forked
   * daemon, `nohup cmd &` from a shell that is gone): it leads a new
   * session of its own, the nearest to a session nobody leads.
   */
  newSessionRoot?: number;
}

/**
 * The processes of the machine that are not zombies, scanned on first use:
 * zombies do not count (those of a tree checkpointed with --kill still hold
 * its groups until init collects them, and will not for long).
 */
function liveProcesses(): () => ReturnType<typeof scanProcesses> {
  let live: ReturnType<typeof scanProcesses> | undefined;
  return () => {
    live ??= scanProcesses().filter((p) => p.state !== 'Z' && p.state !== 'X');
    return live;
  };
}

function unsupported(pid: number, what: string): CkptError {
  return new CkptError('ENOTSUP', `pid ${pid}: ${what}; restart cannot rebuild this`, { pid });
}

/**
 * Check, before anything is created, that every session and group of the
 * tree can be rebuilt, and plan the placeholder leaders it needs. A session
 * is led by a task of the image (then every member descends from it), is
 * the root's own, still existing session, or gets a placeholder leader; a
 * group is led by a task of the image still in that group, exists on this
 * machine (a subtree's group, joined), or gets a placeholder leader. Warns
 * when the root's session exists but is not ckpt's: a session cannot be
 * joined, so the tree stays in ckpt's; and when the root's session has no
 * leader any more: the root then leads a new one.
 * @throws CkptError ENOTSUP naming the task and the session or group
 */
export function planSessions(
  tree: readonly TreeEntry[],
  log: Logger,
  opts: { container: boolean },
): SessionPlan {
  const plan: SessionPlan = { sessions: new Map(), groups: new Map() };
  const byPid = new Map(tree.map((e) => [e.pid, e]));
  const scan = liveProcesses();
  for (const e of tree) {
    const parent = byPid.get(e.ppid);
    if (e.sid !== e.pid && parent && parent.sid !== e.sid) {
      if (byPid.has(e.sid) || (opts.container && e.nsSid === 0)) {
        throw unsupported(
          e.pid,
          `it is in session ${e.sid}, its parent ${parent.pid} in session ${parent.sid}, and the session's leader is not its ancestor`,
        );
      }
      const want = {
        sid: e.sid,
        nsSid: e.nsSid,
        parent: e.ppid,
        exitSignal: e.exitSignal,
        levels: e.nsPids.length,
      };
      const have = plan.sessions.get(e.sid);
      if (have && (have.parent !== want.parent || have.exitSignal !== want.exitSignal)) {
        throw unsupported(
          e.pid,
          `its session ${e.sid} (leader exited) also holds pid ${tree.find((t) => t.sid === e.sid && t.ppid === have.parent)?.pid}, which has another parent or exit signal`,
        );
      }
      plan.sessions.set(e.sid, want);
    }
    if (e.sid !== e.pid && !parent) {
      const own = readStat(process.pid).session;
      if (e.sid !== own) {
        if (!scan().some((p) => p.pid === e.sid)) {
          log.warn(
            `pid ${e.pid}: the leader of its session ${e.sid} has exited; it is restored as the leader of a new session`,
          );
          plan.newSessionRoot = e.pid;
          continue;
        }
        log.warn(
          `pid ${e.pid}: session ${e.sid} cannot be joined; the tree is restored in ckpt's session ${own}`,
        );
      }
    }
  }
  for (const e of tree) {
    if (e.pgid === e.pid) continue;
    const leader = byPid.get(e.pgid);
    if (leader) {
      if (leader.pgid !== e.pgid || leader.sid !== e.sid) {
        throw unsupported(
          e.pid,
          `its process group ${e.pgid} no longer holds its leader ${e.pgid}, or is in another session`,
        );
      }
      continue;
    }
    // A gone session leader's placeholder leads the group of the same id.
    if (plan.sessions.has(e.pgid) || plan.groups.has(e.pgid)) continue;
    if (!byPid.has(e.ppid)) continue; // the root: in a group outside the image
    if (!opts.container && scan().some((p) => p.pgid === e.pgid)) continue; // joined as it is
    // The container's init's own group outside it (a container `unshare
    // --fork` started, where the init and its children kept unshare's
    // group): they stay together in whatever group the init gets.
    if (e.nsPgid === 0 && e.pgid === tree[0]?.pgid) continue;
    if (e.nsPgid === 0) {
      throw unsupported(e.pid, `its process group ${e.pgid} is outside the container`);
    }
    plan.groups.set(e.pgid, {
      pgid: e.pgid,
      nsPgid: e.nsPgid,
      member: e.pid,
      levels: e.nsPids.length,
    });
  }
  return plan;
}

/**
 * Right after `task` is created: make it a session leader if it was one,
 * or if it is the root of `plan` whose session's leader has exited.
 */
export function restoreSession(task: CreatedTask, plan?: SessionPlan): void {
  if (task.entry.sid !== task.entry.pid && plan?.newSessionRoot !== task.entry.pid) return;
  task.sys.check('setsid', [], `making pid ${task.pid} the leader of session ${task.pid}`);
}

/**
 * Once every task exists: put each in its saved process group, leaders
 * first. `pidOf` maps a saved pid to the restored one (they differ with
 * --no-pids); groups outside the image keep their ids. A task that could
 * not be put back in its outside session (see {@link planSessions}) keeps
 * ckpt's group instead of an outside one, which lives in another session.
 */
export function restoreGroups(
  tasks: readonly CreatedTask[],
  pidOf: (saved: number) => number,
  log: Logger,
  placeholders: readonly number[] = [],
): void {
  const created = new Set([...tasks.map((t) => t.pid), ...placeholders]);
  const parents = new Map(tasks.map((t) => [t.entry.pid, t]));
  const inImage = new Set(tasks.map((t) => t.entry.pid));
  const leadersFirst = [
    ...tasks.filter((t) => t.entry.pgid === t.entry.pid),
    ...tasks.filter((t) => t.entry.pgid !== t.entry.pid),
  ];
  // Groups outside the image that are gone (their leader and every other
  // member exited, as `( cmd & )` from a shell leaves): the first task of
  // one leads it anew under its own pid, and the others of it join.
  const regrouped = new Map<number, number>();
  const live = liveProcesses();
  let groups: Set<number> | undefined;
  const groupExists = (pgid: number) => {
    groups ??= new Set(live().map((p) => p.pgid));
    return groups.has(pgid);
  };
  for (const t of leadersFirst) {
    const again = regrouped.get(t.entry.pgid);
    if (again !== undefined) {
      if (readStat(t.pid).pgrp !== again) {
        t.sys.check('setpgid', [0, again], `putting pid ${t.pid} in process group ${again}`);
      }
      continue;
    }
    const pgid = pidOf(t.entry.pgid);
    const now = readStat(t.pid);
    if (now.pgrp === pgid) continue;
    if (!inImage.has(t.entry.pgid) && now.session !== pidOf(t.entry.sid)) {
      log.warn(
        `pid ${t.pid}: process group ${pgid} is in another session; it stays in ${now.pgrp}`,
      );
      // The root's descendants of that group follow it (created in its session).
      if (t === tasks[0]) regrouped.set(t.entry.pgid, now.pgrp);
      continue;
    }
    if (!inImage.has(t.entry.pgid) && !created.has(pgid) && !groupExists(pgid)) {
      log.warn(
        `pid ${t.pid}: its process group ${pgid} no longer exists; it leads a new group of its own`,
      );
      t.sys.check('setpgid', [0, 0], `making pid ${t.pid} the leader of a process group`);
      regrouped.set(t.entry.pgid, t.pid);
      continue;
    }
    // setpgid runs inside the task: name the group by its pid in the
    // task's own pid namespace, which differs in a container (a group
    // outside the tree is only joined in ckpt's own namespace).
    const local = created.has(pgid) ? pidAtLevel(pgid, t.entry.nsPids.length) : pgid;
    if (local === undefined) {
      // The leader lives in an outer namespace (a nested init kept its
      // parent's group): the parent, which sees both, moves it.
      const parent = parents.get(t.entry.ppid);
      const inParent = parent && pidAtLevel(t.pid, parent.entry.nsPids.length);
      const leaderInParent = parent && pidAtLevel(pgid, parent.entry.nsPids.length);
      if (!parent || inParent === undefined || leaderInParent === undefined) {
        throw new CkptError(
          'ENOTSUP',
          `pid ${t.pid}: its process group ${pgid} is led from outside its pid namespace, and its parent cannot move it there`,
          { pid: t.pid },
        );
      }
      parent.sys.check(
        'setpgid',
        [inParent, leaderInParent],
        `putting pid ${t.pid} in process group ${pgid} (from its parent ${parent.pid})`,
      );
      continue;
    }
    t.sys.check('setpgid', [0, local], `putting pid ${t.pid} in process group ${pgid}`);
  }
}
