/**
 * The threads of a multi-threaded process, other than its leader, on both
 * sides.
 *
 * A thread shares its process's memory, fd table, cwd/root/umask and
 * signal actions; what is its own (registers, blocked mask, alternate
 * stack, thread-directed pending signals, clear_child_tid, robust list,
 * name, credentials, timer slack) is saved by the phases that have
 * per-thread state (`TaskPhase.checkpointThread`), after the process's
 * own records: a `thread` record, then those phases' records, per thread.
 *
 * Restart creates the threads when it builds the tree (an injected clone3
 * with CLONE_THREAD and the saved thread ids, traced from birth, see
 * `TaskFactory.createThreads`), and restores them once the process's
 * phases are done (its address space is then the saved one): each gets
 * its own restorer pages, mapped in the shared address space, and the
 * phases' `restoreThread`. Finishing and letting go treat each thread as a
 * task of its own.
 */
import type { CheckpointCtx, RestartCtx } from '../context.js';
import { CkptError } from '../errors.js';
import { KCMP, kcmp } from '../kernel/kcmp.js';
import { readNamespaces } from '../proc/index.js';
import type { TaskPhase } from '../registry.js';
import type { CheckpointTask } from '../task.js';
import { threadRecord } from './records.js';
import { RestoringTask } from './restoring-task.js';

/**
 * Refuse a thread of `pid` (any of `tids`) that does not share its
 * process's fd table or cwd/root/umask (it called unshare(2)), or is in
 * other namespaces (setns(2) in one thread): restart creates every thread
 * sharing them.
 * @throws CkptError ENOTSUP naming the thread and what it has of its own
 */
export function checkThreadShares(pid: number, tids: readonly number[]): void {
  if (tids.length === 0) return;
  const leader = new Map(readNamespaces(pid).map((n) => [n.type, n.inode]));
  for (const tid of tids) {
    const own = (what: string) =>
      new CkptError(
        'ENOTSUP',
        `thread ${tid} of pid ${pid} has ${what} of its own; restoring a thread that does not share it with its process is not supported`,
        { pid },
      );
    if (kcmp(pid, tid, KCMP.FILES) !== 0) throw own('an fd table (unshare(CLONE_FILES))');
    if (kcmp(pid, tid, KCMP.FS) !== 0) throw own('a cwd, root and umask (unshare(CLONE_FS))');
    for (const ns of readNamespaces(tid)) {
      if (leader.get(ns.type) !== ns.inode) throw own(`a ${ns.type} namespace`);
    }
  }
}

/** Save the other threads of `task`: a thread record, then each phase's per-thread records. */
export function checkpointThreads(
  ctx: CheckpointCtx,
  task: CheckpointTask,
  threads: readonly CheckpointTask[],
  phases: readonly TaskPhase[],
): void {
  for (const thread of threads) {
    ctx.write(threadRecord, { tid: thread.pid, tgid: task.pid });
    for (const phase of phases) {
      const save = phase.checkpointThread;
      if (!save) continue;
      ctx.inPhase(phase.name, `phase ${phase.name}, thread ${thread.pid}`, task.pid, () =>
        save(ctx, thread, task),
      );
    }
  }
}

/**
 * Restore the other threads of `task` (created with it, see
 * `RestoringTask.threadsToRestore`) from their records, in order; each
 * becomes one of `task.threads`.
 */
export function restoreThreads(
  ctx: RestartCtx,
  task: RestoringTask,
  phases: readonly TaskPhase[],
): void {
  for (const pending of task.threadsToRestore) {
    const rec = ctx.read(threadRecord);
    if (rec.tid !== pending.savedTid || rec.tgid !== task.savedPid) {
      throw new CkptError(
        'EBADREC',
        `thread record for thread ${rec.tid} of pid ${rec.tgid} found where thread ${pending.savedTid} of pid ${task.savedPid} was expected`,
        { pid: task.savedPid, recordType: threadRecord.type },
      );
    }
    const thread = RestoringTask.threadOf(task, pending.frozen, pending.savedTid);
    task.threads.push(thread);
    for (const phase of phases) {
      const restore = phase.restoreThread;
      if (!restore) continue;
      const where = `restoring ${phase.name} of thread ${pending.savedTid}`;
      ctx.inPhase(phase.name, where, task.savedPid, () => restore(ctx, thread, task));
    }
  }
  task.threadsToRestore.length = 0;
}
