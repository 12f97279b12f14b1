/**
 * Running system calls inside a stopped tracee.
 *
 * The task's registers are saved, the instruction pointer is moved to a
 * `syscall` instruction with the number and arguments in place, the task
 * single-steps over it, and the result is read from the return register.
 * The original registers are put back at the end. The instruction is taken
 * from the caller, or found in an executable mapping of the task (the vDSO
 * has them), or else planted over the bytes at the current instruction
 * pointer through /proc/PID/mem and removed afterwards.
 *
 * Latency measured on this machine (2-vCPU Firecracker VM, Linux 6.18):
 * 70-115 µs per injected call, of which ~35-45 µs is the single-step round trip
 * (the tracee is woken on another CPU, then wakes us) and ~10 µs each the
 * register-set reads and writes; inject.test.ts prints it. Use it for
 * dozens of calls per task, not per page.
 */
import { CkptError } from '../errors.js';
import { readMaps } from '../proc/index.js';
import type { SyscallConvention } from './convention.js';
import { ProcMem, readRanges } from './memory.js';
import { getRegset, NT, setRegset, singlestep } from './ptrace.js';
import { waitForStop } from './wait.js';

const SIGTRAP = 5;
const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_PRIVATE = 2;
const MAP_ANONYMOUS = 0x20;

/** Options of {@link SyscallInjector}. */
export interface InjectorOptions {
  /** Address of a syscall instruction in the task; otherwise one is found or planted. */
  syscallAddr?: bigint;
}

/**
 * Runs system calls in one ptrace-stopped task. Create it while the task is
 * stopped, call {@link SyscallInjector.call} any number of times, then
 * {@link SyscallInjector.close} to restore the registers (and the bytes of
 * a planted instruction, and unmap the scratch page).
 */
export class SyscallInjector {
  readonly pid: number;
  private readonly conv: SyscallConvention;
  private readonly saved: Buffer;
  private readonly syscallAddr: bigint;
  /** Original bytes at `syscallAddr` if we planted the instruction there. */
  private planted: Buffer | undefined;
  private scratchAddr: bigint | undefined;
  private scratchSize = 0;
  private closed = false;

  constructor(pid: number, conv: SyscallConvention, options: InjectorOptions = {}) {
    this.pid = pid;
    this.conv = conv;
    this.saved = getRegset(pid, NT.PRSTATUS, conv.regsSize);
    const found = options.syscallAddr ?? findSyscallInsn(pid, conv);
    if (found !== undefined) {
      this.syscallAddr = found;
    } else {
      this.syscallAddr = conv.getIp(this.saved);
      this.planted = plant(pid, this.syscallAddr, conv.syscallInsn);
    }
  }

  /** Run syscall `nr` with `args` (up to six) in the task; returns the raw result (negative errno on failure). */
  call(nr: number, args: readonly (bigint | number)[] = []): bigint {
    if (this.closed)
      throw new CkptError('EINVAL', `syscall injector for pid ${this.pid} is closed`, {
        pid: this.pid,
      });
    const regs = Buffer.from(this.saved);
    this.conv.setSyscall(
      regs,
      nr,
      args.map((a) => BigInt.asUintN(64, BigInt(a))),
    );
    this.conv.setIp(regs, this.syscallAddr);
    setRegset(this.pid, NT.PRSTATUS, regs);
    singlestep(this.pid, 0);
    const st = waitForStop(this.pid);
    if (st.signal !== SIGTRAP) {
      throw new CkptError(
        'EFAULT',
        `injected syscall ${nr} in pid ${this.pid} stopped with signal ${st.signal} instead of SIGTRAP (bad syscall address 0x${this.syscallAddr.toString(16)}?)`,
        { pid: this.pid, syscall: `syscall ${nr}` },
      );
    }
    return this.conv.getReturn(getRegset(this.pid, NT.PRSTATUS, this.conv.regsSize));
  }

  /** Like {@link call}, but a negative errno becomes an ESYS `CkptError`. */
  callChecked(nr: number, args: readonly (bigint | number)[], what: string): bigint {
    const r = this.call(nr, args);
    if (r < 0n && r > -4096n) {
      throw new CkptError('ESYS', `${what} in pid ${this.pid} failed with errno ${-r}`, {
        pid: this.pid,
        syscall: `syscall ${nr}`,
        errno: Number(-r),
      });
    }
    return r;
  }

  /**
   * Address of a read-write scratch area of at least `size` bytes in the
   * task (one anonymous mmap, reused and grown as needed, unmapped by
   * {@link close}). Fill it with `writeMemory`, e.g. to pass a struct.
   */
  scratch(size: number): bigint {
    if (this.scratchAddr !== undefined && size <= this.scratchSize) return this.scratchAddr;
    this.unmapScratch();
    const len = Math.ceil(size / 4096) * 4096;
    const addr = this.callChecked(
      this.conv.nr.mmap,
      [0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0],
      'mmap of a scratch area',
    );
    this.scratchAddr = addr;
    this.scratchSize = len;
    return addr;
  }

  /** The scratch mapping while it exists (ckpt's own, not the task's state). */
  get scratchRange(): { start: bigint; end: bigint } | undefined {
    if (this.scratchAddr === undefined) return undefined;
    return { start: this.scratchAddr, end: this.scratchAddr + BigInt(this.scratchSize) };
  }

  /** Undo everything: unmap the scratch area, remove a planted instruction, restore registers. */
  close(): void {
    if (this.closed) return;
    this.unmapScratch();
    this.closed = true;
    if (this.planted) {
      const mem = new ProcMem(this.pid);
      try {
        mem.write(this.syscallAddr, this.planted);
      } finally {
        mem.close();
      }
    }
    setRegset(this.pid, NT.PRSTATUS, this.saved);
  }

  private unmapScratch(): void {
    if (this.scratchAddr === undefined) return;
    this.callChecked(
      this.conv.nr.munmap,
      [this.scratchAddr, this.scratchSize],
      'munmap of the scratch area',
    );
    this.scratchAddr = undefined;
    this.scratchSize = 0;
  }
}

/**
 * Find the syscall instruction in an executable mapping of `pid`, the vDSO
 * first (small, always there unless disabled). Returns undefined if none.
 */
export function findSyscallInsn(pid: number, conv: SyscallConvention): bigint | undefined {
  const maps = readMaps(pid).filter((m) => m.exec && m.read);
  maps.sort((a, b) => Number(b.kind === 'vdso') - Number(a.kind === 'vdso'));
  for (const m of maps) {
    // Executable mappings can be large; their first MiB is plenty.
    const length = Math.min(Number(m.end - m.start), 1 << 20);
    let bytes: Buffer;
    try {
      bytes = readRanges(pid, [{ addr: m.start, length }]);
    } catch {
      continue; // e.g. an execute-only or vanished mapping
    }
    const at = bytes.indexOf(conv.syscallInsn);
    if (at >= 0) return m.start + BigInt(at);
  }
  return undefined;
}

function plant(pid: number, addr: bigint, insn: Buffer): Buffer {
  const mem = new ProcMem(pid);
  try {
    const original = mem.read(addr, insn.length);
    mem.write(addr, insn);
    return original;
  } finally {
    mem.close();
  }
}

/**
 * Run one syscall in stopped task `pid` and restore its registers: a
 * convenience over {@link SyscallInjector} for one-off calls.
 */
export function injectSyscall(
  pid: number,
  conv: SyscallConvention,
  nr: number,
  args: readonly (bigint | number)[] = [],
  options: InjectorOptions = {},
): bigint {
  const inj = new SyscallInjector(pid, conv, options);
  try {
    return inj.call(nr, args);
  } finally {
    inj.close();
  }
}
