/**
 * Sessions and process groups of a restored tree (linux-cr's mktree did
 * this in userspace too). A new task inherits its parent's session and
 * group; so a session leader calls setsid() right after it is created,
 * before its children exist, and once every task exists each one joins its
 * group with setpgid(0, pgid), group leaders first.
 *
 * A session or group can only be re-created by its leader, and joined only
 * while it has members. When a needed leader is neither in the image nor
 * running (say, a session whose leader has exited), restart refuses; CRIU
 * solves this with short-lived placeholder tasks that play the leader, which
 * can come later.
 */
import type { RecordValue } from '../codec/record.js';
import { CkptError } from '../errors.js';
import type { Logger } from '../log.js';
import { readStat, readStatus, scanProcesses } from '../proc/index.js';
import type { TaskSyscalls } from '../task.js';
import type { treeRecord } from './records.js';

/** One entry of the `tree` record. */
export type TreeEntry = RecordValue<typeof treeRecord>['tasks'][number];

/** A created task: where it came from in the image, and how to run syscalls in it. */
export interface CreatedTask {
  entry: TreeEntry;
  /** Its pid as restored. */
  pid: number;
  sys: TaskSyscalls;
}

function unsupported(pid: number, what: string): CkptError {
  return new CkptError(
    'ENOTSUP',
    `pid ${pid}: ${what}; restoring it needs a placeholder leader task, which is not supported yet`,
    { pid },
  );
}

/**
 * Check, before anything is created, that every session and group of the
 * tree can be rebuilt: each session is led by a task of the image (then
 * every member descends from it) or is the root's own, still existing
 * session; each group is led by a task of the image still in that group,
 * or exists on this machine. Warns when the root's session exists but is
 * not ckpt's: a session cannot be joined, so the tree stays in ckpt's.
 * @throws CkptError ENOTSUP naming the task and the session or group
 */
export function checkSessions(tree: readonly TreeEntry[], log: Logger): void {
  const byPid = new Map(tree.map((e) => [e.pid, e]));
  let live: ReturnType<typeof scanProcesses> | undefined;
  const scan = () => {
    live ??= scanProcesses();
    return live;
  };
  for (const e of tree) {
    const parent = byPid.get(e.ppid);
    if (e.sid !== e.pid && parent && parent.sid !== e.sid) {
      throw unsupported(
        e.pid,
        `it is in session ${e.sid}, its parent ${parent.pid} in session ${parent.sid} (the session leader has exited or is outside the image)`,
      );
    }
    if (e.sid !== e.pid && !parent) {
      const own = readStat(process.pid).session;
      if (e.sid !== own) {
        if (!scan().some((p) => p.pid === e.sid)) {
          throw unsupported(
            e.pid,
            `its session ${e.sid} has a leader that is neither in the image nor running`,
          );
        }
        log.warn(
          `pid ${e.pid}: session ${e.sid} cannot be joined; the tree is restored in ckpt's session ${own}`,
        );
      }
    }
    if (e.pgid === e.pid) continue;
    const leader = byPid.get(e.pgid);
    if (leader) {
      if (leader.pgid !== e.pgid || leader.sid !== e.sid) {
        throw unsupported(
          e.pid,
          `its process group ${e.pgid} no longer holds its leader, or is in another session`,
        );
      }
    } else if (!scan().some((p) => p.pgid === e.pgid)) {
      throw unsupported(
        e.pid,
        `its process group ${e.pgid} has a leader that is neither in the image nor running, and no other member`,
      );
    }
  }
}

/** Right after `task` is created: make it a session leader if it was one. */
export function restoreSession(task: CreatedTask): void {
  if (task.entry.sid !== task.entry.pid) return;
  task.sys.check('setsid', [], `making pid ${task.pid} the leader of session ${task.pid}`);
}

/**
 * Once every task exists: put each in its saved process group, leaders
 * first. `pidOf` maps a saved pid to the restored one (they differ with
 * --no-pids); groups outside the image keep their ids. A task that could
 * not be put back in its outside session (see {@link checkSessions}) keeps
 * ckpt's group instead of an outside one, which lives in another session.
 */
export function restoreGroups(
  tasks: readonly CreatedTask[],
  pidOf: (saved: number) => number,
  log: Logger,
): void {
  const inImage = new Set(tasks.map((t) => t.entry.pid));
  const leadersFirst = [
    ...tasks.filter((t) => t.entry.pgid === t.entry.pid),
    ...tasks.filter((t) => t.entry.pgid !== t.entry.pid),
  ];
  for (const t of leadersFirst) {
    const pgid = pidOf(t.entry.pgid);
    const now = readStat(t.pid);
    if (now.pgrp === pgid) continue;
    if (!inImage.has(t.entry.pgid) && now.session !== pidOf(t.entry.sid)) {
      log.warn(
        `pid ${t.pid}: process group ${pgid} is in another session; it stays in ${now.pgrp}`,
      );
      continue;
    }
    // setpgid runs inside the task: name the group by its pid in the
    // task's own (innermost) pid namespace, which differs in a container.
    const local = readStatus(pgid).nsPid.at(-1) ?? pgid;
    t.sys.check('setpgid', [0, local], `putting pid ${t.pid} in process group ${pgid}`);
  }
}
