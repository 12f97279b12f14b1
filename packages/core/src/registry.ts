/**
 * The ops tables and the plugin API. A plugin (one of ckpt's own subsystem
 * packages or a third party's) is a plain object that declares its record
 * kinds, shared-object types, task phases, file-type handlers and VMA-type
 * handlers. Core imports no subsystem: the CLI (or a library user) builds a
 * {@link Registry} from the plugins it wants.
 */
import type { ArchSupport } from './arch.js';
import type { RecordKind } from './codec/record.js';
import type { CheckpointCtx, RestartCtx } from './context.js';
import { CkptError } from './errors.js';
import type { CheckpointTask, FileInfo, RestartTask, SavedVma, VmaInfo } from './task.js';

/**
 * How to save, recreate and count the users of one type of shared object
 * (linux-cr's `ckpt_obj_ops`).
 */
export interface ObjectOps<T = any> {
  /** Unique type name, e.g. `file`, `pipe`, `uts_ns`. */
  readonly name: string;
  /** Unique number stored in objref records. */
  readonly id: number;
  /**
   * Write the object's own records. Core has already written the objref
   * record that announces it.
   */
  checkpoint(ctx: CheckpointCtx, obj: T, objref: number): void;
  /** Read the object's records (right after its objref record) and recreate it. */
  restore(ctx: RestartCtx, objref: number): T;
  /**
   * How many references the kernel holds to the object, all processes
   * included. Compared with the objhash's count for leak detection;
   * without it, the type is exempt from leak detection.
   */
  countUsers?(ctx: CheckpointCtx, obj: T): number;
  /** Name the object in messages, e.g. `pipe:[1234]`. */
  describe?(obj: T): string;
}

/**
 * One step of saving or restoring a task (credentials, memory, files,
 * signals, registers). Phases run in ascending `order`, on both sides, so
 * the records they write are read back in the same order.
 */
export interface TaskPhase {
  /** Unique name, e.g. `mm`, `files`, `cpu`. */
  readonly name: string;
  /** Position among phases; lower runs first. */
  readonly order: number;
  /**
   * Optional, checkpoint only: called for every task, once all are frozen
   * and before any is saved. Post here (`task.sys.post`) the injected calls
   * `checkpoint` will need the results of, and keep them in `task.data`:
   * every phase's posted calls run in one round trip per task, all tasks at
   * once, instead of one round trip per phase and task, one after another.
   * `checkpoint` must still work without it (run the calls then).
   */
  prepare?(ctx: CheckpointCtx, task: CheckpointTask): void;
  /** Save this part of `task`'s state. */
  checkpoint(ctx: CheckpointCtx, task: CheckpointTask): void;
  /** Restore this part of `task`'s state from the records `checkpoint` wrote. */
  restore(ctx: RestartCtx, task: RestartTask): void;
  /**
   * Optional, for phases with per-thread state (registers, the blocked
   * mask, credentials…): like `prepare`, for each thread of a
   * multi-threaded process other than its leader. `thread` is that thread
   * as a task (its own pid is its thread id, its `sys` runs calls in it);
   * `task` is the process's leader.
   */
  prepareThread?(ctx: CheckpointCtx, thread: CheckpointTask, task: CheckpointTask): void;
  /**
   * Save the per-thread part of this phase's state for `thread`, a thread
   * of `task` other than its leader. `checkpoint` saved the leader's, and
   * whatever the threads share (memory, files, signal actions, limits);
   * phases without this method have no per-thread state. Runs after every
   * phase's `checkpoint` of the process, thread by thread.
   */
  checkpointThread?(ctx: CheckpointCtx, thread: CheckpointTask, task: CheckpointTask): void;
  /**
   * Restore what `checkpointThread` saved. The thread exists (created
   * when the tree was built, sharing the process's memory, files and
   * signal actions) and every phase's `restore` of the process has run.
   */
  restoreThread?(ctx: RestartCtx, thread: RestartTask, task: RestartTask): void;
}

/**
 * Saves and restores one kind of open file (linux-cr's `->checkpoint()` in
 * `file_operations`). The first handler whose `match` accepts a file owns it.
 */
export interface FileHandler {
  /** Unique kind name, e.g. `regular`, `pipe`, `chrdev`. */
  readonly kind: string;
  /** Number stored in file records to pick the restore handler. */
  readonly id: number;
  match(file: FileInfo): boolean;
  /** Write the file's records; returns nothing (the fd table refers to it by objref). */
  checkpoint(ctx: CheckpointCtx, task: CheckpointTask, file: FileInfo): void;
  /**
   * Recreate the file from its records inside `task`; returns the fd
   * number it occupies in the task.
   */
  restore(ctx: RestartCtx, task: RestartTask): number;
}

/**
 * Saves and restores one kind of memory region (linux-cr's
 * `vm_operations_struct->checkpoint()`).
 */
export interface VmaHandler {
  /** Unique kind name, e.g. `anon-private`, `file-private`, `vdso`. */
  readonly kind: string;
  /** Number stored in VMA records to pick the restore handler. */
  readonly id: number;
  match(vma: VmaInfo): boolean;
  /** Describe the region (and how many pages follow) for the VMA record. */
  describe(task: CheckpointTask, vma: VmaInfo): SavedVma;
  /** Which pages of the region to save (runs of present pages). */
  pages(task: CheckpointTask, vma: VmaInfo): { start: bigint; pages: number }[];
  /**
   * Recreate the region in `task`. Its pages are written afterwards; a
   * returned function runs after that (e.g. to drop a temporary PROT_WRITE).
   */
  // biome-ignore lint/suspicious/noConfusingVoidType: most handlers return nothing
  restore(ctx: RestartCtx, task: RestartTask, vma: SavedVma): void | (() => void);
}

/** What a plugin contributes. Every part is optional. */
export interface CkptPlugin {
  /** Unique plugin name, e.g. `@ckpt/mm` or `ckpt-plugin-eventfd`. */
  readonly name: string;
  readonly records?: readonly RecordKind[];
  readonly objects?: readonly ObjectOps[];
  readonly phases?: readonly TaskPhase[];
  readonly files?: readonly FileHandler[];
  readonly vmas?: readonly VmaHandler[];
  /** An architecture this plugin supports (arch packages only). */
  readonly arch?: ArchSupport;
}

/** Identity helper that type-checks a plugin declaration. */
export function definePlugin(plugin: CkptPlugin): CkptPlugin {
  return plugin;
}

function duplicate(what: string, plugin: string, other: string): never {
  throw new CkptError(
    'EEXIST',
    `plugin ${plugin} registers ${what}, already registered by ${other}`,
  );
}

/** The ops tables built from a set of plugins. */
export class Registry {
  private readonly pluginList: CkptPlugin[] = [];
  private readonly recordsByType = new Map<number, { kind: RecordKind; plugin: string }>();
  private readonly recordNames = new Map<string, string>();
  private readonly objectsByName = new Map<string, { ops: ObjectOps; plugin: string }>();
  private readonly objectsById = new Map<number, ObjectOps>();
  private readonly phaseList: { phase: TaskPhase; plugin: string; seq: number }[] = [];
  private readonly fileList: { handler: FileHandler; plugin: string }[] = [];
  private readonly vmaList: { handler: VmaHandler; plugin: string }[] = [];
  private readonly archs = new Map<number, { arch: ArchSupport; plugin: string }>();

  constructor(plugins: readonly CkptPlugin[] = []) {
    for (const p of plugins) this.use(p);
  }

  /**
   * Register a plugin. Throws EEXIST when the plugin, or any record type,
   * object type, phase or handler it declares, is already registered; in
   * that case nothing of the plugin is registered.
   */
  use(plugin: CkptPlugin): this {
    if (!plugin || typeof plugin.name !== 'string' || plugin.name === '') {
      throw new CkptError('EINVAL', 'a plugin must be an object with a non-empty name');
    }
    if (this.pluginList.some((p) => p.name === plugin.name)) {
      throw new CkptError('EEXIST', `plugin ${plugin.name} is registered twice`);
    }
    this.checkNoDuplicates(plugin);
    const by = plugin.name;
    for (const kind of plugin.records ?? []) {
      this.recordsByType.set(kind.type, { kind, plugin: by });
      this.recordNames.set(kind.name, by);
    }
    for (const ops of plugin.objects ?? []) {
      this.objectsByName.set(ops.name, { ops, plugin: by });
      this.objectsById.set(ops.id, ops);
    }
    for (const phase of plugin.phases ?? []) {
      this.phaseList.push({ phase, plugin: by, seq: this.phaseList.length });
    }
    for (const handler of plugin.files ?? []) this.fileList.push({ handler, plugin: by });
    for (const handler of plugin.vmas ?? []) this.vmaList.push({ handler, plugin: by });
    if (plugin.arch) this.archs.set(plugin.arch.archId, { arch: plugin.arch, plugin: by });
    this.pluginList.push(plugin);
    return this;
  }

  // Validate the whole plugin first so a rejected plugin leaves no trace.
  private checkNoDuplicates(plugin: CkptPlugin): void {
    const by = plugin.name;
    const seen = new Set<string>();
    const once = (key: string, what: string) => {
      if (seen.has(key)) duplicate(what, by, by);
      seen.add(key);
    };
    for (const kind of plugin.records ?? []) {
      const prev = this.recordsByType.get(kind.type);
      if (prev) duplicate(`record type ${kind.type} (${kind.name})`, by, prev.plugin);
      const prevName = this.recordNames.get(kind.name);
      if (prevName) duplicate(`record name '${kind.name}'`, by, prevName);
      once(`rt:${kind.type}`, `record type ${kind.type}`);
      once(`rn:${kind.name}`, `record name '${kind.name}'`);
    }
    for (const ops of plugin.objects ?? []) {
      const prev = this.objectsByName.get(ops.name);
      if (prev) duplicate(`object type '${ops.name}'`, by, prev.plugin);
      const prevId = this.objectsById.get(ops.id);
      if (prevId)
        duplicate(
          `object type id ${ops.id} (${ops.name})`,
          by,
          this.objectsByName.get(prevId.name)!.plugin,
        );
      once(`on:${ops.name}`, `object type '${ops.name}'`);
      once(`oi:${ops.id}`, `object type id ${ops.id}`);
    }
    for (const phase of plugin.phases ?? []) {
      const prev = this.phaseList.find((p) => p.phase.name === phase.name);
      if (prev) duplicate(`task phase '${phase.name}'`, by, prev.plugin);
      if (!Number.isFinite(phase.order)) {
        throw new CkptError(
          'EINVAL',
          `plugin ${by}: task phase '${phase.name}' needs a numeric order`,
        );
      }
      once(`ph:${phase.name}`, `task phase '${phase.name}'`);
    }
    if (plugin.arch) {
      const prev = this.archs.get(plugin.arch.archId);
      if (prev) duplicate(`arch ${plugin.arch.machine}`, by, prev.plugin);
    }
    for (const [list, label, mine] of [
      [this.fileList, 'file handler', plugin.files ?? []],
      [this.vmaList, 'VMA handler', plugin.vmas ?? []],
    ] as const) {
      for (const h of mine) {
        const prev = list.find((e) => e.handler.kind === h.kind || e.handler.id === h.id);
        if (prev) duplicate(`${label} '${h.kind}' (id ${h.id})`, by, prev.plugin);
        once(`${label}:k:${h.kind}`, `${label} '${h.kind}'`);
        once(`${label}:i:${h.id}`, `${label} id ${h.id}`);
      }
    }
  }

  /** Registered plugins, in registration order. */
  get plugins(): readonly CkptPlugin[] {
    return this.pluginList;
  }

  /** The arch support registered for `archId`, if any. */
  arch(archId: number): ArchSupport | undefined {
    return this.archs.get(archId)?.arch;
  }

  /** The record kind registered for `type`, if any. */
  recordKind(type: number): RecordKind | undefined {
    return this.recordsByType.get(type)?.kind;
  }

  /** Every registered record kind, by type number. */
  recordKinds(): RecordKind[] {
    return [...this.recordsByType.values()].map((e) => e.kind).sort((a, b) => a.type - b.type);
  }

  /** Name of a record type, for messages. */
  recordName(type: number): string | undefined {
    return this.recordKind(type)?.name;
  }

  /** The ops of an object type, by name; throws ENOENT when unknown. */
  objectOps(name: string): ObjectOps {
    const e = this.objectsByName.get(name);
    if (!e) throw new CkptError('ENOENT', `no plugin registers the object type '${name}'`);
    return e.ops;
  }

  /** The ops of an object type, by id, or undefined. */
  objectOpsById(id: number): ObjectOps | undefined {
    return this.objectsById.get(id);
  }

  /** Task phases in execution order (by `order`, then registration). */
  phases(): TaskPhase[] {
    return [...this.phaseList]
      .sort((a, b) => a.phase.order - b.phase.order || a.seq - b.seq)
      .map((e) => e.phase);
  }

  /** The handler that owns `file`, or undefined when no plugin supports it. */
  fileHandlerFor(file: FileInfo): FileHandler | undefined {
    return this.fileList.find((e) => e.handler.match(file))?.handler;
  }

  /** The file handler with id `id`, or undefined. */
  fileHandlerById(id: number): FileHandler | undefined {
    return this.fileList.find((e) => e.handler.id === id)?.handler;
  }

  /** The handler that owns `vma`, or undefined. */
  vmaHandlerFor(vma: VmaInfo): VmaHandler | undefined {
    return this.vmaList.find((e) => e.handler.match(vma))?.handler;
  }

  /** The VMA handler with id `id`, or undefined. */
  vmaHandlerById(id: number): VmaHandler | undefined {
    return this.vmaList.find((e) => e.handler.id === id)?.handler;
  }
}
