/**
 * The engine's implementation of `TaskSyscalls` and `TaskMemory` over the
 * kernel interface: named syscalls mapped to the arch's numbers, run with
 * the syscall injector; memory through /proc/PID/mem.
 */
import type { ArchSupport, SyscallName } from '../arch.js';
import { CkptError, isCkptError } from '../errors.js';
import { type InjectorOptions, SyscallInjector } from '../kernel/inject.js';
import { ProcMem, readRanges, writeRanges } from '../kernel/memory.js';
import type { TaskMemory, TaskSyscalls } from '../task.js';

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

/** Format a negative syscall result as `errno N (NAME)`. */
function describeErrno(r: bigint): string {
  return `errno ${-r}`;
}

/** True when a raw syscall result is an error (-4095..-1). */
export function isSyscallError(r: bigint): boolean {
  return r < 0n && r > -4096n;
}

/**
 * Syscalls in one stopped task. The injector is created on first use (it
 * saves the task's registers then) and `close()` puts everything back.
 */
export class InjectedSyscalls implements TaskSyscalls {
  private injector: SyscallInjector | undefined;
  private fixedScratch: { addr: bigint; size: number } | undefined;

  constructor(
    readonly pid: number,
    private readonly arch: ArchSupport,
    private readonly options: InjectorOptions & { scratch?: { addr: bigint; size: number } } = {},
  ) {
    this.fixedScratch = options.scratch;
  }

  private get inj(): SyscallInjector {
    this.injector ??= new SyscallInjector(this.pid, this.arch.convention, this.options);
    return this.injector;
  }

  /** Whether an injector exists (and so registers were saved). */
  get active(): boolean {
    return this.injector !== undefined;
  }

  /** The injector's scratch mapping, if it made one (to skip when saving memory). */
  get scratchRange(): { start: bigint; end: bigint } | undefined {
    return this.injector?.scratchRange;
  }

  call(name: SyscallName, args: readonly (bigint | number)[] = []): bigint {
    const nr = this.arch.syscalls[name];
    if (nr === undefined) {
      throw new CkptError('ENOSYS', `syscall ${name} is not known on ${this.arch.machine}`, {
        pid: this.pid,
      });
    }
    return this.inj.call(nr, args);
  }

  check(name: SyscallName, args: readonly (bigint | number)[], what: string): bigint {
    const r = this.call(name, args);
    if (isSyscallError(r)) {
      throw new CkptError(
        'ESYS',
        `${what} in pid ${this.pid} failed: ${name}() returned ${describeErrno(r)}`,
        {
          pid: this.pid,
          syscall: name,
          errno: Number(-r),
        },
      );
    }
    return r;
  }

  scratch(size: number): bigint {
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

  /** Restore registers and undo the scratch mapping. Safe to call twice. */
  close(): void {
    this.injector?.close();
    this.injector = undefined;
  }
}

/**
 * Transfers at least this large try process_vm_readv/writev first: about
 * twice as fast as /proc/PID/mem, but they honour page protections, so a
 * protected page falls back to /proc/PID/mem (which forces access).
 */
const VM_RW_MIN = 64 * 1024;

/** Memory of a task: bulk through process_vm_*v, forced access through /proc/PID/mem. */
export class ProcTaskMemory implements TaskMemory {
  private mem: ProcMem | undefined;
  constructor(readonly pid: number) {}

  private get m(): ProcMem {
    this.mem ??= new ProcMem(this.pid);
    return this.mem;
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

  write(addr: bigint, data: Buffer): void {
    if (
      data.length >= VM_RW_MIN &&
      tryVm(() => writeRanges(this.pid, [{ addr, length: data.length }], data))
    )
      return;
    this.m.write(addr, data);
  }

  close(): void {
    this.mem?.close();
    this.mem = undefined;
  }
}
