/**
 * Creating the tasks of a restart with their original pids (linux-cr's
 * mktree + clone_with_pids, done with clone3's `set_tid`).
 *
 * A tiny stub program (supplied by the arch) is spawned and frozen; the
 * root task is cloned out of it by an injected clone3 with CLONE_PARENT, so
 * it is a child of ckpt itself, starts from the stub's minimal address
 * space, and gets exactly the pid asked for. Every other task is cloned by
 * its own (already created, not yet restored) parent, so it starts as a
 * copy of that stub-like task and has its real parent from birth.
 */
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ArchSupport } from '../arch.js';
import { CkptError } from '../errors.js';
import { type FrozenTask, freezeTask } from '../kernel/freeze.js';
import { isSyscallError, SyscallInjector } from '../kernel/inject.js';
import { libc } from '../kernel/libc.js';
import { ProcMem } from '../kernel/memory.js';
import { RESTORE_PTRACE_OPTIONS } from '../kernel/ptrace.js';
import { spawnProcess } from '../kernel/spawn.js';
import { reap, waitForStop } from '../kernel/wait.js';
import { readStat, readStatus, scanProcesses, threadsOf } from '../proc/index.js';
import type { TaskAccess } from './task-io.js';

const CLONE_PARENT = 0x8000n;
const PR_SET_PDEATHSIG = 1;
/**
 * The child of a traced (seized) parent is traced by ckpt from birth and
 * stops before running a single instruction; otherwise it would run the
 * parent's injected code on its own until ckpt could seize it.
 */
const CLONE_PTRACE = 0x2000n;

const CLONE_ARGS_SIZE = 88;
/**
 * A thread as pthread_create makes one: sharing the address space, fd
 * table, cwd/root/umask, signal actions and SysV semaphore undo list of
 * its process, in its thread group; traced from birth (CLONE_PTRACE).
 */
const THREAD_FLAGS =
  0x100n /* CLONE_VM */ |
  0x200n /* CLONE_FS */ |
  0x400n /* CLONE_FILES */ |
  0x800n /* CLONE_SIGHAND */ |
  0x10000n /* CLONE_THREAD */ |
  0x40000n /* CLONE_SYSVSEM */ |
  CLONE_PTRACE;
/**
 * Clones batched in one round trip at most: their clone_args (216 bytes
 * with the 32 pid-namespace levels the kernel allows) fit the scratch area.
 */
const CLONES_PER_BATCH = 32;
const EEXIST = 17;
const F_DUPFD = 0;
/** Where ckpt's pidfd sits in restored tasks: above the fds programs commonly use. */
const CKPT_PIDFD_MIN = 1000;
const SIGKILL = 9;
const SIGCHLD = 17;
/** How long to wait for a dying or zombie task holding a wanted pid to be gone. */
const ZOMBIE_WAIT_MS = 5000;
/** PF_EXITING: the task is in do_exit. */
const PF_EXITING = 0x4;
const SIGKILL_BIT = 1n << 8n;
/** How long a failed restart waits for the tasks it killed to die. */
const DEATH_WAIT_MS = 5000;
const pause = new Int32Array(new SharedArrayBuffer(4));

function isZombie(pid: number): boolean {
  try {
    const st = readStat(pid).state;
    return st === 'Z' || st === 'X';
  } catch {
    return true; // gone
  }
}

/**
 * Whether `pid` is on its way out: a zombie, exiting, or killed (SIGKILL
 * pending), e.g. the process `checkpoint --kill` killed a moment ago, which
 * ckpt does not wait for (tearing down a large address space takes the
 * kernel a while).
 */
function isGoing(pid: number): boolean {
  try {
    const st = readStat(pid);
    if (st.state === 'Z' || st.state === 'X' || st.flags & PF_EXITING) return true;
    const status = readStatus(pid);
    return ((status.sigPnd | status.shdPnd) & SIGKILL_BIT) !== 0n;
  } catch {
    return true; // gone meanwhile: retrying will tell
  }
}

/**
 * The clone_args of clone3, with the set_tid array right after it (at `at`
 * + 88): `tids` lists the pid at each level, innermost first (clone3(2)).
 */
function cloneArgs(
  flags: bigint,
  exitSignal: number,
  tids: readonly number[] | undefined,
  at: bigint,
): Buffer {
  const n = tids?.length ?? 0;
  const args = Buffer.alloc(CLONE_ARGS_SIZE + 4 * Math.max(n, 2));
  args.writeBigUInt64LE(flags, 0);
  args.writeBigUInt64LE(BigInt(exitSignal), 32);
  if (tids && n > 0) {
    args.writeBigUInt64LE(at + BigInt(CLONE_ARGS_SIZE), 64); // set_tid
    args.writeBigUInt64LE(BigInt(n), 72); // set_tid_size
    for (const [i, t] of tids.entries()) args.writeInt32LE(t, CLONE_ARGS_SIZE + 4 * i);
  }
  return args;
}

const CLONE_NEWPID = 0x20000000n;

/** Namespaces a container's root is created in (linux-cr restarted into new ones). */
export const CLONE_NEW_CONTAINER =
  CLONE_NEWPID |
  0x04000000n /* CLONE_NEWUTS */ |
  0x08000000n /* CLONE_NEWIPC */ |
  0x00020000n; /* CLONE_NEWNS */

/**
 * The pid ckpt will see for a task created in `levels` pid namespaces with
 * `tids` (innermost first): the outermost, when `tids` names every level
 * (it may name inner levels only).
 */
function pidNamed(tids: readonly number[] | undefined, levels: number): number | undefined {
  return tids?.length === levels ? tids[levels - 1] : undefined;
}

/**
 * The thread id ckpt sees for the thread of `leader` that the leader knows
 * as `local` (they differ in a pid namespace below ckpt's).
 */
function hostTidOfThread(leader: number, local: number): number {
  const depth = readStatus(process.pid).nsPid.length;
  if (readStatus(leader).nsPid.length === depth) return local;
  for (const tid of threadsOf(leader)) {
    try {
      if (readStatus(tid).nsPid.at(-1) === local) return tid;
    } catch {
      // gone meanwhile
    }
  }
  throw new CkptError('ESYS', `cannot find the thread ${local} of pid ${leader} in /proc`, {
    pid: leader,
  });
}

/**
 * The pid ckpt sees for the child that `parent` knows as `local` (they
 * differ when the parent is in a pid namespace below ckpt's).
 */
function hostPidOfChild(parent: number, local: number): number {
  const depth = readStatus(process.pid).nsPid.length;
  if (readStatus(parent).nsPid.length === depth) return local;
  for (const p of scanProcesses()) {
    if (p.ppid !== parent) continue;
    try {
      if (readStatus(p.pid).nsPid.at(-1) === local) return p.pid;
    } catch {
      // gone meanwhile
    }
  }
  throw new CkptError('ESYS', `cannot find the child ${local} of pid ${parent} in /proc`, {
    pid: parent,
  });
}

/**
 * The stub's file lives only between writing and spawning it, but a ckpt
 * killed in between leaves it (a directory named after its pid): remove
 * those whose ckpt is gone.
 */
function removeStaleStubFiles(): void {
  try {
    for (const name of readdirSync(tmpdir())) {
      const m = /^ckpt-stub-(\d+)-/.exec(name);
      if (m && !existsSync(`/proc/${m[1]}`)) {
        rmSync(join(tmpdir(), name), { recursive: true, force: true });
      }
    }
  } catch {
    // Nothing to tidy, or not ours to: the restart goes on.
  }
}

/** Spawns the stub once and creates restored tasks from it. */
export class TaskFactory {
  private stubPid: number | undefined;
  /** The fd of a pidfd for ckpt in the stub and every task cloned from it. */
  ckptPidfd = -1;
  private readonly created: number[] = [];

  constructor(private readonly arch: ArchSupport) {}

  /** Pids created so far (to kill on failure). */
  get pids(): readonly number[] {
    return this.created;
  }

  /** Pid of the (frozen) stub, started on first use: a task to probe the CPU with. */
  probePid(): number {
    return this.startStub();
  }

  private startStub(): number {
    if (this.stubPid !== undefined) return this.stubPid;
    removeStaleStubFiles();
    const dir = mkdtempSync(join(tmpdir(), `ckpt-stub-${process.pid}-`));
    const path = join(dir, 'ckpt-restore-stub');
    try {
      const elf = Buffer.from(this.arch.stub.elf);
      const at = this.arch.stub.parentPidOffset;
      if (at !== undefined) elf.writeUInt32LE(process.pid, at);
      writeFileSync(path, elf);
      chmodSync(path, 0o700);
      this.stubPid = spawnProcess([path], { searchPath: false });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // Every task is cloned from the stub traced from birth (CLONE_PTRACE),
    // inheriting PTRACE_O_EXITKILL: should ckpt die before it lets them
    // go, the kernel kills them all, however far they were restored.
    freezeTask(this.stubPid, { ptraceOptions: RESTORE_PTRACE_OPTIONS });
    this.ckptPidfd = this.openCkptPidfd(this.stubPid);
    return this.stubPid;
  }

  /**
   * In the stub: a pidfd for ckpt, high in the fd table, which every task
   * cloned from it inherits (see `RestartTask.ckptPidfd`). The stub also
   * gets SIGKILL when ckpt dies (PR_SET_PDEATHSIG): a ckpt killed in the
   * middle of a restart would otherwise leave it running its pause() loop
   * (the tasks cloned from it do not inherit the setting).
   */
  private openCkptPidfd(stub: number): number {
    const { stub: prog, convention, syscalls } = this.arch;
    const inj = new SyscallInjector(stub, convention, { syscallAddr: prog.syscallAddr });
    try {
      const pdeath = inj.call(syscalls.prctl, [PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0]);
      if (isSyscallError(pdeath)) {
        throw new CkptError(
          'ESYS',
          `cannot tie the restore stub to ckpt's life (errno ${-pdeath})`,
          {
            pid: stub,
            syscall: 'prctl',
            errno: Number(-pdeath),
          },
        );
      }
      const fd = inj.call(syscalls.pidfd_open, [process.pid, 0]);
      if (isSyscallError(fd)) {
        throw new CkptError(
          'ESYS',
          `cannot open a pidfd for ckpt in the restore stub (errno ${-fd})`,
          {
            pid: stub,
            syscall: 'pidfd_open',
            errno: Number(-fd),
          },
        );
      }
      const high = inj.call(syscalls.fcntl, [fd, F_DUPFD, CKPT_PIDFD_MIN]);
      inj.call(syscalls.close, [fd]);
      if (isSyscallError(high)) {
        throw new CkptError(
          'ESYS',
          `cannot move ckpt's pidfd in the restore stub (errno ${-high})`,
          {
            pid: stub,
            syscall: 'fcntl',
            errno: Number(-high),
          },
        );
      }
      return Number(high);
    } finally {
      inj.close();
    }
  }

  /**
   * Create the root task, frozen under ptrace, with pids `tids` (innermost
   * first; any free pid when undefined) and exit signal `exitSignal`, as a
   * child of ckpt (a number: one level). `cloneFlags` adds e.g. {@link CLONE_NEW_CONTAINER}.
   */
  create(
    want: number | readonly number[] | undefined,
    exitSignal: number,
    cloneFlags = 0n,
  ): FrozenTask {
    const tids = typeof want === 'number' ? [want] : want;
    const pid = pidNamed(tids, cloneFlags & CLONE_NEWPID ? 2 : 1);
    // clone3 refuses an exit_signal with CLONE_PARENT: the child inherits
    // the stub's, which is SIGCHLD (posix_spawn).
    if (exitSignal !== SIGCHLD) {
      throw new CkptError(
        'ENOTSUP',
        `pid ${pid}: exit signal ${exitSignal} is not supported for a tree root`,
        { pid },
      );
    }
    const stub = this.startStub();
    const { stub: prog, convention } = this.arch;
    const child = this.retryWhileGoing(pid, () => {
      const mem = new ProcMem(stub);
      try {
        mem.write(
          prog.scratchAddr,
          cloneArgs(CLONE_PARENT | CLONE_PTRACE | cloneFlags, 0, tids, prog.scratchAddr),
        );
      } finally {
        mem.close();
      }
      const inj = new SyscallInjector(stub, convention, { syscallAddr: prog.syscallAddr });
      try {
        return inj.call(this.arch.syscalls.clone3, [prog.scratchAddr, CLONE_ARGS_SIZE]);
      } finally {
        inj.close();
      }
    });
    this.created.push(child);
    return this.firstStop(child, stub);
  }

  /**
   * Create a task as a child of `parent` (a created task, stopped, with
   * scratch memory), with pids `tids` (innermost first, or any free pid) and exit signal
   * `exitSignal`, by a clone3 injected in the parent. The child is traced
   * by ckpt from birth and returned frozen, in its first stop.
   *
   * With `sibling`, the child is created as `parent`'s sibling instead
   * (CLONE_PARENT: a child of `sibling.parent`, the parent's own parent),
   * inheriting `parent`'s session and group; it then gets `parent`'s exit
   * signal, as clone3 allows no other with CLONE_PARENT. With `newPidNs`,
   * it is the init of a new pid namespace (CLONE_NEWPID; `tids[0]` is 1);
   * `share` adds CLONE_FILES / CLONE_FS to share the parent's fd table or
   * cwd/root/umask.
   */
  createChild(
    parent: TaskAccess,
    tids: readonly number[] | undefined,
    exitSignal: number,
    opts: { sibling?: { parent: number }; newPidNs?: boolean; share?: bigint } = {},
  ): FrozenTask {
    const { sibling } = opts;
    const levels = readStatus(parent.pid).nsPid.length + (opts.newPidNs ? 1 : 0);
    const pid = pidNamed(tids, levels);
    const flags =
      CLONE_PTRACE |
      (sibling ? CLONE_PARENT : 0n) |
      (opts.newPidNs ? CLONE_NEWPID : 0n) |
      (opts.share ?? 0n);
    const addr = parent.sys.scratch(CLONE_ARGS_SIZE + 4 * Math.max(tids?.length ?? 0, 2));
    const local = this.retryWhileGoing(pid, () => {
      parent.mem.write(addr, cloneArgs(flags, sibling ? 0 : exitSignal, tids, addr));
      return parent.sys.call('clone3', [addr, CLONE_ARGS_SIZE]);
    });
    // clone3 returns the pid in the parent's namespace (a container's).
    const child = pid ?? hostPidOfChild(sibling?.parent ?? parent.pid, local);
    this.created.push(child);
    return this.firstStop(child, parent.pid);
  }

  /**
   * Create several plain children of `parent` at once (no sibling, pid
   * namespace or sharing options; see {@link createChild}): their clone3
   * calls run in one batch, one round trip into the parent instead of one
   * each. A clone that fails (a pid still held by a zombie, say) is
   * retried alone through createChild, which waits for such a pid or
   * explains the failure. Returns the children frozen, in `kids` order.
   */
  createChildren(
    parent: TaskAccess,
    kids: readonly { tids: readonly number[] | undefined; exitSignal: number }[],
  ): FrozenTask[] {
    const born = this.cloneInBatches(
      parent,
      kids.map((k) => ({ flags: CLONE_PTRACE, ...k })),
      (local) => hostPidOfChild(parent.pid, local),
    );
    return born.map((b, i) =>
      b.pid === undefined
        ? this.createChild(parent, kids[i]!.tids, kids[i]!.exitSignal)
        : this.firstStop(b.pid, parent.pid),
    );
  }

  /**
   * Create the other threads of the process `leader` (a created task,
   * stopped), each with thread ids `tids` (innermost first, or any free
   * id), by clone3 calls injected in the leader, in batches. They share
   * everything a thread shares ({@link THREAD_FLAGS}), are traced from
   * birth and are returned frozen in their first stop, in order, before
   * running an instruction.
   * @throws CkptError EBUSY for a thread id in use, ESYS for another failure
   */
  createThreads(
    leader: TaskAccess,
    threads: readonly (readonly number[] | undefined)[],
  ): FrozenTask[] {
    const born = this.cloneInBatches(
      leader,
      threads.map((tids) => ({ flags: THREAD_FLAGS, exitSignal: 0, tids })),
      (local) => hostTidOfThread(leader.pid, local),
    );
    // Every thread is tracked (to be killed on failure) before any error.
    for (const b of born) {
      if (b.pid !== undefined) continue;
      const taken = b.errno === EEXIST;
      throw new CkptError(
        taken ? 'EBUSY' : 'ESYS',
        taken
          ? `thread id ${b.wanted} of pid ${leader.pid} is already in use; restart with --no-pids to restore under new ids`
          : `cannot create a thread of pid ${leader.pid}${b.wanted === undefined ? '' : ` with id ${b.wanted}`}: clone3 failed with errno ${b.errno}`,
        { pid: leader.pid, syscall: 'clone3', errno: b.errno },
      );
    }
    return born.map((b) => this.firstStop(b.pid!, leader.pid));
  }

  /**
   * Run one clone3 per entry of `clones` in `parent`, {@link CLONES_PER_BATCH}
   * per round trip. Each result is the new task's pid as ckpt sees it
   * (tracked for {@link destroyAll}; `hostPid` turns the parent's view of
   * it into ckpt's when they differ), or the clone's errno with the pid it
   * asked for.
   */
  private cloneInBatches(
    parent: TaskAccess,
    clones: readonly { flags: bigint; exitSignal: number; tids: readonly number[] | undefined }[],
    hostPid: (local: number) => number,
  ): ({ pid: number } | { pid: undefined; errno: number; wanted: number | undefined })[] {
    const levels = readStatus(parent.pid).nsPid.length;
    // One clone_args with its set_tid array per task, 8-byte aligned.
    const stride = (CLONE_ARGS_SIZE + 4 * Math.max(levels, 2) + 7) & ~7;
    const out: ReturnType<TaskFactory['cloneInBatches']> = [];
    for (let first = 0; first < clones.length; first += CLONES_PER_BATCH) {
      const part = clones.slice(first, first + CLONES_PER_BATCH);
      const base = parent.sys.scratch(stride * part.length);
      const at = (i: number) => base + BigInt(i * stride);
      const args = Buffer.concat(
        part.map((c, i) => {
          const one = Buffer.alloc(stride);
          cloneArgs(c.flags, c.exitSignal, c.tids, at(i)).copy(one);
          return one;
        }),
      );
      parent.mem.write(base, args);
      const results = parent.sys.batch(
        part.map((_, i) => ({ name: 'clone3' as const, args: [at(i), CLONE_ARGS_SIZE] })),
      );
      for (const [i, r] of results.entries()) {
        const wanted = pidNamed(part[i]!.tids, levels);
        if (isSyscallError(r)) {
          out.push({ pid: undefined, errno: Number(-r), wanted });
          continue;
        }
        const pid = wanted ?? hostPid(Number(r));
        this.created.push(pid);
        out.push({ pid });
      }
    }
    return out;
  }

  /** Wait for a new child's first stop, the trap of CLONE_PTRACE, and return it frozen. */
  private firstStop(child: number, parent: number): FrozenTask {
    const stop = waitForStop(child);
    if (stop.stop !== 'interrupt') {
      throw new CkptError(
        'ESYS',
        `new pid ${child} (child of pid ${parent}) first stopped with signal ${stop.signal} (${stop.stop}) instead of its initial trap`,
        { pid: child },
      );
    }
    return { pid: child, stop, wasStopped: false, newTasks: [] };
  }

  /**
   * Run `clone` (an injected clone3) and return the new pid. A pid still
   * held by a task on its way out (e.g. the process checkpointed with
   * --kill, still exiting or not reaped by its parent yet) frees up
   * shortly, so EEXIST is retried while the holder is going.
   */
  private retryWhileGoing(pid: number | undefined, clone: () => bigint): number {
    const deadline = Date.now() + ZOMBIE_WAIT_MS;
    for (;;) {
      const r = clone();
      if (!isSyscallError(r)) return Number(r);
      const errno = Number(-r);
      if (errno !== EEXIST || pid === undefined) {
        throw new CkptError(
          'ESYS',
          `cannot create a task${pid === undefined ? '' : ` with pid ${pid}`}: clone3 failed with errno ${errno}`,
          { pid, syscall: 'clone3', errno },
        );
      }
      if (!isGoing(pid) || Date.now() >= deadline) {
        throw new CkptError('EBUSY', `pid ${pid} is already in use; ${pidTakenAdvice(pid)}`, {
          pid,
          syscall: 'clone3',
          errno,
        });
      }
      Atomics.wait(pause, 0, 0, 10);
    }
  }

  /** Stop tracking `pid` (a placeholder that has ended and been collected). */
  forget(pid: number): void {
    const i = this.created.indexOf(pid);
    if (i >= 0) this.created.splice(i, 1);
  }

  /**
   * Run unshare(2) with `flags` in the stub, before it clones the root:
   * the root is then born in the new namespaces that unshare makes for the
   * caller's children (a time namespace).
   * @throws CkptError ESYS with the errno, saying `what` it was for
   */
  unshareInStub(flags: number, what: string): void {
    const stub = this.startStub();
    const { stub: prog, convention, syscalls } = this.arch;
    const inj = new SyscallInjector(stub, convention, { syscallAddr: prog.syscallAddr });
    try {
      const r = inj.call(syscalls.unshare, [flags]);
      if (isSyscallError(r)) {
        throw new CkptError('ESYS', `${what}: unshare failed with errno ${-r}`, {
          pid: stub,
          syscall: 'unshare',
          errno: Number(-r),
        });
      }
    } finally {
      inj.close();
    }
  }

  /** Kill and collect the stub (restored tasks are not affected). */
  closeStub(): void {
    if (this.stubPid === undefined) return;
    libc().kill(this.stubPid, SIGKILL);
    reap(this.stubPid);
    this.stubPid = undefined;
  }

  /**
   * Kill every task created and the stub: nothing is left behind. All are
   * killed before any is collected, so no parent can run in between.
   * Collecting a task ckpt traces but did not fork (a child of a restored
   * task) ends the trace; its parent, killed too, leaves it to init.
   * Children are collected before their parents (reverse creation order):
   * a dying pid-namespace init waits for its children, and a traced child
   * stays a zombie until ckpt, its tracer, collects it.
   */
  destroyAll(): void {
    const created = [...this.created];
    for (const pid of created) libc().kill(pid, SIGKILL);
    for (const pid of [...created].reverse()) reap(pid);
    this.created.length = 0;
    this.closeStub();
    // A task ckpt neither forked nor traces cannot be collected here, and
    // SIGKILL takes effect asynchronously: wait until each has died, so that
    // nothing runs once the failed restart returns.
    const deadline = Date.now() + DEATH_WAIT_MS;
    for (const pid of created) {
      while (!isZombie(pid) && Date.now() < deadline) Atomics.wait(pause, 0, 0, 2);
    }
  }
}

/**
 * What to do about a pid in use. A holder that is being traced is most
 * likely the original still being checkpointed: `checkpoint -o - --kill |
 * restart -` on one host starts restoring before the original is gone.
 */
function pidTakenAdvice(pid: number): string {
  let tracer = 0;
  try {
    tracer = readStatus(pid).tracerPid;
  } catch {
    // gone meanwhile
  }
  return tracer !== 0
    ? `its process is being traced by pid ${tracer}, probably the checkpoint that is writing this image (with --kill it ends the original only once the image is complete): write the image to a file and restart from it, or restart with --no-pids`
    : 'restart with --no-pids to restore under a new pid';
}
