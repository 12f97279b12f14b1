/**
 * The restart driver and coordinator (linux-cr's `sys_restart`). ckpt itself
 * is the coordinator: it validates the header before creating anything,
 * creates every task with its pid, restores each in image order through the
 * registered phases, verifies the tail, and only then lets the tasks run
 * (sync point #3). Any failure kills every task it created.
 */

import type { ArchSupport } from '../arch.js';
import { headerArchRecord } from '../codec/core-records.js';
import type { ByteSource } from '../codec/io.js';
import { ImageReader } from '../codec/reader.js';
import { RestartCtx } from '../context.js';
import { asCkptError, CkptError } from '../errors.js';
import { readHeader, runningConstants, validateHeader } from '../image.js';
import { type FrozenTask, unfreezeTask } from '../kernel/freeze.js';
import { SyscallInjector } from '../kernel/inject.js';
import { NT, setRegset, setSigmask } from '../kernel/ptrace.js';
import type { Logger, Progress } from '../log.js';
import type { Registry } from '../registry.js';
import type { RestartTask } from '../task.js';
import { hostArch } from './checkpoint.js';
import { TaskFactory } from './mktree.js';
import { TaskState, taskRecord, treeRecord } from './records.js';
import { InjectedSyscalls, isSyscallError, ProcTaskMemory } from './syscalls.js';

const PAGE = 4096n;
/** One page of code (a syscall instruction) and three of scratch. */
const RESTORER_SIZE = 4n * PAGE;
const PROT_RWX = 7;
const MAP_PRIVATE_ANON = 0x22;
const MAP_FIXED_NOREPLACE = 0x100000;

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

/** A task being rebuilt, as phases see it. */
class RestoringTask implements RestartTask {
  readonly data = new Map<string, unknown>();
  readonly mem: ProcTaskMemory;
  sys: InjectedSyscalls;
  restorer: { start: bigint; end: bigint };
  finalRegs: Buffer | undefined;
  finalSigmask: bigint | undefined;

  constructor(
    readonly frozen: FrozenTask,
    readonly savedPid: number,
    readonly arch: ArchSupport,
  ) {
    this.mem = new ProcTaskMemory(frozen.pid);
    // The new task is a copy of the stub: its syscall instruction is there.
    const first = new SyscallInjector(frozen.pid, arch.convention, {
      syscallAddr: arch.stub.syscallAddr,
    });
    let addr: bigint;
    try {
      addr = first.call(arch.syscalls.mmap, [0, RESTORER_SIZE, PROT_RWX, MAP_PRIVATE_ANON, -1, 0]);
    } finally {
      first.close();
    }
    if (isSyscallError(addr)) {
      throw new CkptError('ESYS', `cannot map the restorer in pid ${frozen.pid} (errno ${-addr})`, {
        pid: frozen.pid,
      });
    }
    this.restorer = { start: addr, end: addr + RESTORER_SIZE };
    this.sys = this.injectorAt(addr);
  }

  get pid(): number {
    return this.frozen.pid;
  }

  private injectorAt(addr: bigint): InjectedSyscalls {
    this.mem.write(addr, this.arch.convention.syscallInsn);
    return new InjectedSyscalls(this.frozen.pid, this.arch, {
      syscallAddr: addr,
      scratch: { addr: addr + PAGE, size: Number(RESTORER_SIZE - PAGE) },
    });
  }

  keepRestorerClear(ranges: readonly { start: bigint; end: bigint }[]): void {
    const overlaps = (s: bigint, e: bigint) => ranges.some((r) => s < r.end && r.start < e);
    if (!overlaps(this.restorer.start, this.restorer.end)) return;
    // Find a gap below the lowest range or between ranges, above 64 KiB.
    const sorted = [...ranges].sort((a, b) => (a.start < b.start ? -1 : 1));
    let candidate = 0x10000n;
    for (const r of sorted) {
      if (candidate + RESTORER_SIZE <= r.start && !overlaps(candidate, candidate + RESTORER_SIZE))
        break;
      if (r.end > candidate) candidate = r.end;
    }
    const old = this.restorer;
    const addr = this.sys.check(
      'mmap',
      [candidate, RESTORER_SIZE, PROT_RWX, MAP_PRIVATE_ANON | MAP_FIXED_NOREPLACE, -1, 0],
      'moving the restorer',
    );
    this.sys.close();
    this.sys = this.injectorAt(addr);
    this.restorer = { start: addr, end: addr + RESTORER_SIZE };
    this.sys.check('munmap', [old.start, RESTORER_SIZE], 'unmapping the old restorer');
  }

  /** Remove the restorer, apply the final signal mask and registers: the task is ready to run. */
  finish(): void {
    if (!this.finalRegs) {
      throw new CkptError(
        'EINVAL',
        `no registers were restored for pid ${this.pid} (missing arch plugin?)`,
        {
          pid: this.pid,
        },
      );
    }
    this.sys.check('munmap', [this.restorer.start, RESTORER_SIZE], 'removing the restorer');
    this.sys.close();
    this.mem.close();
    // Signals stayed blocked while injecting; no syscall runs after this.
    if (this.finalSigmask !== undefined) setSigmask(this.pid, this.finalSigmask);
    setRegset(this.pid, NT.PRSTATUS, this.finalRegs);
  }
}

/**
 * Restart the image read from `opts.input`. Returns once every task is
 * restored and running (or stopped, with `frozen`).
 */
export function restart(opts: RestartOptions): RestartResult {
  const { registry } = opts;
  const reader = new ImageReader(opts.input, (t) => registry.recordName(t));
  const ctx = new RestartCtx(reader, { registry, logger: opts.logger, progress: opts.progress });
  ctx.inheritFds = opts.inheritFds ?? new Map();

  // Validate everything we can before creating any task.
  const arch = hostArch(registry);
  const header = readHeader(reader);
  validateHeader(header, { archId: arch.archId, constants: runningConstants(arch.nsig) });
  const ha = ctx.read(headerArchRecord);
  const tree = ctx.read(treeRecord).tasks;
  if (tree.length !== 1) {
    throw new CkptError(
      'ENOTSUP',
      `the image holds ${tree.length} tasks; restarting process trees is not supported yet`,
    );
  }

  const factory = new TaskFactory(arch);
  const tasks: RestoringTask[] = [];
  const stopped = new Set<RestoringTask>();
  try {
    // The stub is not a restored task: probing the CPU with it still
    // refuses an incompatible image before anything is created.
    arch.checkHeaderArch(ha, factory.probePid());
    ctx.timed('create', () => {
      for (const entry of tree) {
        const frozen = factory.create(opts.noPids ? undefined : entry.pid, entry.exitSignal);
        tasks.push(new RestoringTask(frozen, entry.pid, arch));
      }
    });
    factory.closeStub();
    ctx.pids = tasks.map((t) => t.pid);
    const phases = registry.phases();
    for (const [i, task] of tasks.entries()) {
      ctx.active = i;
      const rec = ctx.read(taskRecord);
      if (rec.pid !== task.savedPid) {
        throw new CkptError(
          'EBADREC',
          `task record for pid ${rec.pid} found where pid ${task.savedPid} was expected`,
          {
            recordType: taskRecord.type,
          },
        );
      }
      if (rec.state === TaskState.STOPPED) stopped.add(task);
      for (const phase of phases) {
        ctx.timed(phase.name, () => {
          try {
            phase.restore(ctx, task);
          } catch (e) {
            throw asCkptError(e, `restoring ${phase.name}`, task.savedPid);
          }
        });
      }
      task.finish();
      ctx.stats.tasks++;
    }
    if (reader.next() !== null) {
      throw new CkptError(
        'EUNEXPECTED',
        `unexpected record after the last task at offset ${reader.offset}`,
      );
    }
    ctx.deferqueue.run();
  } catch (e) {
    factory.destroyAll();
    ctx.dispose();
    throw asCkptError(e, 'restart');
  }
  // Sync point: every task is restored; let them all go at once.
  for (const t of tasks) {
    unfreezeTask(t.frozen, opts.frozen || stopped.has(t) ? 'stopped' : 'resume');
  }
  ctx.dispose();
  return {
    root: tasks[0]!.pid,
    pids: tasks.map((t) => t.pid),
    pidMap: new Map(tasks.map((t) => [t.savedPid, t.pid])),
    records: reader.records,
    bytes: reader.offset,
    pages: ctx.stats.pages,
    durations: ctx.stats.durations,
  };
}
