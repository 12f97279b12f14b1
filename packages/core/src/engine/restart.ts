/**
 * The restart driver and coordinator (linux-cr's `sys_restart`). ckpt itself
 * is the coordinator: it validates the header before creating anything,
 * builds the whole tree (pids, parents, sessions, groups, zombies), restores
 * each task in image order through the registered phases, finishes them all,
 * verifies the tail, and only then lets the tasks run (sync point #3). Any
 * failure kills every task it created.
 */

import { headerArchRecord } from '../codec/core-records.js';
import { EARLY_CRC_WORKER_BYTES, startChecksumWorker } from '../codec/crc.js';
import type { ByteSource } from '../codec/io.js';
import { ImageReader } from '../codec/reader.js';
import { RestartCtx } from '../context.js';
import { asCkptError, CkptError } from '../errors.js';
import { CheckpointFlags } from '../flags.js';
import { bootId, readHeader, runningConstants, validateHeader } from '../image.js';
import { unfreezeTask } from '../kernel/freeze.js';
import type { Logger, Progress } from '../log.js';
import type { Registry } from '../registry.js';
import { allAtOnce } from './all-at-once.js';
import { type BuiltTree, buildTree } from './build-tree.js';
import { hostArch } from './checkpoint.js';
import { closeSessionPtys } from './ctty.js';
import { TaskFactory } from './mktree.js';
import { TaskState, taskRecord, treeRecord } from './records.js';
import type { RestoringTask } from './restoring-task.js';
import { restoreThreads } from './threads.js';

/** Options of {@link restart}. */
export interface RestartOptions {
  input: ByteSource;
  registry: Registry;
  /** Restore under new pids instead of the saved ones. */
  noPids?: boolean;
  /** Leave the restored tasks stopped (SIGSTOP) instead of running. */
  frozen?: boolean;
  /**
   * Where fds that led outside the checkpointed tree (the caller's
   * terminal, a pipe) are reconnected: saved fd number → fd of this
   * process. Subsystems read it from `ctx.inheritFds`.
   */
  inheritFds?: ReadonlyMap<number, number>;
  logger?: Logger;
  progress?: Progress;
  /**
   * Called with the root's pid once every task is restored, just before
   * they run: e.g. to give the root's process group a terminal's
   * foreground, which it must have before it reads, in the modes it had.
   * Throwing fails the restart (nothing is left).
   */
  beforeRelease?: (root: number, info: ReleaseInfo) => void;
}

/** What {@link RestartOptions.beforeRelease} is told besides the root's pid. */
export interface ReleaseInfo {
  /** See `RestartCtx.terminalModes`: saved modes by fd of this process. */
  terminalModes: ReadonlyMap<number, Buffer>;
}

/** What a restart produced. */
export interface RestartResult {
  /** Pid of the root task, as restored. */
  root: number;
  /** Pids of every restored task, in image order. */
  pids: number[];
  /** Saved pid → restored pid. */
  pidMap: Map<number, number>;
  records: number;
  bytes: number;
  pages: number;
  durations: Record<string, number>;
}

/**
 * Restart the image read from `opts.input`. Returns once every task is
 * restored and running (or stopped, with `frozen`).
 */
export function restart(opts: RestartOptions): RestartResult {
  const { registry } = opts;
  const reader = new ImageReader(opts.input, (t) => registry.recordName(t));
  if ((opts.input.size ?? 0) >= EARLY_CRC_WORKER_BYTES) startChecksumWorker();
  // Validate everything we can before creating any task.
  const arch = hostArch(registry);
  const header = readHeader(reader);
  // The image's uflags (a container or a subtree) guide the subsystems.
  const ctx = new RestartCtx(reader, {
    registry,
    logger: opts.logger,
    progress: opts.progress,
    uflags: header.uflags,
  });
  ctx.inheritFds = opts.inheritFds ?? new Map();
  ctx.sameBoot = header.bootId !== '' && header.bootId === bootId();
  try {
    validateHeader(header, { archId: arch.archId, constants: runningConstants(arch.nsig) });
  } catch (e) {
    // Another machine's image, or a corrupt one? A file's checksum says.
    reader.verifyChecksum();
    throw e;
  }
  // An image file that ends with a failed checkpoint's error (or is cut
  // short) is refused now, not after its tasks were created.
  reader.checkEnd();
  const ha = ctx.read(headerArchRecord);
  const { tasks: tree, timeNamespaces } = ctx.read(treeRecord);

  const factory = new TaskFactory(arch);
  let built: BuiltTree | undefined;
  const stopped = new Set<RestoringTask>();
  try {
    // The stub is not a restored task: probing the CPU with it still
    // refuses an incompatible image before anything is created.
    arch.checkHeaderArch(ha, factory.probePid());
    const b = ctx.timed('create', () =>
      buildTree(factory, tree, {
        arch,
        noPids: opts.noPids === true,
        log: ctx.log,
        container: ctx.has(CheckpointFlags.CONTAINER),
        ttyOwner: ctx,
        timeNamespaces,
      }),
    );
    built = b;
    factory.closeStub();
    ctx.pids = b.pids;
    ctx.pidMap = new Map(tree.map((e, i) => [e.pid, b.pids[i]!]));
    ctx.liveTasks = new Map([...b.tasks.values()].map((t) => [t.savedPid, t]));
    const phases = registry.phases();
    for (const [i, entry] of tree.entries()) {
      ctx.active = i;
      const rec = ctx.read(taskRecord);
      if (
        rec.pid !== entry.pid ||
        (rec.state === TaskState.ZOMBIE) !== (entry.state === TaskState.ZOMBIE)
      ) {
        throw new CkptError(
          'EBADREC',
          `task record for pid ${rec.pid} (${rec.state}) found where pid ${entry.pid} (${entry.state}) was expected`,
          { pid: entry.pid, recordType: taskRecord.type },
        );
      }
      const task = b.tasks.get(i);
      if (!task) continue; // a zombie: dead already, nothing else to restore
      if (rec.state === TaskState.STOPPED) stopped.add(task);
      for (const phase of phases) {
        ctx.inPhase(phase.name, `restoring ${phase.name}`, task.savedPid, () =>
          phase.restore(ctx, task),
        );
      }
      restoreThreads(ctx, task, phases);
      ctx.stats.tasks++;
    }
    // Finishing costs two round trips per task (and thread): all at once.
    const restored = [...b.tasks.values()].flatMap((t) => [t, ...t.threads]);
    ctx.timed('finish', () => {
      allAtOnce(restored, (t) => t.startFinish());
      allAtOnce(restored, (t) => t.startRemovingRestorer());
      for (const t of restored) t.letGo();
    });
    if (reader.next() !== null) {
      throw new CkptError(
        'EUNEXPECTED',
        `unexpected record after the last task at offset ${reader.offset}`,
      );
    }
    ctx.deferqueue.run();
    opts.beforeRelease?.(built.pids[0]!, { terminalModes: ctx.terminalModes });
  } catch (e) {
    factory.destroyAll();
    ctx.dispose();
    throw asCkptError(e, 'restart');
  } finally {
    // ckpt's copies of the masters of session ptys no task took.
    closeSessionPtys(ctx);
  }
  // Sync point #3: every task is restored; let them all go at once.
  for (const t of built.tasks.values()) {
    // A job-stopped task is in its group stop already (see job-stop.ts):
    // stopping it again would tell its parent again.
    unfreezeTask(t.frozen, opts.frozen && !stopped.has(t) ? 'stopped' : 'resume');
    // Stopped with it, if it is: a stop signal stops the whole process.
    for (const thread of t.threads) unfreezeTask(thread.frozen, 'resume');
  }
  ctx.dispose();
  const pids = built.pids;
  return {
    root: pids[0]!,
    pids,
    pidMap: new Map(ctx.pidMap),
    records: reader.records,
    bytes: reader.offset,
    pages: ctx.stats.pages,
    durations: ctx.stats.durations,
  };
}
