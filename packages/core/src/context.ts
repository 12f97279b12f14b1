/**
 * `CkptCtx`: the state of one checkpoint or restart (linux-cr's
 * `struct ckpt_ctx`). It carries the image stream, the objhash, the
 * deferqueue, user and internal flags, the pid array with the active
 * position, the first error, statistics, a logger and a progress reporter.
 */
import { objrefRecord } from './codec/core-records.js';
import type { ImageReader, RecordHeader } from './codec/reader.js';
import type { RecordSchema } from './codec/record.js';
import { RecordType } from './codec/types.js';
import type { ImageWriter } from './codec/writer.js';
import { DeferQueue } from './deferqueue.js';
import { asCkptError, CkptError } from './errors.js';
import { ContextFlags } from './flags.js';
import { type Logger, type Progress, silentLogger, silentProgress } from './log.js';
import { ObjHash } from './objhash.js';
import { NamespaceCache } from './proc/ns.js';
import type { Registry } from './registry.js';
import type { RestartTask } from './task.js';

/** Counters reported by `--json` summaries. */
export interface CkptStats {
  tasks: number;
  pages: number;
  /** Image bytes written or read. */
  bytes: number;
  /** Named durations in milliseconds (e.g. `frozen`, `memory`). */
  durations: Record<string, number>;
}

/** Options shared by both kinds of context. */
export interface CtxOptions {
  registry: Registry;
  uflags?: bigint;
  logger?: Logger;
  progress?: Progress;
}

/** State common to checkpoint and restart. */
export abstract class CkptCtx {
  readonly registry: Registry;
  readonly objhash = new ObjHash();
  readonly deferqueue = new DeferQueue();
  /** User flags (see `CheckpointFlags`, `RestartFlags`). */
  readonly uflags: bigint;
  /** Internal flags (see `ContextFlags`). */
  kflags: number;
  /** Pids of the tree in image order (depth-first from the root). */
  pids: number[] = [];
  /** Index in {@link pids} of the task being worked on. */
  active = 0;
  /** First error recorded; later ones are only logged. */
  firstError: CkptError | undefined;
  readonly stats: CkptStats = { tasks: 0, pages: 0, bytes: 0, durations: {} };
  readonly log: Logger;
  readonly progress: Progress;

  protected constructor(opts: CtxOptions, kflags: number) {
    this.registry = opts.registry;
    this.uflags = opts.uflags ?? 0n;
    this.kflags = kflags;
    this.log = opts.logger ?? silentLogger;
    this.progress = opts.progress ?? silentProgress;
  }

  /** True when user flag `flag` is set. */
  has(flag: bigint): boolean {
    return (this.uflags & flag) !== 0n;
  }

  /** Record the first error (later ones are logged) and return it. */
  setError(e: CkptError): CkptError {
    if (this.firstError) {
      this.log.debug(`further error: ${e.oneLine()}`);
    } else {
      this.firstError = e;
      this.kflags |= ContextFlags.ERROR;
    }
    return this.firstError;
  }

  /** Time `fn` and add it to `stats.durations[name]`. */
  timed<T>(name: string, fn: () => T): T {
    const t0 = performance.now();
    try {
      return fn();
    } finally {
      this.stats.durations[name] = (this.stats.durations[name] ?? 0) + performance.now() - t0;
    }
  }

  /**
   * Run one phase's work (`fn`), timed under the phase's `name`; a failure
   * becomes a CkptError that says `where` (which phase, which thread) and
   * names `pid`.
   */
  inPhase(name: string, where: string, pid: number, fn: () => void): void {
    this.timed(name, () => {
      try {
        fn();
      } catch (e) {
        throw asCkptError(e, where, pid);
      }
    });
  }

  /** Discard the objhash and run deferqueue destructors (end of operation). */
  dispose(): void {
    this.deferqueue.destroy();
    this.objhash.clear();
  }
}

/** Context of a checkpoint: writes the image. */
export class CheckpointCtx extends CkptCtx {
  /**
   * What happens to the tree once the image is complete. A subsystem that
   * changes a task's object for the checkpoint undoes it through the
   * deferqueue, which runs when the image is complete; its destructor
   * runs instead if the checkpoint fails (and the tree goes on running).
   */
  leave: LeaveMode = 'running';

  constructor(
    readonly writer: ImageWriter,
    opts: CtxOptions,
  ) {
    super(opts, ContextFlags.CHECKPOINT);
  }

  /**
   * The namespaces of the frozen tree's tasks, each link read once (they
   * cannot change while the tree is stopped). Not for other processes.
   */
  readonly namespaces = new NamespaceCache();

  /** Write one structured record. */
  write<T>(schema: RecordSchema<T>, value: T): void {
    this.writer.write(schema, value);
  }

  /**
   * Reference a shared object, writing it first if this is its first
   * appearance in the image (linux-cr's `checkpoint_obj()`): an objref
   * record, then the type's own records. Returns the objref.
   * `key` is the object's kernel identity.
   */
  checkpointObj(type: string, key: string, obj: unknown): number {
    const ops = this.registry.objectOps(type);
    const found = this.objhash.lookup(type, key);
    // Objects collected by leak detection are in the hash already, but
    // not yet written: the checkpointed flag tells the two cases apart.
    const entry = found ?? this.objhash.track(type, key, obj).entry;
    if (!entry.checkpointed) {
      this.write(objrefRecord, { objType: ops.id, objref: entry.objref });
      entry.checkpointed = true;
      ops.checkpoint(this, entry.obj, entry.objref);
    }
    return entry.objref;
  }
}

/** What to do with the tree once the image is complete. */
export type LeaveMode = 'running' | 'stopped' | 'kill';

/** Context of a restart: reads the image. */
export class RestartCtx extends CkptCtx {
  /**
   * Where fds that led outside the checkpointed tree are reconnected:
   * saved fd number → fd of the restarting process.
   */
  inheritFds: ReadonlyMap<number, number> = new Map();

  /**
   * The terminal modes (raw `struct termios2`) the restored tree had on
   * terminals it is now reconnected to, by fd of the restarting process.
   * Filled by the subsystem that reconnects them (@ckpt/fs); read by
   * whoever hands a terminal to the restored job (see
   * `RestartOptions.beforeRelease`). Nothing sets them on the terminal
   * by itself: a detached restart leaves the caller's terminal alone.
   */
  readonly terminalModes = new Map<number, Buffer>();

  /**
   * The image was made on this machine since it last booted: device and
   * inode numbers still name the files they named at checkpoint (a file
   * handler may tell a file replaced meanwhile from the one saved).
   */
  sameBoot = false;

  /**
   * Mount points (as the restored tasks see them) of filesystems restart
   * made anew and filled with their saved files (a container's tmpfs, by
   * @ckpt/ns): their files have new device and inode numbers even on the
   * same boot. See {@link onRecreatedMount}.
   */
  readonly recreatedMounts: string[] = [];

  /**
   * Saved pid → restored pid of every process of the tree (they differ
   * under --no-pids), known once every task exists, before any is
   * restored: for state that names another process of the tree.
   */
  pidMap: ReadonlyMap<number, number> = new Map();

  /**
   * Every live task of the tree by its saved pid, known once every task
   * exists: for state that must be made in another task than the one
   * being restored (the peer credentials of a unix connection). Each is
   * stopped until the end of the restart.
   */
  liveTasks: ReadonlyMap<number, RestartTask> = new Map();

  constructor(
    readonly reader: ImageReader,
    opts: CtxOptions,
  ) {
    super(opts, ContextFlags.RESTART);
  }

  /** `path` lies on a filesystem restart made anew (see {@link recreatedMounts}). */
  onRecreatedMount(path: string): boolean {
    return this.recreatedMounts.some((m) => path === m || path.startsWith(m === '/' ? m : `${m}/`));
  }

  /**
   * Consume the next record, restoring any shared objects defined before it
   * (objref records), and return its framing.
   */
  nextRecord(): RecordHeader {
    for (;;) {
      const h = this.reader.next();
      if (!h) {
        throw new CkptError('EUNEXPECTED', `image ended where more records were expected`, {
          offset: this.reader.offset,
        });
      }
      if (h.type !== RecordType.OBJREF) return h;
      this.restoreObj(h);
    }
  }

  /** Consume the next record (after any object definitions); it must be of `schema`. */
  read<T>(schema: RecordSchema<T>): T {
    const h = this.nextRecord();
    this.reader.expect(h, schema.type);
    return this.reader.decode(schema, h);
  }

  /** The object restored for `objref`, which must be of `type`. */
  fetchObj<T>(objref: number, type: string): T {
    return this.objhash.fetch<T>(objref, type);
  }

  private restoreObj(h: RecordHeader): void {
    const { objType, objref } = this.reader.decode(objrefRecord, h);
    const ops = this.registry.objectOpsById(objType);
    if (!ops) {
      throw new CkptError(
        'EUNEXPECTED',
        `objref record at offset ${h.offset} defines an object of unknown type ${objType} (missing plugin?)`,
        { offset: h.offset, recordType: h.type },
      );
    }
    if (this.objhash.get(objref)) {
      throw new CkptError(
        'EBADOBJREF',
        `objref ${objref} is defined twice (second at offset ${h.offset})`,
        {
          offset: h.offset,
          recordType: h.type,
        },
      );
    }
    const obj = ops.restore(this, objref);
    this.objhash.insert(objref, ops.name, obj);
  }
}
