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
 *
 * Batches ({@link SyscallInjector.callMany}) cost one round trip for many
 * calls: the arch's batch code (`SyscallConvention.batchCode`), written
 * into ckpt's code page, runs a table of calls and then stops the task by
 * sending it a _marker_ signal, which ckpt, its tracer, sees first and
 * discards. The marker must be unblocked. For kill-safe injection it must
 * also be ignored by the task (so that a marker left when ckpt dies is a
 * no-op and the task resumes exactly), and the blocked mask is never
 * touched; otherwise (restart) the marker is unblocked just for the batch.
 * Without such a signal, or in a task under seccomp (which could refuse
 * tgkill), calls run one by one.
 */
import { CkptError } from '../errors.js';
import { type MapsEntry, type ProcStatus, readMaps, readStatus } from '../proc/index.js';
import { BATCH_ENTRY_SIZE, type Marker, type SyscallConvention } from './convention.js';
import { errnoText, libc } from './libc.js';
import { ProcMem, readRanges } from './memory.js';
import {
  cont,
  getRegset,
  getSiginfo,
  getSigmask,
  NT,
  PTRACE_O,
  SIGINFO_SIZE,
  setOptions,
  setRegset,
  setSigmask,
  singlestep,
  syscallStep,
} from './ptrace.js';
import { waitForStop } from './wait.js';
import { put64 } from './words.js';

type StopStatus = ReturnType<typeof waitForStop>;

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
  /**
   * /proc/PID/status of the stopped task, if the caller has read it: its
   * signal dispositions, seccomp mode and own pid choose the marker signal
   * of kill-safe batches (read from /proc otherwise).
   */
  status?: ProcStatus;
  /** /proc/PID/maps of the stopped task, if the caller has read it: where its vDSO is. */
  maps?: readonly MapsEntry[];
  /**
   * The task's /proc/PID/mem as the caller has it open (one open file per
   * task, not one per user); the caller closes it, after the injector.
   */
  mem?: ProcMem;
  /**
   * A page of ckpt's own in the task, writable through /proc/PID/mem, whose
   * start may hold the syscall instruction (`syscallAddr`) and whose rest
   * is free: batches put their code there. Kill-safe injection uses its own
   * code page instead.
   */
  codePage?: bigint;
}

/** An argument that is the result of an earlier call of the same batch (its index). */
export interface ResultOf {
  readonly result: number;
}

/** A syscall argument: a value, or the result of an earlier call of the batch. */
export type SyscallArg = bigint | number | ResultOf;

/** One call of a batch: syscall number and up to six arguments. */
export interface SyscallCall {
  nr: number;
  args: readonly SyscallArg[];
  /**
   * Addresses in the task where the result is also written (8 bytes)
   * before the next call runs, e.g. a field of a struct a later call reads.
   * A call's result goes to at most {@link RESULT_COPIES} places: these and
   * the arguments of later calls of the same batch that take it.
   */
  resultTo?: readonly bigint[];
}

/**
 * The second step of a call split in two (`startMany`, `startClose`, …):
 * waits for the resumed task to stop and returns what the call gives.
 */
export type Finish<T> = () => T;

/** True when a raw syscall result is an error (-4095..-1). */
export function isSyscallError(r: bigint): boolean {
  return r < 0n && r > -4096n;
}

/** How many places one call's result can be copied to in a batch. */
export const RESULT_COPIES = 2;

const PAGE = 4096;
const SIGCHLD = 17;
const SIGURG = 23;
const SIGWINCH = 28;
/** Standard signals whose default action is to ignore them (SIGCONT aside). */
const IGNORED_BY_DEFAULT = [SIGURG, SIGWINCH, SIGCHLD];
/**
 * Never markers: SIGKILL and SIGSTOP, and SIGCONT and the stop signals,
 * whose mere sending discards pending signals of the other kind.
 */
const NEVER_MARKERS = new Set([9, 18, 19, 20, 21, 22]);
/** Markers are standard signals: one pending instance at most, never queued twice. */
const MAX_MARKER = 31;
const bit = (sig: number) => 1n << BigInt(sig - 1);
/** Marker candidates, in order of preference. */
const MARKER_ORDER = [
  ...IGNORED_BY_DEFAULT,
  ...Array.from({ length: MAX_MARKER }, (_, i) => i + 1).filter(
    (sig) => !IGNORED_BY_DEFAULT.includes(sig) && !NEVER_MARKERS.has(sig),
  ),
];

/** A task's thread-group id and own id as it sees them (innermost pid namespace). */
interface OwnIds {
  tgid: number;
  pid: number;
}

function ownIds(st: ProcStatus): OwnIds {
  return { tgid: st.nsTgid.at(-1) ?? st.tgid, pid: st.nsPid.at(-1) ?? st.pid };
}

/** Where a batch goes in the code page, and the signal that ends it. */
interface BatchPlan {
  codeAt: bigint;
  cursorAt: bigint;
  tableAt: bigint;
  /** Calls per batch (the table ends the page, less one terminating entry). */
  capacity: number;
  code: Buffer;
  marker: Marker;
  /** Restart: the marker is unblocked for the batch (every signal is blocked while restoring). */
  unblock?: boolean;
}

const PROT_EXEC = 4;
/** Synchronous fault signals: SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV. */
const FAULTS = new Set([4, 5, 7, 8, 11]);
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
 * start addresses. `maps`: its /proc/PID/maps, if the caller has read it. They are harmless but are not the task's state.
 */
export function findLeftoverParasites(
  pid: number,
  maps: readonly MapsEntry[] = readMaps(pid),
): { start: bigint; end: bigint }[] {
  const size = BigInt(PARASITE_PAGES * 4096);
  const found: { start: bigint; end: bigint }[] = [];
  // Areas of several threads mapped side by side are merged into one VMA.
  const candidates = maps.filter(
    (m) =>
      m.read &&
      m.write &&
      m.exec &&
      !m.shared &&
      m.pathname === '' &&
      (m.end - m.start) % size === 0n,
  );
  if (candidates.length === 0) return found;
  const mem = new ProcMem(pid, false);
  try {
    for (const m of candidates) {
      // Marked, or still blank: ckpt was killed between mapping the page
      // and writing to it (no program keeps a blank RWX page of this size).
      const areas: { start: bigint; end: bigint }[] = [];
      for (let at = m.start; at < m.end; at += size) {
        const page = mem.read(at, 4096);
        const marked = page.subarray(4096 - PARASITE_MAGIC.length).equals(PARASITE_MAGIC);
        if (!marked && !page.every((b) => b === 0)) break;
        areas.push({ start: at, end: at + size });
      }
      if (areas.length === Number((m.end - m.start) / size)) found.push(...areas);
    }
  } finally {
    mem.close();
  }
  return found;
}

/** The most of the vDSO's padding ckpt's single calls use (see `startPadCall`). */
const MAX_PAD_ROOM = 256;

/**
 * Zero ckpt's code that a killed checkpoint left in the vDSO's padding of
 * `pid` (a single call's syscall instruction and resume code, 64-byte
 * aligned from the end, see `startPadCall`): the next checkpoint finds the
 * padding free again, instead of making its first call from an ordinary
 * syscall instruction, which is not kill-safe. Left alone while a thread's
 * instruction pointer (`ips`) is inside it. `insn`: the arch's syscall
 * instruction, which such code starts with. Returns whether it cleared
 * anything.
 */
export function clearLeftoverPadCode(
  pid: number,
  maps: readonly MapsEntry[],
  ips: readonly bigint[],
  insn: Buffer,
): boolean {
  const vdso = maps.find((m) => m.kind === 'vdso');
  if (!vdso) return false;
  const from = vdso.end - BigInt(MAX_PAD_ROOM);
  const mem = new ProcMem(pid);
  try {
    const tail = mem.read(from, MAX_PAD_ROOM);
    const first = tail.findIndex((b) => b !== 0);
    if (first < 0 || (MAX_PAD_ROOM - first) % 64 !== 0) return false;
    if (!tail.subarray(first, first + insn.length).equals(insn)) return false;
    const start = from + BigInt(first);
    if (ips.some((ip) => ip >= start && ip < vdso.end)) return false;
    mem.write(start, Buffer.alloc(MAX_PAD_ROOM - first));
    return true;
  } catch {
    return false; // no padding to read: nothing of ckpt's there
  } finally {
    mem.close();
  }
}

const SIGRTMIN = 32;
const SI_TKILL = -6;

/**
 * Queue the signals `infos` (siginfo) again to the thread `tid`. One whose
 * sender was sigqueue(3) or the like (a negative si_code other than
 * SI_TKILL) is queued as it was, value included; the kernel lets no other
 * process claim to be a kill(2) or kernel sender, so the others are sent
 * by tgkill, as from ckpt, and keep only their number.
 */
function requeue(tid: number, infos: readonly Buffer[]): void {
  let tgid = tid;
  try {
    tgid = readStatus(tid).tgid;
  } catch {
    return; // gone: nobody to deliver them to
  }
  const lib = libc();
  for (const info of infos) {
    const sig = info.readInt32LE(0);
    const code = info.readInt32LE(8);
    const asQueued =
      code < 0 &&
      code !== SI_TKILL &&
      lib.rtTgsigqueueinfoNr >= 0 &&
      lib.rtTgsigqueueinfo(lib.rtTgsigqueueinfoNr, tgid, tid, sig, info) === 0;
    if (!asQueued) lib.tgkill(tgid, tid, sig);
  }
}

/** mmap's refusal of writable executable memory under PR_SET_MDWE. */
const EACCES = 13;

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
  /** Where single calls run: the base instruction, or the kill-safe code page. */
  private syscallAddr: bigint | undefined;
  /** The syscall instruction found in the task (or planted), once looked for. */
  private baseAddr: bigint | undefined;
  private readonly killSafe: boolean;
  /** Bytes at the start of the code page used by single calls. */
  private codeUsed = 0;
  private readonly codePage: bigint | undefined;
  /** The caller's /proc/PID/status, until used (see InjectorOptions.status). */
  private status: ProcStatus | undefined;
  /** The caller's /proc/PID/maps (see InjectorOptions.maps). */
  private readonly maps: readonly MapsEntry[] | undefined;
  /** /proc/PID/mem, open while the injector is. */
  private procMem: ProcMem | undefined;
  /** The caller's open /proc/PID/mem (InjectorOptions.mem), not closed here. */
  private readonly sharedMem: ProcMem | undefined;
  /** The batch code as last written (marker pid and signal), to write it only when it changes. */
  private batchCodeKey: string | undefined;
  /** The last batch plan made (its code depends only on the marker). */
  private lastPlan: BatchPlan | undefined;
  /** The task's signal dispositions and seccomp mode (kill-safe markers), read once. */
  private signalInfo: { ignored: bigint; seccomp: number; ids: OwnIds } | undefined;
  /** Restart: signals pending in the task (never markers), its seccomp mode and own ids. */
  private restartInfo: { pending: bigint; seccomp: number; ids: OwnIds } | undefined;
  /** End of the task's vDSO, once looked for (null: none). */
  private vdsoEnd: bigint | null | undefined;
  /** See {@link stubCode}. */
  private padCode: Buffer | undefined;
  /** See {@link resumeCode}. */
  private resume: Buffer | undefined;
  /** Address of the kill-safe code page and its scratch, once mapped. */
  private parasite: bigint | undefined;
  /** Original bytes at `syscallAddr` if we planted the instruction there. */
  private planted: Buffer | undefined;
  private scratchAddr: bigint | undefined;
  private scratchSize = 0;
  private closed = false;
  /** Signals held back during injection, as siginfo (see `defer`). */
  private readonly deferred: Buffer[] = [];

  constructor(pid: number, conv: SyscallConvention, options: InjectorOptions = {}) {
    this.pid = pid;
    this.conv = conv;
    this.saved = getRegset(pid, NT.PRSTATUS, conv.regsSize);
    this.killSafe = options.killSafe === true && conv.resumeCode !== undefined;
    this.baseAddr = options.syscallAddr;
    // Kill-safe calls run from ckpt's code page, mapped from the vDSO's
    // padding: the base instruction is looked for only if that is missing.
    if (!this.killSafe) this.syscallAddr = this.base();
    this.codePage = options.codePage;
    this.status = options.status;
    this.maps = options.maps;
    this.sharedMem = options.mem;
    if (this.codePage !== undefined) this.codeUsed = conv.syscallInsn.length;
    // Syscall stops must be told apart from SIGTRAP signals.
    if (this.killSafe) setOptions(pid, PTRACE_O.TRACESYSGOOD | (options.ptraceOptions ?? 0));
  }

  /** A syscall instruction and the resume code of the saved registers (kill-safe single calls). */
  private stubCode(): Buffer {
    this.padCode ??= Buffer.concat([this.conv.syscallInsn, this.resumeCode()]);
    return this.padCode;
  }

  /** The resume code of the saved registers (see `SyscallConvention.resumeCode`), made once. */
  private resumeCode(): Buffer {
    this.resume ??= this.conv.resumeCode!(this.saved);
    return this.resume;
  }

  /** The syscall instruction found in the task, or planted at its instruction pointer. */
  private base(): bigint {
    if (this.baseAddr !== undefined) return this.baseAddr;
    const found = findSyscallInsn(this.pid, this.conv);
    if (found !== undefined) {
      this.baseAddr = found;
    } else {
      this.baseAddr = this.conv.getIp(this.saved);
      this.planted = plant(this.pid, this.baseAddr, this.conv.syscallInsn);
    }
    return this.baseAddr;
  }

  private get mem(): ProcMem {
    this.procMem ??= this.sharedMem ?? new ProcMem(this.pid);
    return this.procMem;
  }

  /**
   * Map the kill-safe code page (one call from the base instruction: the
   * only unprotected moment) and switch every later call to it.
   */
  private setUpParasite(): void {
    this.startParasite()();
  }

  /**
   * {@link setUpParasite} in two steps: the task is resumed to map the
   * page, and the returned function waits for it and fills the page, so
   * that other tasks can run meanwhile. Nothing else may touch this task
   * in between.
   */
  startParasite(): Finish<void> {
    this.assertOpen();
    if (!this.killSafe || this.parasite !== undefined) return () => {};
    const len = PARASITE_PAGES * 4096;
    const args = [0, len, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0];
    const mapped = this.startPadCall(this.conv.nr.mmap, args);
    return () => this.installParasite(mapped ? mapped() : this.callSafely(this.conv.nr.mmap, args));
  }

  private installParasite(addr: bigint): void {
    if (isSyscallError(addr)) {
      throw new CkptError(
        'ESYS',
        `cannot map ckpt's code page in pid ${this.pid} (${errnoText(Number(-addr))})${Number(-addr) === EACCES ? `: the process forbids executable memory it may write (prctl PR_SET_MDWE), which ckpt's injected code needs` : ''}`,
        {
          pid: this.pid,
          syscall: 'mmap',
          errno: Number(-addr),
        },
      );
    }
    this.parasite = addr;
    const code = this.stubCode();
    // The mark first: a ckpt killed between the two writes leaves a page
    // a later checkpoint still knows as its own (blank or marked), never
    // one with code and no mark (CI saw one stay for good).
    this.mem.write(addr + 4096n - 8n, PARASITE_MAGIC);
    this.mem.write(addr, code);
    this.codeUsed = code.length;
    this.syscallAddr = addr;
  }

  /** Run syscall `nr` with `args` (up to six) in the task; returns the raw result (negative errno on failure). */
  call(nr: number, args: readonly (bigint | number)[] = []): bigint {
    this.assertOpen();
    if (this.killSafe) {
      if (this.parasite === undefined) this.setUpParasite();
      // A batch of one stops once; a kill-safe single call stops twice.
      const plan = this.batchPlan();
      if (plan) return this.runBatch(plan, [{ nr, args }])[0]!;
    }
    return this.callAt(this.syscallAddr ?? this.base(), nr, args);
  }

  /**
   * Run `calls` in order and return their raw results. Each call runs even
   * if an earlier one failed. Where the arch has batch code and the task a
   * usable marker signal (see the module comment), a table-full of calls
   * costs one round trip; otherwise they run one by one. `avoid`: signals
   * (bit n-1 = signal n) the calls send to the task, which therefore cannot
   * be the marker. `spare`: free room of the scratch area (the arguments'
   * structs are below it), where a table longer than the code page's can go.
   */
  callMany(
    calls: readonly SyscallCall[],
    avoid = 0n,
    spare?: () => { addr: bigint; size: number } | undefined,
  ): bigint[] {
    this.assertOpen();
    checkResultUses(this.pid, calls);
    if (this.killSafe && this.parasite === undefined && calls.length > 0) this.setUpParasite();
    const results: bigint[] = [];
    // A reference to a call of an earlier chunk is its known result.
    const value = (a: SyscallArg): bigint | number =>
      typeof a === 'object' ? results[a.result]! : a;
    while (results.length < calls.length) {
      const plan = this.batchPlan(avoid, spare?.());
      if (!plan) {
        for (const c of calls.slice(results.length)) {
          const r = this.call(c.nr, c.args.map(value));
          const word = Buffer.alloc(8);
          word.writeBigInt64LE(r);
          for (const at of c.resultTo ?? []) this.mem.write(at, word);
          results.push(r);
        }
        break;
      }
      const first = results.length;
      const chunk = calls.slice(first, first + plan.capacity).map((c) => ({
        ...c,
        args: c.args.map((a) =>
          typeof a === 'object' && a.result >= first ? { result: a.result - first } : value(a),
        ),
      }));
      results.push(...this.runBatch(plan, chunk));
    }
    return results;
  }

  /**
   * {@link callMany} in two steps: the task is resumed into the batch, and
   * the returned function waits for it to end and gives the results, so
   * that other tasks can run their batches meanwhile. Nothing else may
   * touch this task in between. (Calls that do not fit one batch run when
   * the function is called.)
   */
  startMany(
    calls: readonly SyscallCall[],
    avoid = 0n,
    spare?: () => { addr: bigint; size: number } | undefined,
  ): Finish<bigint[]> {
    this.assertOpen();
    checkResultUses(this.pid, calls);
    if (calls.length === 0) return () => [];
    if (this.killSafe && this.parasite === undefined) this.setUpParasite();
    const plan = this.batchPlan(avoid, spare?.());
    if (!plan || calls.length > plan.capacity) return () => this.callMany(calls, avoid, spare);
    return this.startBatch(plan, calls);
  }

  /**
   * Forget what was read of the task's signal dispositions: a call may
   * have changed them (rt_sigaction with a new action).
   */
  signalActionsChanged(): void {
    this.signalInfo = undefined;
  }

  private assertOpen(): void {
    if (this.closed)
      throw new CkptError('EINVAL', `syscall injector for pid ${this.pid} is closed`, {
        pid: this.pid,
      });
  }

  /**
   * The marker signal for a batch: a standard signal the task does not
   * block (its mask now: a mask parked by sigsuspend was put back by the
   * first injected call). Kill-safe: one it also ignores (SIG_IGN, or the
   * default action of SIGURG, SIGWINCH, SIGCHLD), read once from
   * /proc/PID/status. Otherwise: one not pending, unblocked for the batch.
   * None under seccomp, whose filter may refuse or trap tgkill.
   */
  private pickMarker(avoid: bigint): (Marker & { unblock?: boolean }) | undefined {
    if (this.killSafe) {
      if (!this.signalInfo) {
        const st = this.status ?? readStatus(this.pid);
        this.status = undefined;
        const handled = st.sigIgn | st.sigCgt;
        let ignored = st.sigIgn;
        for (const sig of IGNORED_BY_DEFAULT) if ((handled & bit(sig)) === 0n) ignored |= bit(sig);
        this.signalInfo = { ignored, seccomp: st.seccomp, ids: ownIds(st) };
      }
      const info = this.signalInfo;
      if (info.seccomp !== 0) return undefined;
      const usable = info.ignored & ~getSigmask(this.pid) & ~avoid;
      for (const sig of MARKER_ORDER) {
        if ((usable & bit(sig)) !== 0n) return { ...info.ids, signal: sig };
      }
      return undefined;
    }
    // Restart: the pending signals are read once; later ones are those
    // the batches queue (see callMany), added as they go.
    if (!this.restartInfo) {
      const st = readStatus(this.pid);
      this.restartInfo = { pending: st.sigPnd | st.shdPnd, seccomp: st.seccomp, ids: ownIds(st) };
    }
    const info = this.restartInfo;
    info.pending |= avoid;
    if (info.seccomp !== 0) return undefined;
    for (const sig of MARKER_ORDER) {
      if ((info.pending & bit(sig)) === 0n) return { ...info.ids, signal: sig, unblock: true };
    }
    return undefined;
  }

  /**
   * Where the next batch goes, or undefined to run calls one by one. The
   * table goes after the code in the code page, or in `spare` (free room of
   * the scratch area) when that holds more calls.
   */
  private batchPlan(avoid = 0n, spare?: { addr: bigint; size: number }): BatchPlan | undefined {
    const plan = this.codePlan(avoid);
    if (!plan || !spare) return plan;
    const tableAt = BigInt(alignUp(Number(spare.addr), 64));
    const room = Number(spare.addr + BigInt(spare.size) - tableAt);
    const capacity = Math.floor(room / BATCH_ENTRY_SIZE) - 1;
    return capacity > plan.capacity ? { ...plan, tableAt, capacity } : plan;
  }

  /** The batch code and a table right after it, in the code page. */
  private codePlan(avoid: bigint): BatchPlan | undefined {
    const gen = this.conv.batchCode;
    const page = this.killSafe ? this.parasite : this.codePage;
    if (!gen || page === undefined) return undefined;
    const marker = this.pickMarker(avoid);
    if (!marker) return undefined;
    const { unblock, ...m } = marker;
    // The code depends only on the marker: made once per marker.
    const last = this.lastPlan;
    if (last && last.marker.pid === m.pid && last.marker.signal === m.signal) {
      return { ...last, unblock };
    }
    const saved = this.killSafe ? this.resumeCode() : undefined;
    const codeAt = page + BigInt(alignUp(this.codeUsed, 64));
    // The code's length does not depend on the addresses: size it first.
    const size = gen(codeAt, codeAt, m, saved).length;
    const cursorAt = codeAt + BigInt(alignUp(size, 8));
    const tableAt = page + BigInt(alignUp(Number(cursorAt - page) + 8, 64));
    const end = page + BigInt(this.killSafe ? PAGE - PARASITE_MAGIC.length : PAGE);
    const capacity = Math.floor(Number(end - tableAt) / BATCH_ENTRY_SIZE) - 1;
    if (capacity < 1) return undefined;
    const code = gen(codeAt, cursorAt, m, saved);
    this.lastPlan = { codeAt, cursorAt, tableAt, capacity, code, marker: m };
    return { ...this.lastPlan, unblock };
  }

  /** Run up to `plan.capacity` calls with one resume of the task. */
  private runBatch(
    plan: BatchPlan,
    calls: readonly { nr: number; args: readonly SyscallArg[]; resultTo?: readonly bigint[] }[],
  ): bigint[] {
    return this.startBatch(plan, calls)();
  }

  /** {@link runBatch} up to the resume; the returned function waits and reads the results. */
  private startBatch(
    plan: BatchPlan,
    calls: readonly { nr: number; args: readonly SyscallArg[]; resultTo?: readonly bigint[] }[],
  ): Finish<bigint[]> {
    const key = `${plan.codeAt} ${plan.marker.pid} ${plan.marker.signal}`;
    if (this.batchCodeKey !== key) {
      this.mem.write(plan.codeAt, plan.code);
      this.batchCodeKey = key;
    }
    // The table, and the cursor pointing at its first entry. Numbers are
    // written without BigInts where they are safe integers (user addresses
    // are): thousands of words per restart, often in cold code.
    const buf = Buffer.alloc((calls.length + 1) * BATCH_ENTRY_SIZE);
    const table = Number(plan.tableAt);
    const entry = (i: number) => table + i * BATCH_ENTRY_SIZE;
    // Where each call's result is copied: its own result word unless told.
    const copies: (bigint | number)[][] = calls.map((c) => [...(c.resultTo ?? [])]);
    calls.forEach((c, i) => {
      const at = i * BATCH_ENTRY_SIZE;
      put64(buf, at, 1);
      put64(buf, at + 8, c.nr);
      for (let a = 0; a < 6; a++) {
        const arg = c.args[a] ?? 0;
        if (typeof arg === 'object') copies[arg.result]!.push(entry(i) + 16 + a * 8);
        else put64(buf, at + 16 + a * 8, arg);
      }
    });
    copies.forEach((to, i) => {
      const at = i * BATCH_ENTRY_SIZE;
      for (let k = 0; k < RESULT_COPIES; k++) put64(buf, at + 64 + k * 8, to[k] ?? entry(i) + 8);
    });
    const cursor = Buffer.alloc(8);
    cursor.writeBigUInt64LE(plan.tableAt);
    this.mem.write(plan.tableAt, buf);
    this.mem.write(plan.cursorAt, cursor);
    const done = BigInt(entry(calls.length));
    const regs = Buffer.from(this.saved);
    this.conv.setSyscall(regs, 0, []);
    this.conv.setIp(regs, plan.codeAt);
    setRegset(this.pid, NT.PRSTATUS, regs);
    const { signal } = plan.marker;
    if (plan.unblock) {
      // Left unblocked after the batch: it is no other signal's stand-in,
      // and the engine sets the final mask last.
      const mask = getSigmask(this.pid);
      if ((mask & bit(signal)) !== 0n) setSigmask(this.pid, mask & ~bit(signal));
    }
    cont(this.pid, 0);
    return () => {
      this.runToMarker(
        signal,
        'a batch of injected syscalls',
        () => {
          this.mem.read(plan.cursorAt, cursor);
          return cursor.readBigUInt64LE(0) === done;
        },
        true,
      );
      this.mem.read(plan.tableAt, buf);
      return calls.map((_, i) => buf.readBigInt64LE(i * BATCH_ENTRY_SIZE + 8));
    };
  }

  /** Load the saved registers with syscall `nr(args)` about to run at `at`; returns them. */
  private loadSyscall(at: bigint, nr: number, args: readonly (bigint | number)[]): Buffer {
    const regs = Buffer.from(this.saved);
    this.conv.setSyscall(
      regs,
      nr,
      args.map((a) => BigInt.asUintN(64, BigInt(a))),
    );
    this.conv.setIp(regs, at);
    setRegset(this.pid, NT.PRSTATUS, regs);
    return regs;
  }

  private callAt(at: bigint, nr: number, args: readonly (bigint | number)[]): bigint {
    this.loadSyscall(at, nr, args);
    if (this.killSafe) this.runToSyscallExit(nr);
    else this.stepOverSyscall(nr, at);
    return this.conv.getReturn(getRegset(this.pid, NT.PRSTATUS, this.conv.regsSize));
  }

  /**
   * {@link call} in two steps: the task is resumed into the call, and the
   * returned function waits for it and gives the result, so that other
   * tasks can run meanwhile. Nothing else may touch this task in between.
   * (Kill-safe injection runs the call at once.)
   */
  startCall(nr: number, args: readonly (bigint | number)[] = []): Finish<bigint> {
    this.assertOpen();
    if (this.killSafe) {
      const r = this.call(nr, args);
      return () => r;
    }
    const at = this.syscallAddr ?? this.base();
    this.loadSyscall(at, nr, args);
    singlestep(this.pid, 0);
    return () => {
      this.stepOverSyscall(nr, at, true);
      return this.conv.getReturn(getRegset(this.pid, NT.PRSTATUS, this.conv.regsSize));
    };
  }

  /**
   * Single-step over the syscall instruction: one stop, the fastest way.
   * But a tracer that dies mid-step leaves the trap flag set and the task
   * dies of SIGTRAP, so kill-safe injection does not use it.
   */
  private stepOverSyscall(nr: number, at: bigint, resumed = false): void {
    const st = this.resumeToStop(
      (pid) => singlestep(pid, 0),
      (s) => s.signal === SIGTRAP,
      resumed,
    );
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
      const st = this.resumeToStop(
        (pid) => syscallStep(pid, 0),
        (s) => s.stop === 'syscall',
      );
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
   * the injection, so it is held back, with its siginfo, and queued again
   * by {@link close}. Every instance of a real-time signal is kept; a
   * standard one is a single pending bit anyway.
   */
  private defer(signal: number): void {
    if (signal < SIGRTMIN && this.deferred.some((i) => i.readInt32LE(0) === signal)) return;
    let info: Buffer;
    try {
      info = getSiginfo(this.pid);
    } catch {
      info = Buffer.alloc(SIGINFO_SIZE);
      info.writeInt32LE(signal, 0);
      info.writeInt32LE(SI_TKILL, 8);
    }
    this.deferred.push(info);
  }

  /** Like {@link call}, but a negative errno becomes an ESYS `CkptError`. */
  callChecked(nr: number, args: readonly (bigint | number)[], what: string): bigint {
    const r = this.call(nr, args);
    if (isSyscallError(r)) {
      throw new CkptError(
        'ESYS',
        `${what} in pid ${this.pid} failed with ${errnoText(Number(-r))}`,
        {
          pid: this.pid,
          syscall: `syscall ${nr}`,
          errno: Number(-r),
        },
      );
    }
    return r;
  }

  /**
   * Address of a read-write scratch area of at least `size` bytes in the
   * task (one anonymous mmap, reused and grown as needed, unmapped by
   * {@link close}). Fill it with `writeMemory`, e.g. to pass a struct.
   */
  scratch(size: number): bigint {
    this.assertOpen();
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
   * One call from the vDSO's zero padding ending with the marker signal,
   * for the code page's own mapping and unmapping: one stop, kill-safe
   * like {@link callSafely}, which takes two. Undefined (nothing ran)
   * without that room or a marker, or when the task may have a blocked
   * mask parked by its interrupted syscall, which its first resume puts
   * back (and which may block the marker). In two steps: this resumes
   * the task, the returned function waits for the result.
   */
  private startPadCall(nr: number, args: readonly (bigint | number)[]): Finish<bigint> | undefined {
    const stub = this.conv.markerStub;
    if (!stub || !this.killSafe || this.conv.parksSigmask?.(this.saved) !== false) return undefined;
    const marker = this.pickMarker(0n);
    if (!marker) return undefined;
    const code = stub.code(marker, this.resumeCode());
    const room = alignUp(code.length, 64);
    const at = this.vdsoRoom(room);
    if (at === undefined) return undefined;
    // As in callSafely: the task's own registers before the code goes.
    const putBack = () => {
      setRegset(this.pid, NT.PRSTATUS, this.saved);
      this.mem.write(at, Buffer.alloc(room));
    };
    this.mem.write(at, code);
    let stopped: Buffer;
    try {
      stopped = this.loadSyscall(at, nr, args);
      cont(this.pid, 0);
    } catch (e) {
      putBack();
      throw e;
    }
    return () => {
      try {
        this.runToMarker(
          marker.signal,
          `injected syscall ${nr}`,
          () => {
            stopped = getRegset(this.pid, NT.PRSTATUS, this.conv.regsSize);
            return this.conv.getIp(stopped) === at + BigInt(stub.end);
          },
          true,
        );
        return stub.result(stopped);
      } finally {
        putBack();
      }
    };
  }

  /**
   * Resume the task until it stops for the marker `signal` and `done()`
   * says the stop is the end of ckpt's code. Other signals are held back
   * (see {@link defer}); a fault in ckpt's code is an error.
   */
  private runToMarker(signal: number, what: string, done: () => boolean, resumed = false): void {
    let faulted = false;
    const st = this.resumeToStop(
      (pid) => cont(pid, 0),
      (s) => {
        if (s.stop !== 'signal-delivery') return false;
        // The marker, once the code ran to its end (another sender's
        // instance of the signal may come earlier).
        if (s.signal === signal && done()) return true;
        // A fault raised by ckpt's own code (si_code > 0: not sent by anyone).
        faulted = FAULTS.has(s.signal) && getSiginfo(this.pid).readInt32LE(8) > 0;
        return faulted;
      },
      resumed,
    );
    if (faulted) {
      throw new CkptError(
        'EFAULT',
        `${what} in pid ${this.pid} faulted (signal ${st.signal}): ckpt's code or its arguments are wrong`,
        { pid: this.pid },
      );
    }
    if (st.stop !== 'signal-delivery') {
      throw new CkptError(
        'EFAULT',
        `${what} in pid ${this.pid} stopped unexpectedly (${st.stop} stop, signal ${st.signal})`,
        { pid: this.pid },
      );
    }
  }

  /**
   * Resume the task with `resume` until it stops in a way `wanted` accepts,
   * or in any other way than these, which are resumed past: a signal's
   * delivery (held back for {@link close}: resuming with no signal discards
   * it) and, a few times, the group stop a job-stopped task reports again
   * when first resumed (it stays stopped for everyone but its tracer).
   * Returns the stop it ended in. `resumed`: the caller already resumed it.
   */
  private resumeToStop(
    resume: (pid: number) => void,
    wanted: (st: StopStatus) => boolean,
    resumed = false,
  ): StopStatus {
    if (!resumed) resume(this.pid);
    for (let groupStops = 0; ; ) {
      const st = waitForStop(this.pid);
      if (wanted(st)) return st;
      if (st.stop === 'signal-delivery') this.defer(st.signal);
      else if (!(st.stop === 'group' && groupStops++ < 3)) return st;
      resume(this.pid);
    }
  }

  /**
   * A call made before the code page exists or after it is gone. The vDSO
   * ends in zero padding that nothing executes: the syscall instruction and
   * resume code go there for the one call, so that it too survives ckpt's
   * death (the bytes are put back right after; a leftover copy would never
   * run). Without such padding, the call runs from the base instruction.
   */
  private callSafely(nr: number, args: readonly (bigint | number)[]): bigint {
    const code = this.stubCode();
    const pad = this.vdsoRoom(alignUp(code.length, 64));
    if (pad === undefined) return this.callAt(this.base(), nr, args);
    try {
      this.mem.write(pad, code);
      return this.callAt(pad, nr, args);
    } finally {
      // The task stopped inside the padding: give it its own registers
      // back before the code goes, so that ckpt dying now leaves it as it
      // was (a tracer's exit lets it resume, syscall restart included).
      setRegset(this.pid, NT.PRSTATUS, this.saved);
      this.mem.write(pad, Buffer.alloc(code.length));
    }
  }

  /** Read `length` bytes at `addr` in the task (forced, through /proc/PID/mem). */
  readMemory(addr: bigint, length: number): Buffer {
    return this.mem.read(addr, length);
  }

  /**
   * Address of `room` bytes of zero padding at the end of the task's vDSO
   * (nothing executes there; it is zero again after each use), if it has.
   */
  private vdsoRoom(room: number): bigint | undefined {
    // Past MAX_PAD_ROOM, a leftover would not be found and cleared.
    if (room > MAX_PAD_ROOM) return undefined;
    this.vdsoEnd ??= (this.maps ?? readMaps(this.pid)).find((m) => m.kind === 'vdso')?.end ?? null;
    if (this.vdsoEnd === null) return undefined;
    const at = this.vdsoEnd - BigInt(room);
    try {
      return this.mem.read(at, room).every((b) => b === 0) ? at : undefined;
    } catch {
      return undefined;
    }
  }

  /** Write `data` at `addr` in the task (forced, through /proc/PID/mem). */
  writeMemory(addr: bigint, data: Buffer): void {
    this.mem.write(addr, data);
  }

  /** The scratch area {@link scratch} hands out: its address and size, once it exists. */
  get scratchArea(): { addr: bigint; size: number } | undefined {
    if (this.parasite !== undefined)
      return { addr: this.parasite + 4096n, size: (PARASITE_PAGES - 1) * 4096 };
    if (this.scratchAddr === undefined) return undefined;
    return { addr: this.scratchAddr, size: this.scratchSize };
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
    this.startClose()();
  }

  /**
   * {@link close} in two steps: the task is resumed to unmap the code
   * page, and the returned function waits for it and puts the rest back,
   * so that other tasks can run meanwhile. Nothing else may touch this
   * task in between.
   */
  startClose(): Finish<void> {
    if (this.closed) return () => {};
    this.unmapScratch();
    if (this.parasite === undefined) return () => this.finishClose();
    // Not from the code page itself: it cannot unmap itself and go on.
    const args = [this.parasite, PARASITE_PAGES * 4096];
    const unmapped = this.startPadCall(this.conv.nr.munmap, args);
    return () => {
      try {
        if (unmapped) unmapped();
        else this.callSafely(this.conv.nr.munmap, args);
        this.parasite = undefined;
      } finally {
        this.finishClose();
      }
    };
  }

  private finishClose(): void {
    if (this.closed) return;
    this.parasite = undefined;
    this.closed = true;
    try {
      if (this.planted && this.baseAddr !== undefined) this.mem.write(this.baseAddr, this.planted);
    } finally {
      if (this.procMem !== this.sharedMem) this.procMem?.close();
      this.procMem = undefined;
    }
    setRegset(this.pid, NT.PRSTATUS, this.saved);
    // Held-back signals become pending again, for the task to take once it
    // runs, to this very thread.
    const infos = this.deferred.splice(0);
    if (infos.length > 0) requeue(this.pid, infos);
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
 * Refuse a batch whose calls take the result of a later call (or of
 * themselves), or copy a result to more than {@link RESULT_COPIES} places.
 */
function checkResultUses(pid: number, calls: readonly SyscallCall[]): void {
  // Plain loops: a task's reads are a hundred calls, checked in every task
  // while the code still runs cold.
  let uses: number[] | undefined;
  for (let i = 0; i < calls.length; i++) {
    const c = calls[i]!;
    const copies = c.resultTo?.length ?? 0;
    if (copies > RESULT_COPIES) {
      throw new CkptError(
        'EINVAL',
        `the result of injected call ${i} in pid ${pid} goes to ${copies} places`,
        { pid },
      );
    }
    for (const a of c.args) {
      if (typeof a !== 'object') continue;
      uses ??= calls.map((x) => x.resultTo?.length ?? 0);
      if (!(a.result >= 0 && a.result < i) || ++uses[a.result]! > RESULT_COPIES) {
        throw new CkptError(
          'EINVAL',
          `injected call ${i} in pid ${pid} takes the result of call ${a.result}, which is not an earlier call or is used too often`,
          { pid },
        );
      }
    }
  }
}

function alignUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
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
