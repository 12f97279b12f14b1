/**
 * A task being rebuilt, as restart phases see it: created (see mktree),
 * frozen, with the _restorer_ mapped in it (one page holding a syscall
 * instruction that injection uses, three of scratch memory).
 */

import type { ArchSupport } from '../arch.js';
import { CkptError } from '../errors.js';
import type { FrozenTask } from '../kernel/freeze.js';
import { type Finish, isSyscallError, SyscallInjector } from '../kernel/inject.js';
import { errnoText } from '../kernel/libc.js';
import { NT, setRegset, setSigmask } from '../kernel/ptrace.js';
import { readMaps } from '../proc/index.js';
import type { RestartTask } from '../task.js';
import { InjectedSyscalls, ProcTaskMemory } from './syscalls.js';

const PAGE = 4096n;
/** One page of code (a syscall instruction) and three of scratch. */
const RESTORER_SIZE = 4n * PAGE;
const PROT_RWX = 7;
const MAP_PRIVATE_ANON = 0x22;
const MAP_FIXED_NOREPLACE = 0x100000;
/** CLONE_FS | CLONE_FILES: a thread shares both with its process (see threads.ts). */
const SHARED_BY_THREADS = 0x200 | 0x400;

/** A task being rebuilt, as phases see it. */
export class RestoringTask implements RestartTask {
  readonly data = new Map<string, unknown>();
  private readonly memory: ProcTaskMemory;
  sys: InjectedSyscalls;
  restorer: { start: bigint; end: bigint };
  finalRegs: Buffer | undefined;
  finalSigmask: bigint | undefined;
  /** See {@link RestartTask.ckptPidfd}; set by the tree builder. */
  ckptPidfd = -1;
  /** See {@link RestartTask.sharesWithParent}; set by the tree builder. */
  sharesWithParent = 0;
  /**
   * The process's other threads, created with it by the tree builder and
   * held in their first stop, until the engine restores them (see
   * threads.ts), by saved thread id.
   */
  readonly threadsToRestore: { frozen: FrozenTask; savedTid: number }[] = [];
  /** The process's other threads, restored: finished and let go with it. */
  readonly threads: RestoringTask[] = [];

  /**
   * @param inherited - the restorer of the parent the task was cloned from
   *   (a copy of it is already mapped in the task, at the same address);
   *   without it, a restorer is mapped using the syscall instruction at
   *   `syscallAddr` (default: the stub's).
   */
  constructor(
    readonly frozen: FrozenTask,
    readonly savedPid: number,
    readonly arch: ArchSupport,
    inherited?: { start: bigint; end: bigint },
    syscallAddr = arch.stub.syscallAddr,
  ) {
    this.memory = new ProcTaskMemory(frozen.pid);
    // Reusing the inherited copy, rather than mapping one more, also keeps
    // two restorers from merging into one VMA that the memory phase would
    // then see as task memory and unmap.
    const addr = inherited?.start ?? this.mapRestorer(syscallAddr);
    this.restorer = { start: addr, end: addr + RESTORER_SIZE };
    this.sys = this.injectorAt(addr);
  }

  /**
   * One of `leader`'s other threads (`frozen`, created with it), ready for
   * the phases' `restoreThread`: with restorer pages of its own, mapped
   * through the leader's syscall instruction in the address space they
   * share, which the leader's phases have rebuilt (the thread's pages are
   * not in the way of anything saved).
   */
  static threadOf(leader: RestoringTask, frozen: FrozenTask, savedTid: number): RestoringTask {
    leader.sys.settle();
    const thread = new RestoringTask(
      frozen,
      savedTid,
      leader.arch,
      undefined,
      leader.restorer.start,
    );
    thread.sharesWithParent = SHARED_BY_THREADS;
    return thread;
  }

  /** Map a restorer, running mmap at the syscall instruction at `syscallAddr`. */
  private mapRestorer(syscallAddr: bigint): bigint {
    const first = new SyscallInjector(this.frozen.pid, this.arch.convention, {
      syscallAddr,
    });
    let addr: bigint;
    try {
      addr = first.call(this.arch.syscalls.mmap, [
        0,
        RESTORER_SIZE,
        PROT_RWX,
        MAP_PRIVATE_ANON,
        -1,
        0,
      ]);
    } finally {
      first.close();
    }
    if (isSyscallError(addr)) {
      throw new CkptError(
        'ESYS',
        `cannot map the restorer in pid ${this.frozen.pid} (${errnoText(Number(-addr))})`,
        { pid: this.frozen.pid },
      );
    }
    return addr;
  }

  /**
   * The task's pid. Whoever asks may be about to reach the task through it
   * (ptrace, /proc): a round trip launched in the background (see
   * `TaskSyscalls.launch`) is completed first, as for {@link mem}.
   */
  get pid(): number {
    this.sys.settle();
    return this.frozen.pid;
  }

  /** The task's memory, once a launched round trip is complete. */
  get mem(): ProcTaskMemory {
    this.sys.settle();
    return this.memory;
  }

  private injectorAt(addr: bigint): InjectedSyscalls {
    this.memory.write(addr, this.arch.convention.syscallInsn);
    return new InjectedSyscalls(this.frozen.pid, this.arch, {
      mem: this.memory.procMem(),
      syscallAddr: addr,
      // The rest of the code page takes batches of calls.
      codePage: addr,
      scratch: { addr: addr + PAGE, size: Number(RESTORER_SIZE - PAGE) },
    });
  }

  keepRestorerClear(ranges: readonly { start: bigint; end: bigint }[]): void {
    const inRanges = (s: bigint, e: bigint) => ranges.some((r) => s < r.end && r.start < e);
    if (!inRanges(this.restorer.start, this.restorer.end)) return;
    // Find a gap, above 64 KiB, that neither the address space to come nor
    // what the task maps now (the stub, its stack, the vDSO) takes.
    const taken = [...ranges, ...readMaps(this.frozen.pid)];
    const overlaps = (s: bigint, e: bigint) => taken.some((r) => s < r.end && r.start < e);
    const sorted = [...taken].sort((a, b) => (a.start < b.start ? -1 : 1));
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

  /**
   * Stop injecting into the task and put its registers back, e.g. before
   * it is made to exit as a zombie.
   */
  closeInjection(): void {
    try {
      this.sys.close();
    } finally {
      this.mem.close();
    }
  }

  /**
   * Finishing the task, step 1 of 3 (restart runs each step in every task
   * at once, see `allAtOnce`; this one in two parts): run the calls phases
   * posted, and close ckpt's pidfd, in one round trip.
   */
  startFinish(): Finish<void> | undefined {
    // Refused before anything more runs in the task.
    this.registersToRestore();
    // Threads have none of their own: they share the leader's fd table.
    if (this.ckptPidfd >= 0) this.sys.post([{ name: 'close', args: [this.ckptPidfd] }]);
    return this.sys.startPosted();
  }

  /**
   * Step 2 of 3, in two parts: unmap the restorer (which cannot unmap
   * itself in a batch run from it, only as a call of its own).
   */
  startRemovingRestorer(): Finish<void> {
    const finish = this.sys.startCheck(
      'munmap',
      [this.restorer.start, RESTORER_SIZE],
      'removing the restorer',
    );
    return () => {
      finish();
    };
  }

  /** Step 3 of 3: the task's own registers and final signal mask; it is ready to run. */
  letGo(): void {
    this.sys.close();
    this.mem.close();
    // Signals stayed blocked while injecting; no syscall runs after this.
    if (this.finalSigmask !== undefined) setSigmask(this.pid, this.finalSigmask);
    setRegset(this.pid, NT.PRSTATUS, this.registersToRestore());
  }

  private registersToRestore(): Buffer {
    if (!this.finalRegs) {
      throw new CkptError(
        'EINVAL',
        `no registers were restored for pid ${this.pid} (missing arch plugin?)`,
        { pid: this.pid },
      );
    }
    return this.finalRegs;
  }
}
