/**
 * The checkpoint driver (linux-cr's `sys_checkpoint`): collect the tree,
 * freeze it, write the header, the tree and every task through the
 * registered phases, write the tail, then leave the tree running, stopped
 * or killed. On any failure the stream ends with an error record and every
 * task is let go unharmed.
 */

import type { ArchSupport } from '../arch.js';
import { headerArchRecord } from '../codec/core-records.js';
import type { ByteSink } from '../codec/io.js';
import { ImageWriter } from '../codec/writer.js';
import { CheckpointCtx } from '../context.js';
import { asCkptError, CkptError } from '../errors.js';
import { hostArchId, makeHeader, writeHeader } from '../image.js';
import { type FrozenTask, freezeTask, unfreezeTask } from '../kernel/freeze.js';
import { findLeftoverParasites } from '../kernel/inject.js';
import { errno, libc } from '../kernel/libc.js';
import { getRegset, NT } from '../kernel/ptrace.js';
import type { Logger, Progress } from '../log.js';
import { collectSubtree, readStat, readStatus, threadsOf } from '../proc/index.js';
import type { Registry } from '../registry.js';
import type { CheckpointTask } from '../task.js';
import { TaskState, taskRecord, treeRecord } from './records.js';
import { InjectedSyscalls, ProcTaskMemory } from './syscalls.js';

const SIGKILL = 9;

/** What to do with the tree once the image is complete. */
export type LeaveMode = 'running' | 'stopped' | 'kill';

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

  constructor(
    readonly frozen: FrozenTask,
    readonly arch: ArchSupport,
  ) {
    this.regs = getRegset(frozen.pid, NT.PRSTATUS, arch.convention.regsSize);
    this.stat = readStat(frozen.pid);
    this.status = readStatus(frozen.pid);
    // Kill-safe: if ckpt dies mid-call, the task resumes as it was.
    this.sys = new InjectedSyscalls(frozen.pid, arch, { killSafe: true });
    this.mem = new ProcTaskMemory(frozen.pid);
  }

  get pid(): number {
    return this.frozen.pid;
  }

  get ownMappings() {
    const r = this.sys.scratchRange;
    return r ? [r] : [];
  }

  /** Put back everything ckpt changed in the task (registers, scratch). */
  release(): void {
    try {
      this.sys.close();
    } finally {
      this.mem.close();
    }
  }
}

function refuseUnsupported(pid: number, tree: number[]): void {
  if (tree.length > 1) {
    throw new CkptError(
      'ENOTSUP',
      `pid ${pid} has descendants (${tree.slice(1, 6).join(', ')}${tree.length > 6 ? ', …' : ''}); checkpointing process trees is not supported yet`,
      { pid },
    );
  }
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
 * Checkpoint the tree rooted at `opts.pid` into `opts.output`. Synchronous:
 * ptrace needs every call from one thread, and the image is one stream.
 */
export function checkpoint(opts: CheckpointOptions): CheckpointResult {
  const { registry } = opts;
  const arch = hostArch(registry);
  const leave = opts.leave ?? 'running';
  const writer = new ImageWriter(opts.output);
  const ctx = new CheckpointCtx(writer, {
    registry,
    uflags: opts.uflags,
    logger: opts.logger,
    progress: opts.progress,
  });

  const tree = collectSubtree(opts.pid).map((p) => p.pid);
  if (tree.length === 0) {
    throw new CkptError('ESRCH', `process ${opts.pid} does not exist`, { pid: opts.pid });
  }
  refuseUnsupported(opts.pid, tree);
  ctx.pids = tree;

  const tasks: FrozenCheckpointTask[] = [];
  const t0 = performance.now();
  let headerWritten = false;
  try {
    ctx.timed('freeze', () => {
      for (const pid of tree) tasks.push(new FrozenCheckpointTask(freezeTask(pid), arch));
    });
    for (const t of tasks) removeLeftovers(t, ctx.log);
    writeHeader(writer, makeHeader({ archId: arch.archId, nsig: arch.nsig, uflags: opts.uflags }));
    headerWritten = true;
    writer.write(headerArchRecord, { archId: arch.archId, ...arch.headerArch(tasks[0]!.pid) });
    writer.write(treeRecord, {
      tasks: tasks.map((t) => ({
        pid: t.pid,
        tgid: t.status.tgid,
        ppid: t.status.ppid,
        pgid: t.stat.pgrp,
        sid: t.stat.session,
        exitSignal: Math.max(t.stat.exitSignal, 0),
        nsPids: t.status.nsPid,
      })),
    });
    const phases = registry.phases();
    for (const [i, task] of tasks.entries()) {
      ctx.active = i;
      writer.write(taskRecord, {
        pid: task.pid,
        comm: task.stat.comm.slice(0, 16),
        state: task.frozen.wasStopped ? TaskState.STOPPED : TaskState.RUNNING,
        exitCode: 0,
        flags: task.stat.flags >>> 0,
        frozenAtNs: process.hrtime.bigint(),
      });
      for (const phase of phases) {
        ctx.timed(phase.name, () => {
          try {
            phase.checkpoint(ctx, task);
          } catch (e) {
            throw asCkptError(e, `phase ${phase.name}`, task.pid);
          }
        });
      }
      ctx.stats.tasks++;
    }
    writer.finish();
    ctx.stats.bytes = writer.offset;
  } catch (e) {
    const err = asCkptError(e, 'checkpoint');
    ctx.setError(err);
    if (headerWritten) {
      try {
        writer.abort(err.code, err.message, err.context.pid);
      } catch {
        // The output itself failed; the error below says why.
      }
    }
    for (const t of tasks) releaseQuietly(t, 'running', ctx.log);
    throw err;
  } finally {
    ctx.dispose();
  }
  // The image is complete: only now may the tree be killed.
  for (const t of tasks) {
    if (leave === 'kill' && opts.awaitKill === false) killWithoutWaiting(t, ctx.log);
    else releaseQuietly(t, leave, ctx.log);
  }
  ctx.stats.durations.frozen = performance.now() - t0;
  return {
    pids: tree,
    records: writer.records,
    bytes: writer.offset,
    pages: ctx.stats.pages,
    durations: ctx.stats.durations,
  };
}

/** Remove code pages an earlier, killed ckpt left in the task. */
function removeLeftovers(task: FrozenCheckpointTask, log: Logger): void {
  for (const r of findLeftoverParasites(task.pid)) {
    log.info(
      `pid ${task.pid}: removing ckpt code page left by a killed checkpoint at 0x${r.start.toString(16)}`,
    );
    task.sys.check('munmap', [r.start, r.end - r.start], 'removing a leftover ckpt code page');
  }
}

function killWithoutWaiting(task: FrozenCheckpointTask, log: Logger): void {
  try {
    task.release();
  } catch (e) {
    log.warn(`pid ${task.pid}: could not undo ckpt's changes: ${(e as Error).message}`);
  }
  if (libc().kill(task.pid, SIGKILL) === -1)
    log.warn(`pid ${task.pid}: could not kill it (errno ${errno()})`);
}

function releaseQuietly(task: FrozenCheckpointTask, leave: LeaveMode, log: Logger): void {
  try {
    task.release();
  } catch (e) {
    log.warn(`pid ${task.pid}: could not undo ckpt's changes: ${(e as Error).message}`);
  }
  try {
    unfreezeTask(task.frozen, leave === 'running' ? 'resume' : leave);
  } catch (e) {
    log.warn(`pid ${task.pid}: could not release it: ${(e as Error).message}`);
  }
}
