/**
 * Creating the tasks of a restart with their original pids (linux-cr's
 * mktree + clone_with_pids, done with clone3's `set_tid`).
 *
 * A tiny stub program (supplied by the arch) is spawned and frozen; each
 * task is cloned out of it by an injected clone3 with CLONE_PARENT, so the
 * new task is a child of ckpt itself, starts from the stub's minimal
 * address space, and gets exactly the pid asked for.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ArchSupport } from '../arch.js';
import { CkptError, isCkptError } from '../errors.js';
import { type FrozenTask, freezeTask } from '../kernel/freeze.js';
import { SyscallInjector } from '../kernel/inject.js';
import { libc } from '../kernel/libc.js';
import { ProcMem } from '../kernel/memory.js';
import { spawnProcess } from '../kernel/spawn.js';
import { reap } from '../kernel/wait.js';
import { readStat } from '../proc/index.js';
import { isSyscallError } from './syscalls.js';

const CLONE_PARENT = 0x8000n;
const CLONE_ARGS_SIZE = 88;
const EEXIST = 17;
const SIGKILL = 9;
const SIGCHLD = 17;
/** How long to wait for a zombie holding a wanted pid to be reaped. */
const ZOMBIE_WAIT_MS = 5000;
const pause = new Int32Array(new SharedArrayBuffer(4));

function isZombie(pid: number): boolean {
  try {
    const st = readStat(pid).state;
    return st === 'Z' || st === 'X';
  } catch {
    return true; // gone meanwhile: retrying will tell
  }
}

/** Spawns the stub once and clones restored tasks out of it. */
export class TaskFactory {
  private stubPid: number | undefined;
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
    const dir = mkdtempSync(join(tmpdir(), 'ckpt-stub-'));
    const path = join(dir, 'ckpt-restore-stub');
    try {
      writeFileSync(path, this.arch.stub.elf);
      chmodSync(path, 0o700);
      this.stubPid = spawnProcess([path], { searchPath: false });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    freezeTask(this.stubPid);
    return this.stubPid;
  }

  /**
   * Create a task, frozen under ptrace, with pid `pid` (or any free pid
   * when undefined) and exit signal `exitSignal`, as a child of ckpt.
   */
  create(pid: number | undefined, exitSignal: number): FrozenTask {
    // A pid still held by a zombie (e.g. the process checkpointed with
    // --kill, whose parent has not reaped it yet) frees up shortly.
    const deadline = Date.now() + ZOMBIE_WAIT_MS;
    for (;;) {
      try {
        return this.createOnce(pid, exitSignal);
      } catch (e) {
        if (
          !(isCkptError(e, 'EBUSY') && pid !== undefined && isZombie(pid) && Date.now() < deadline)
        )
          throw e;
        Atomics.wait(pause, 0, 0, 10);
      }
    }
  }

  private createOnce(pid: number | undefined, exitSignal: number): FrozenTask {
    const stub = this.startStub();
    const { stub: prog, convention } = this.arch;
    const args = Buffer.alloc(CLONE_ARGS_SIZE + 8);
    args.writeBigUInt64LE(CLONE_PARENT, 0); // flags
    // clone3 refuses an exit_signal with CLONE_PARENT: the child inherits
    // the stub's, which is SIGCHLD (posix_spawn).
    if (exitSignal !== SIGCHLD) {
      throw new CkptError(
        'ENOTSUP',
        `pid ${pid}: exit signal ${exitSignal} is not supported for a tree root`,
        { pid },
      );
    }
    if (pid !== undefined) {
      args.writeBigUInt64LE(prog.scratchAddr + BigInt(CLONE_ARGS_SIZE), 64); // set_tid
      args.writeBigUInt64LE(1n, 72); // set_tid_size
      args.writeInt32LE(pid, CLONE_ARGS_SIZE);
    }
    const mem = new ProcMem(stub);
    try {
      mem.write(prog.scratchAddr, args);
    } finally {
      mem.close();
    }
    const inj = new SyscallInjector(stub, convention, { syscallAddr: prog.syscallAddr });
    let r: bigint;
    try {
      r = inj.call(this.arch.syscalls.clone3, [prog.scratchAddr, CLONE_ARGS_SIZE]);
    } finally {
      inj.close();
    }
    if (isSyscallError(r)) {
      const errno = Number(-r);
      if (errno === EEXIST && pid !== undefined) {
        throw new CkptError(
          'EBUSY',
          `pid ${pid} is already in use; restart with --no-pids to restore under a new pid`,
          {
            pid,
            syscall: 'clone3',
            errno,
          },
        );
      }
      throw new CkptError(
        'ESYS',
        `cannot create a task${pid === undefined ? '' : ` with pid ${pid}`}: clone3 failed with errno ${errno}`,
        {
          pid,
          syscall: 'clone3',
          errno,
        },
      );
    }
    const child = Number(r);
    this.created.push(child);
    return freezeTask(child);
  }

  /** Kill and collect the stub (restored tasks are not affected). */
  closeStub(): void {
    if (this.stubPid === undefined) return;
    libc().kill(this.stubPid, SIGKILL);
    reap(this.stubPid);
    this.stubPid = undefined;
  }

  /** Kill every task created and the stub: nothing is left behind. */
  destroyAll(): void {
    for (const pid of this.created) {
      libc().kill(pid, SIGKILL);
      reap(pid);
    }
    this.created.length = 0;
    this.closeStub();
  }
}
