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
import { CkptError } from '../errors.js';
import { type FrozenTask, freezeTask, unfreezeTask } from '../kernel/freeze.js';
import { collectSubtree, type ProcessInfo, readStat, threadsOf } from '../proc/index.js';

/** How many scans a tree may keep changing before the checkpoint gives up. */
const MAX_ROUNDS = 100;

/** One task of a frozen tree, in depth-first order. */
export type TreeMember =
  | { kind: 'live'; info: ProcessInfo; frozen: FrozenTask }
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

function refuseThreads(pid: number): void {
  const threads = threadsOf(pid);
  if (threads.length > 1) {
    throw new CkptError(
      'ENOTSUP',
      `pid ${pid} has ${threads.length} threads; multi-threaded processes are not supported yet`,
      { pid },
    );
  }
}

/**
 * Freeze `rootPid` and all its descendants. Returns the tree depth-first,
 * each live task frozen. On failure every task frozen so far is let go.
 * @throws CkptError ESRCH if the root is gone or is a zombie, ENOTSUP for a
 *   multi-threaded task, EAGAIN if the tree never stops changing
 */
export function freezeTree(rootPid: number): TreeMember[] {
  const frozen = new Map<number, FrozenTask>();
  try {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const procs = collectSubtree(rootPid);
      if (isZombieState(procs[0]!.state)) {
        throw new CkptError('ESRCH', `pid ${rootPid} is a zombie: there is nothing to checkpoint`, {
          pid: rootPid,
        });
      }
      let changed = false;
      for (const p of procs) {
        if (isZombieState(p.state)) {
          if (frozen.has(p.pid)) {
            throw new CkptError('ESRCH', `pid ${p.pid} was killed during the checkpoint`, {
              pid: p.pid,
            });
          }
          refuseThreads(p.pid);
          continue;
        }
        if (frozen.has(p.pid)) continue;
        changed = true;
        try {
          frozen.set(p.pid, freezeTask(p.pid));
        } catch (e) {
          // The next scan sees it gone or as a zombie.
          if (p.pid !== rootPid && isGone(p.pid)) continue;
          throw e;
        }
        // Checked frozen: a running task could start a thread right after.
        refuseThreads(p.pid);
      }
      // A task whose parent exited meanwhile was reparented out of the tree.
      const inTree = new Set(procs.map((p) => p.pid));
      for (const [pid, f] of frozen) {
        if (inTree.has(pid)) continue;
        frozen.delete(pid);
        unfreezeTask(f, 'resume');
        changed = true;
      }
      if (!changed) {
        return procs.map((info) => {
          const f = frozen.get(info.pid);
          return f ? { kind: 'live', info, frozen: f } : { kind: 'zombie', info };
        });
      }
    }
    throw new CkptError(
      'EAGAIN',
      `the tree of pid ${rootPid} kept changing (forks or exits) while being frozen; try again`,
      { pid: rootPid },
    );
  } catch (e) {
    for (const f of frozen.values()) {
      try {
        unfreezeTask(f, 'resume');
      } catch {
        // Gone already: nothing to let go.
      }
    }
    throw e;
  }
}
