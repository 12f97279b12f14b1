/**
 * The engine's implementation of `TaskSyscalls` and `TaskMemory` over the
 * kernel interface: named syscalls mapped to the arch's numbers, run with
 * the syscall injector; memory through /proc/PID/mem.
 */

import type { ArchSupport, SyscallName } from '../arch.js';
import { CkptError, isCkptError } from '../errors.js';
import { BATCH_ENTRY_SIZE } from '../kernel/convention.js';
import {
  type Finish,
  type InjectorOptions,
  isSyscallError,
  SyscallInjector,
} from '../kernel/inject.js';
import { errnoText } from '../kernel/libc.js';
import {
  type MemRange,
  type MemWrite,
  ProcMem,
  readRanges,
  writeRanges,
  writeScattered,
} from '../kernel/memory.js';
import type { PostOptions, SyscallRequest, TaskMemory, TaskSyscalls } from '../task.js';
import { aligned, dataSize, type Post, takeFitting } from './posted-groups.js';

/**
 * A batch of posted calls holds at most this many calls and this much of
 * their data (one post alone may hold more): posts beyond run first. Data
 * beyond the scratch room runs in several groups (see `runOverflow`).
 */
const MAX_POSTED_CALLS = 128;
const MAX_POSTED_BYTES = 8192;

/** Run a process_vm_*v transfer; false if the kernel refused (protected page). */
function tryVm(fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch (e) {
    if (isCkptError(e)) return false;
    throw e;
  }
}

/** Format a negative syscall result as `ENAME (message)`. */
function describeErrno(r: bigint): string {
  return errnoText(Number(-r));
}

/**
 * Syscalls in one stopped task. The injector is created on first use (it
 * saves the task's registers then) and `close()` puts everything back.
 */
export class InjectedSyscalls implements TaskSyscalls {
  private injector: SyscallInjector | undefined;
  private fixedScratch: { addr: bigint; size: number } | undefined;
  /** The scratch area as handed out, at its largest (results may be copied there). */
  private lastScratch: { addr: bigint; size: number } | undefined;
  /** Calls posted and not run yet (see {@link post}). */
  private readonly posted: Post[] = [];

  constructor(
    readonly pid: number,
    private readonly arch: ArchSupport,
    private readonly options: InjectorOptions & { scratch?: { addr: bigint; size: number } } = {},
  ) {
    this.fixedScratch = options.scratch;
  }

  /** Completes a launched round trip (see {@link launch}). */
  private inFlight: (() => void) | undefined;
  /** Steps waiting for the task to be stopped (see {@link whenStopped}). */
  private readonly onStop: ((pid: number) => void)[] = [];

  /** The injector, the task stopped: everything that runs in it comes here. */
  private get inj(): SyscallInjector {
    this.settle();
    this.injector ??= new SyscallInjector(this.pid, this.arch.convention, this.options);
    return this.injector;
  }

  launch(calls: readonly SyscallRequest[], done: (results: bigint[]) => void): void {
    const finish = this.startBatch(calls);
    this.inFlight = () => done(finish());
  }

  settle(): void {
    const complete = this.inFlight;
    this.inFlight = undefined;
    try {
      complete?.();
    } finally {
      // Even after a failed check: the steps leave the task consistent.
      for (const fn of this.onStop.splice(0)) fn(this.pid);
    }
  }

  whenStopped(fn: (pid: number) => void): void {
    if (this.inFlight) this.onStop.push(fn);
    else fn(this.pid);
  }

  /** Whether an injector exists (and so registers were saved). */
  get active(): boolean {
    return this.injector !== undefined;
  }

  /** The injector's scratch mapping, if it made one (to skip when saving memory). */
  get scratchRange(): { start: bigint; end: bigint } | undefined {
    return this.injector?.scratchRange;
  }

  private nr(name: SyscallName): number {
    const nr = this.arch.syscalls[name];
    if (nr === undefined) {
      throw new CkptError('ENOSYS', `syscall ${name} is not known on ${this.arch.machine}`, {
        pid: this.pid,
      });
    }
    return nr;
  }

  call(name: SyscallName, args: readonly (bigint | number)[] = []): bigint {
    // Posted calls run first, in the same round trip.
    if (this.posted.length > 0) return this.batch([{ name, args }])[0]!;
    const r = this.inj.call(this.nr(name), args);
    this.noteCall(name, args);
    return r;
  }

  /**
   * {@link check} in two steps (see `SyscallInjector.startCall`); posted
   * calls run first, at once.
   */
  startCheck(name: SyscallName, args: readonly (bigint | number)[], what: string): Finish<bigint> {
    if (this.posted.length > 0) this.batch([]);
    const finish = this.inj.startCall(this.nr(name), args);
    return () => {
      const r = finish();
      this.noteCall(name, args);
      if (isSyscallError(r)) throw this.failure(name, r, what);
      return r;
    };
  }

  check(name: SyscallName, args: readonly (bigint | number)[], what: string): bigint {
    const r = this.call(name, args);
    if (isSyscallError(r)) throw this.failure(name, r, what);
    return r;
  }

  batch(calls: readonly SyscallRequest[]): bigint[] {
    return this.startBatch(calls)();
  }

  /**
   * Run the posted calls (see {@link post}) in two steps: the task is
   * resumed into them, and the returned function waits and hands out their
   * results, so that other tasks can run theirs meanwhile. Undefined when
   * nothing is posted. Nothing else may touch this task in between.
   */
  startPosted(): Finish<void> | undefined {
    if (this.posted.length === 0) return undefined;
    const finish = this.startBatch([]);
    return () => {
      finish();
    };
  }

  /**
   * Map ckpt's code page in the task in two steps (see
   * `SyscallInjector.startParasite`): the first injected call otherwise
   * does it.
   */
  startSetUp(): Finish<void> {
    return this.inj.startParasite();
  }

  /** {@link batch} up to the resume of the task; the function waits and gives the results. */
  private startBatch(calls: readonly SyscallRequest[]): Finish<bigint[]> {
    this.settle();
    for (const c of calls) for (const at of c.resultTo ?? []) this.checkInScratch(at);
    try {
      this.runOverflow();
    } catch (e) {
      // As when they all run in one batch: none is left to run later.
      this.posted.length = 0;
      throw e;
    }
    return this.startGroup(this.posted.splice(0), calls);
  }

  /**
   * The scratch room for the data of `posts` (made if there is none yet
   * and they have data), after the area in use.
   */
  private postedRoom(posts: readonly Post[]): { addr: bigint; size: number } | undefined {
    let free = this.spare();
    if (posts.some((p) => (p.data?.length ?? 0) > 0)) {
      if (!free) {
        this.inj.scratch(1);
        free = this.spare();
      }
      if (!free)
        throw new CkptError('EINVAL', `no scratch room in pid ${this.pid}`, { pid: this.pid });
    }
    return free;
  }

  /**
   * While the posted calls' data does not fit the scratch room, run them
   * in groups that fit, first so that each group's table fits beside its
   * data (one round trip a group), else data alone. Thousands of fds'
   * worth of structs (an epoll's targets) take a few round trips, not a
   * failure; the common case, data that fits, runs as one batch.
   */
  private runOverflow(): void {
    for (;;) {
      const room = this.postedRoom(this.posted);
      const bytes = this.posted.reduce((k, p) => k + dataSize(p.data), 0);
      if (!room || bytes <= room.size) return;
      // The table starts 64-aligned after the data, one entry more than calls.
      const withTable = (n: number, b: number) =>
        aligned(b) + 64 + (n + 1) * BATCH_ENTRY_SIZE <= room.size;
      let n = takeFitting(this.posted, withTable);
      if (n === 0) n = takeFitting(this.posted, (_n, b) => b <= room.size);
      if (n === 0) {
        const first = dataSize(this.posted[0]!.data);
        throw new CkptError(
          'EINVAL',
          `the data of posted calls (${first} bytes) does not fit the ${room.size} bytes of scratch room left in pid ${this.pid}`,
          { pid: this.pid },
        );
      }
      this.startGroup(this.posted.splice(0, n), [])();
    }
  }

  /**
   * `posted` (whose data fits the scratch room), then `calls`, up to the
   * resume of the task; the function waits and gives the results of `calls`.
   */
  private startGroup(posted: Post[], calls: readonly SyscallRequest[]): Finish<bigint[]> {
    // Posted calls first: their data goes above the scratch area in use,
    // their references shift by the calls before them.
    const all: { name: SyscallName; args: SyscallRequest['args']; resultTo?: readonly bigint[] }[] =
      [];
    const free = this.postedRoom(posted);
    // Every data part, 8-byte aligned, in one write into the task.
    let used = 0;
    const offsets = posted.map((p) =>
      (p.data ?? []).map((d) => {
        const at = used;
        used += aligned(d.length);
        return at;
      }),
    );
    if (free && used > free.size) {
      throw new CkptError(
        'EINVAL',
        `the data of posted calls (${used} bytes) does not fit the ${free.size} bytes of scratch room left in pid ${this.pid}`,
        { pid: this.pid },
      );
    }
    if (used > 0) {
      const staged = Buffer.alloc(used);
      posted.forEach((p, k) => {
        p.data?.forEach((d, i) => {
          d.copy(staged, offsets[k]![i]);
        });
      });
      this.inj.writeMemory(free!.addr, staged);
    }
    const placed = offsets.map((o) => o.map((at) => free!.addr + BigInt(at)));
    posted.forEach((p, k) => {
      const base = all.length;
      const addrs = placed[k]!;
      for (const c of p.calls) {
        all.push({
          name: c.name,
          args: c.args.map((a) =>
            typeof a !== 'object'
              ? a
              : 'data' in a
                ? addrs[a.data]! + BigInt(a.offset ?? 0)
                : { result: base + a.result },
          ),
        });
      }
    });
    const first = all.length;
    for (const c of calls) {
      all.push({
        ...c,
        args: c.args.map((a) =>
          typeof a === 'object' && 'result' in a ? { result: first + a.result } : a,
        ),
      });
    }
    const finish = this.inj.startMany(
      all.map((c) => ({
        nr: this.nr(c.name),
        args: c.args as readonly (bigint | number | { result: number })[],
        resultTo: c.resultTo,
      })),
      signalsSent(all),
      () => {
        const room = this.spare();
        return room && { addr: room.addr + BigInt(used), size: room.size - used };
      },
    );
    return () => {
      const results = finish();
      for (const c of all) this.noteCall(c.name, c.args);
      // What the calls wrote into the data of posts that asked for it.
      const back =
        posted.some((p) => p.readBack) && free ? this.inj.readMemory(free.addr, used) : undefined;
      let next = 0;
      let failure: unknown;
      posted.forEach((p, k) => {
        const mine = results.slice(next, next + p.calls.length);
        next += p.calls.length;
        const data =
          back && p.readBack
            ? (p.data ?? []).map((d, i) => {
                const off = offsets[k]![i]!;
                return Buffer.from(back.subarray(off, off + d.length));
              })
            : [];
        try {
          p.done?.(mine, data);
        } catch (e) {
          failure ??= e;
        }
      });
      if (failure !== undefined) throw failure;
      return results.slice(first);
    };
  }

  post(calls: readonly SyscallRequest[], options: PostOptions = {}): void {
    for (const c of calls) {
      if (c.resultTo)
        throw new CkptError('EINVAL', 'a posted call cannot copy its result to memory', {
          pid: this.pid,
        });
    }
    const n = this.posted.reduce((k, p) => k + p.calls.length, 0);
    const bytes = this.posted.reduce((k, p) => k + dataSize(p.data), 0);
    // The posts before run first when this one would take their batch past
    // its bounds: a batch's data must fit the scratch room.
    if (
      this.posted.length > 0 &&
      (n + calls.length > MAX_POSTED_CALLS || bytes + dataSize(options.data) > MAX_POSTED_BYTES)
    )
      this.batch([]);
    this.posted.push({ ...options, calls });
  }

  checkBatch(calls: readonly (SyscallRequest & { what: string })[]): bigint[] {
    const results = this.batch(calls);
    results.forEach((r, i) => {
      if (isSyscallError(r)) throw this.failure(calls[i]!.name, r, calls[i]!.what);
    });
    return results;
  }

  postChecked(
    calls: readonly (SyscallRequest & { what: string })[],
    options: PostOptions = {},
  ): void {
    this.post(calls, {
      ...options,
      done: (results, data) => {
        results.forEach((r, i) => {
          if (isSyscallError(r)) throw this.failure(calls[i]!.name, r, calls[i]!.what);
        });
        options.done?.(results, data);
      },
    });
  }

  /** A new signal action may change which signal can end a batch. */
  private noteCall(name: SyscallName, args: SyscallRequest['args']): void {
    const act = args[1];
    if (name === 'rt_sigaction' && (typeof act === 'object' || BigInt(act ?? 0) !== 0n))
      this.injector?.signalActionsChanged();
  }

  /**
   * The scratch area above what has been asked of it: room a batch may use
   * for its table (structs staged for the calls are below).
   */
  private spare(): { addr: bigint; size: number } | undefined {
    const area = this.fixedScratch ?? this.injector?.scratchArea;
    if (!area) return undefined;
    const used = this.lastScratch?.addr === area.addr ? this.lastScratch.size : 0;
    const from = Math.ceil(used / 64) * 64;
    if (from >= area.size) return undefined;
    return { addr: area.addr + BigInt(from), size: area.size - from };
  }

  /** Results are copied only into the scratch area: anything else is the task's memory. */
  private checkInScratch(at: bigint): void {
    const area = this.lastScratch;
    if (area && at >= area.addr && at + 8n <= area.addr + BigInt(area.size)) return;
    throw new CkptError(
      'EINVAL',
      `a batched call's result cannot be written at 0x${at.toString(16)} in pid ${this.pid}: outside the scratch area`,
      { pid: this.pid, address: at },
    );
  }

  private failure(name: SyscallName, r: bigint, what: string): CkptError {
    return new CkptError(
      'ESYS',
      `${what} in pid ${this.pid} failed: ${name}() returned ${describeErrno(r)}`,
      {
        pid: this.pid,
        syscall: name,
        errno: Number(-r),
      },
    );
  }

  scratch(size: number): bigint {
    const addr = this.scratchArea(size);
    if (!this.lastScratch || this.lastScratch.addr !== addr || this.lastScratch.size < size)
      this.lastScratch = { addr, size };
    return addr;
  }

  private scratchArea(size: number): bigint {
    if (this.fixedScratch) {
      if (size > this.fixedScratch.size) {
        throw new CkptError(
          'EINVAL',
          `scratch request of ${size} bytes exceeds the restorer's ${this.fixedScratch.size}`,
          {
            pid: this.pid,
          },
        );
      }
      return this.fixedScratch.addr;
    }
    return this.inj.scratch(size);
  }

  /** Run the posted calls, restore registers and undo the scratch mapping. Safe to call twice. */
  close(): void {
    this.startClose()();
  }

  /**
   * {@link close} in two steps (see `SyscallInjector.startClose`): posted
   * calls run first, at once; the returned function waits for the task and
   * finishes. Nothing else may touch this task in between.
   */
  startClose(): Finish<void> {
    const injector = this.injector;
    if (!injector) return () => {};
    try {
      if (this.posted.length > 0) this.batch([]);
    } catch (e) {
      this.injector = undefined;
      try {
        injector.close();
      } catch {
        // The calls' failure says more.
      }
      throw e;
    }
    this.injector = undefined;
    return injector.startClose();
  }
}

/**
 * Signals the calls send to a task (the task itself, in a batch): a batch
 * must not end with one of them (see `SyscallInjector.callMany`).
 */
function signalsSent(calls: readonly Pick<SyscallRequest, 'name' | 'args'>[]): bigint {
  let mask = 0n;
  const add = (sig: SyscallRequest['args'][number] | undefined) => {
    if (typeof sig === 'object') return;
    const n = Number(sig ?? 0);
    if (n >= 1 && n <= 64) mask |= 1n << BigInt(n - 1);
  };
  for (const c of calls) {
    if (c.name === 'kill' || c.name === 'rt_sigqueueinfo') add(c.args[1]);
    else if (c.name === 'rt_tgsigqueueinfo') add(c.args[2]);
  }
  return mask;
}

/**
 * Transfers at least this large try process_vm_readv/writev first: about
 * twice as fast as /proc/PID/mem, but they honour page protections, so a
 * protected page falls back to /proc/PID/mem (which forces access).
 */
const VM_RW_MIN = 64 * 1024;

/**
 * Read `ranges` of `mem`, in order, into `into` (their total length): in
 * one go where the memory can (`TaskMemory.readRangesInto`), else range by
 * range.
 */
export function readMemoryRanges(mem: TaskMemory, ranges: readonly MemRange[], into: Buffer): void {
  if (mem.readRangesInto) mem.readRangesInto(ranges, into);
  else readEachRange(mem, ranges, into);
}

function readEachRange(mem: TaskMemory, ranges: readonly MemRange[], into: Buffer): void {
  let off = 0;
  for (const r of ranges) {
    mem.readInto(r.addr, into.subarray(off, off + r.length));
    off += r.length;
  }
}

/** Memory of a task: bulk through process_vm_*v, forced access through /proc/PID/mem. */
export class ProcTaskMemory implements TaskMemory {
  private mem: ProcMem | undefined;
  constructor(readonly pid: number) {}

  /** The task's /proc/PID/mem, opened on first use (shared with its injector, see InjectorOptions.mem). */
  procMem(): ProcMem {
    this.mem ??= new ProcMem(this.pid);
    return this.mem;
  }

  private get m(): ProcMem {
    return this.procMem();
  }

  read(addr: bigint, length: number): Buffer {
    return this.m.read(addr, length);
  }

  readInto(addr: bigint, into: Buffer): void {
    if (
      into.length >= VM_RW_MIN &&
      tryVm(() => readRanges(this.pid, [{ addr, length: into.length }], into))
    )
      return;
    this.m.read(addr, into);
  }

  readRangesInto(ranges: readonly MemRange[], into: Buffer): void {
    // One process_vm_readv for them all; a protected page anywhere sends
    // them one by one through readInto.
    if (ranges.length > 1 && tryVm(() => readRanges(this.pid, ranges, into))) return;
    readEachRange(this, ranges, into);
  }

  write(addr: bigint, data: Buffer): void {
    if (
      data.length >= VM_RW_MIN &&
      tryVm(() => writeRanges(this.pid, [{ addr, length: data.length }], data))
    )
      return;
    this.m.write(addr, data);
  }

  writeEach(writes: readonly MemWrite[]): void {
    // process_vm_writev for as many as it takes; one into a read-only page
    // (relro, text) goes through /proc/PID/mem, then on with the rest.
    for (let i = 0; i < writes.length; ) {
      i += writes.length - i > 1 ? writeScattered(this.pid, writes.slice(i)) : 0;
      if (i < writes.length) {
        const w = writes[i++]!;
        this.write(w.addr, w.data);
      }
    }
  }

  close(): void {
    this.mem?.close();
    this.mem = undefined;
  }
}
