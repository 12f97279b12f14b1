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
import { libc } from './libc.js';
import { ProcMem, readRanges } from './memory.js';
import {
  getRegset,
  NT,
  PTRACE_O,
  setOptions,
  setRegset,
  singlestep,
  syscallStep,
} from './ptrace.js';
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
  /**
   * Run calls from a private code page whose syscall instruction is
   * followed by the convention's `resumeCode`: if ckpt dies in the middle
   * of a call (even by SIGKILL), the task resumes exactly where it was
   * instead of with the injected registers. Used on tasks that must
   * survive a failed checkpoint unharmed.
   */
  killSafe?: boolean;
  /** PTRACE_O_* options the task was seized with (kept when adding TRACESYSGOOD). */
  ptraceOptions?: number;
}

const PROT_EXEC = 4;
/** Parasite area: one page of code, three of scratch. */
const PARASITE_PAGES = 4;
/**
 * Marks ckpt's code page (last 8 bytes of its first page), so that a page
 * left behind by a ckpt that was killed can be recognised and removed by
 * the next checkpoint.
 */
export const PARASITE_MAGIC = Buffer.from('CKPTpara', 'latin1');

/**
 * Code pages a killed ckpt left in `pid` (see {@link PARASITE_MAGIC}): their
 * start addresses. They are harmless but are not the task's state.
 */
export function findLeftoverParasites(pid: number): { start: bigint; end: bigint }[] {
  const size = BigInt(PARASITE_PAGES * 4096);
  const found: { start: bigint; end: bigint }[] = [];
  const candidates = readMaps(pid).filter(
    (m) =>
      m.read && m.write && m.exec && !m.shared && m.pathname === '' && m.end - m.start === size,
  );
  if (candidates.length === 0) return found;
  const mem = new ProcMem(pid, false);
  try {
    for (const m of candidates) {
      // Marked, or still blank: ckpt was killed between mapping the page
      // and writing to it (no program keeps a blank RWX page of this size).
      const page = mem.read(m.start, 4096);
      const marked = page.subarray(4096 - PARASITE_MAGIC.length).equals(PARASITE_MAGIC);
      if (marked || page.every((b) => b === 0)) found.push({ start: m.start, end: m.end });
    }
  } finally {
    mem.close();
  }
  return found;
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
  private syscallAddr: bigint;
  /** The syscall instruction found in the task (or planted). */
  private readonly baseAddr: bigint;
  private readonly killSafe: boolean;
  /** Address of the kill-safe code page and its scratch, once mapped. */
  private parasite: bigint | undefined;
  /** Original bytes at `syscallAddr` if we planted the instruction there. */
  private planted: Buffer | undefined;
  private scratchAddr: bigint | undefined;
  private scratchSize = 0;
  private closed = false;
  /** Signals held back during injection (see `defer`). */
  private readonly deferred: number[] = [];

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
    this.baseAddr = this.syscallAddr;
    this.killSafe = options.killSafe === true && conv.resumeCode !== undefined;
    // Syscall stops must be told apart from SIGTRAP signals.
    if (this.killSafe) setOptions(pid, PTRACE_O.TRACESYSGOOD | (options.ptraceOptions ?? 0));
  }

  /**
   * Map the kill-safe code page (one call from the base instruction: the
   * only unprotected moment) and switch every later call to it.
   */
  private setUpParasite(): void {
    const len = PARASITE_PAGES * 4096;
    const addr = this.callSafely(this.conv.nr.mmap, [
      0,
      len,
      PROT_READ | PROT_WRITE | PROT_EXEC,
      MAP_PRIVATE | MAP_ANONYMOUS,
      -1,
      0,
    ]);
    if (addr < 0n && addr > -4096n) {
      throw new CkptError(
        'ESYS',
        `cannot map ckpt's code page in pid ${this.pid} (errno ${-addr})`,
        {
          pid: this.pid,
          syscall: 'mmap',
          errno: Number(-addr),
        },
      );
    }
    this.parasite = addr;
    const code = Buffer.concat([this.conv.syscallInsn, this.conv.resumeCode!(this.saved)]);
    const mem = new ProcMem(this.pid);
    try {
      mem.write(addr, code);
      mem.write(addr + 4096n - 8n, PARASITE_MAGIC);
    } finally {
      mem.close();
    }
    this.syscallAddr = addr;
  }

  /** Run syscall `nr` with `args` (up to six) in the task; returns the raw result (negative errno on failure). */
  call(nr: number, args: readonly (bigint | number)[] = []): bigint {
    if (this.closed)
      throw new CkptError('EINVAL', `syscall injector for pid ${this.pid} is closed`, {
        pid: this.pid,
      });
    if (this.killSafe && this.parasite === undefined) this.setUpParasite();
    return this.callAt(this.syscallAddr, nr, args);
  }

  private callAt(at: bigint, nr: number, args: readonly (bigint | number)[]): bigint {
    const regs = Buffer.from(this.saved);
    this.conv.setSyscall(
      regs,
      nr,
      args.map((a) => BigInt.asUintN(64, BigInt(a))),
    );
    this.conv.setIp(regs, at);
    setRegset(this.pid, NT.PRSTATUS, regs);
    if (this.killSafe) this.runToSyscallExit(nr);
    else this.stepOverSyscall(nr, at);
    return this.conv.getReturn(getRegset(this.pid, NT.PRSTATUS, this.conv.regsSize));
  }

  /**
   * Single-step over the syscall instruction: one stop, the fastest way.
   * But a tracer that dies mid-step leaves the trap flag set and the task
   * dies of SIGTRAP, so kill-safe injection does not use it.
   */
  private stepOverSyscall(nr: number, at: bigint): void {
    singlestep(this.pid, 0);
    let st = waitForStop(this.pid);
    // A task in a job-control stop reports it again when first resumed.
    for (let groupStops = 0; ; ) {
      if (st.stop === 'signal-delivery' && st.signal !== SIGTRAP) this.defer(st.signal);
      else if (!(st.stop === 'group' && groupStops++ < 3)) break;
      singlestep(this.pid, 0);
      st = waitForStop(this.pid);
    }
    if (st.signal !== SIGTRAP) {
      throw new CkptError(
        'EFAULT',
        `injected syscall ${nr} in pid ${this.pid} stopped with signal ${st.signal} instead of SIGTRAP (bad syscall address 0x${at.toString(16)}?)`,
        { pid: this.pid, syscall: `syscall ${nr}` },
      );
    }
  }

  /**
   * Run to the syscall-exit stop with PTRACE_SYSCALL (two stops). The
   * kernel forgets syscall tracing when the tracer goes away, so if ckpt
   * dies here the task simply returns into the resume code.
   */
  private runToSyscallExit(nr: number): void {
    for (const phase of ['entry', 'exit']) {
      syscallStep(this.pid, 0);
      let st = waitForStop(this.pid);
      // A task stopped by job control reports its group-stop again when
      // first resumed; resuming it once more runs it on (it stays stopped
      // for everyone but its tracer).
      for (
        let groupStops = 0;
        st.stop === 'signal-delivery' || (st.stop === 'group' && groupStops++ < 3);
      ) {
        if (st.stop === 'signal-delivery') this.defer(st.signal);
        syscallStep(this.pid, 0);
        st = waitForStop(this.pid);
      }
      if (st.stop !== 'syscall') {
        throw new CkptError(
          'EFAULT',
          `injected syscall ${nr} in pid ${this.pid}: expected its ${phase} stop, got signal ${st.signal} (${st.stop})`,
          { pid: this.pid, syscall: `syscall ${nr}` },
        );
      }
    }
  }

  /**
   * A signal that arrived while we ran the task (say, SIGCHLD from a child
   * that exited): delivering it now would run its handler in the middle of
   * the injection, so it is held back and sent again by {@link close}.
   */
  private defer(signal: number): void {
    if (!this.deferred.includes(signal)) this.deferred.push(signal);
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
    if (this.killSafe && this.parasite === undefined) this.setUpParasite();
    if (this.parasite !== undefined && size <= (PARASITE_PAGES - 1) * 4096)
      return this.parasite + 4096n;
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

  /**
   * A call made before the code page exists or after it is gone. The vDSO
   * ends in zero padding that nothing executes: the syscall instruction and
   * resume code go there for the one call, so that it too survives ckpt's
   * death (the bytes are put back right after; a leftover copy would never
   * run). Without such padding, the call runs from the base instruction.
   */
  private callSafely(nr: number, args: readonly (bigint | number)[]): bigint {
    const code = Buffer.concat([this.conv.syscallInsn, this.conv.resumeCode!(this.saved)]);
    const pad = vdsoPadding(this.pid, code.length);
    if (pad === undefined) return this.callAt(this.baseAddr, nr, args);
    const mem = new ProcMem(this.pid);
    try {
      mem.write(pad, code);
      return this.callAt(pad, nr, args);
    } finally {
      mem.write(pad, Buffer.alloc(code.length));
      mem.close();
    }
  }

  /** The scratch mapping while it exists (ckpt's own, not the task's state). */
  get scratchRange(): { start: bigint; end: bigint } | undefined {
    if (this.parasite !== undefined) {
      return { start: this.parasite, end: this.parasite + BigInt(PARASITE_PAGES * 4096) };
    }
    if (this.scratchAddr === undefined) return undefined;
    return { start: this.scratchAddr, end: this.scratchAddr + BigInt(this.scratchSize) };
  }

  /** Undo everything: unmap the scratch area, remove a planted instruction, restore registers. */
  close(): void {
    if (this.closed) return;
    this.unmapScratch();
    if (this.parasite !== undefined) {
      // Not from the code page itself: it cannot unmap itself and go on.
      this.callSafely(this.conv.nr.munmap, [this.parasite, PARASITE_PAGES * 4096]);
      this.parasite = undefined;
    }
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
    // Held-back signals become pending again, for the task to take once it
    // runs. (Their original siginfo is not kept: a standard signal is one
    // pending bit anyway.)
    for (const sig of this.deferred.splice(0)) libc().tgkill(this.pid, this.pid, sig);
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

/** Address of `size` zero bytes at the end of `pid`'s vDSO, if there are. */
function vdsoPadding(pid: number, size: number): bigint | undefined {
  const vdso = readMaps(pid).find((m) => m.kind === 'vdso');
  if (!vdso) return undefined;
  const room = BigInt(Math.ceil(size / 64) * 64);
  const at = vdso.end - room;
  const mem = new ProcMem(pid, false);
  try {
    return mem.read(at, Number(room)).every((b) => b === 0) ? at : undefined;
  } catch {
    return undefined;
  } finally {
    mem.close();
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
