/**
 * ptrace(2) requests, one function each, failing with a `CkptError` that
 * names the pid. Only the PTRACE_SEIZE family is used: it never sends
 * SIGSTOP to the tracee, and it reports group-stops as PTRACE_EVENT_STOP so
 * that job-control state can be told apart from our own interrupts.
 */
import { addressOf, clearErrno, errno, libc, sysError } from './libc.js';

/** ptrace request numbers (linux/ptrace.h). */
export const PTRACE = {
  PEEKUSER: 3,
  POKEUSER: 6,
  CONT: 7,
  SINGLESTEP: 9,
  DETACH: 17,
  SYSCALL: 24,
  SETOPTIONS: 0x4200,
  GETEVENTMSG: 0x4201,
  GETSIGINFO: 0x4202,
  SETSIGINFO: 0x4203,
  GETREGSET: 0x4204,
  SETREGSET: 0x4205,
  SEIZE: 0x4206,
  INTERRUPT: 0x4207,
  LISTEN: 0x4208,
  PEEKSIGINFO: 0x4209,
  GETSIGMASK: 0x420a,
  SETSIGMASK: 0x420b,
  SECCOMP_GET_FILTER: 0x420c,
  SECCOMP_GET_METADATA: 0x420d,
  GET_SYSCALL_INFO: 0x420e,
  GET_RSEQ_CONFIGURATION: 0x420f,
} as const;

/** PTRACE_O_* options for {@link seize}. */
export const PTRACE_O = {
  TRACESYSGOOD: 0x1,
  TRACEFORK: 0x2,
  TRACEVFORK: 0x4,
  TRACECLONE: 0x8,
  TRACEEXEC: 0x10,
  TRACEVFORKDONE: 0x20,
  TRACEEXIT: 0x40,
  TRACESECCOMP: 0x80,
  EXITKILL: 0x100000,
  SUSPEND_SECCOMP: 0x200000,
} as const;

/**
 * ptrace options of every task a restart creates (inherited through
 * CLONE_PTRACE from the restore stub): until released they die with ckpt,
 * never left half restored. Code that sets options on such a task must
 * keep these.
 */
export const RESTORE_PTRACE_OPTIONS = PTRACE_O.EXITKILL;

/** PTRACE_EVENT_* values, found in `status >> 16` of a stop. */
export const PTRACE_EVENT = {
  FORK: 1,
  VFORK: 2,
  CLONE: 3,
  EXEC: 4,
  VFORK_DONE: 5,
  EXIT: 6,
  SECCOMP: 7,
  STOP: 128,
} as const;

/** ELF note types for PTRACE_GETREGSET / PTRACE_SETREGSET. */
export const NT = { PRSTATUS: 1, PRFPREG: 2, X86_XSTATE: 0x202 } as const;

/** Size of the kernel's siginfo_t. */
export const SIGINFO_SIZE = 128;

function request(
  req: number,
  name: string,
  pid: number,
  addr: number | bigint,
  data: number | bigint | Buffer,
): number {
  const r =
    typeof data === 'object'
      ? libc().ptraceBuf(req, pid, addr, data)
      : libc().ptrace(req, pid, addr, data);
  if (r === -1) throw sysError(name, errno(), `ptrace ${name} on pid ${pid}`, { pid });
  return Number(r);
}

/**
 * Attach to `pid` without stopping it (PTRACE_SEIZE). If this process dies,
 * the kernel detaches and the tracee keeps running. EPERM means the task is
 * already traced, or we lack the privilege.
 */
export function seize(pid: number, options = 0): void {
  request(PTRACE.SEIZE, 'PTRACE_SEIZE', pid, 0, options);
}

/** Ask a seized tracee to stop (PTRACE_INTERRUPT); wait for it with `waitStop`. */
export function interrupt(pid: number): void {
  request(PTRACE.INTERRUPT, 'PTRACE_INTERRUPT', pid, 0, 0);
}

/** Resume a stopped tracee, delivering `sig` (0 for none). */
export function cont(pid: number, sig = 0): void {
  request(PTRACE.CONT, 'PTRACE_CONT', pid, 0, sig);
}

/** Resume for one instruction, delivering `sig` (0 for none). */
export function singlestep(pid: number, sig = 0): void {
  request(PTRACE.SINGLESTEP, 'PTRACE_SINGLESTEP', pid, 0, sig);
}

/** Resume until the next syscall entry or exit. */
export function syscallStep(pid: number, sig = 0): void {
  request(PTRACE.SYSCALL, 'PTRACE_SYSCALL', pid, 0, sig);
}

/**
 * Leave a group-stopped tracee stopped but let it be notified of SIGCONT
 * (PTRACE_LISTEN, only valid in a group-stop of a seized tracee).
 */
export function listen(pid: number): void {
  request(PTRACE.LISTEN, 'PTRACE_LISTEN', pid, 0, 0);
}

/** Detach from a stopped tracee, delivering `sig` (0 for none). */
export function detach(pid: number, sig = 0): void {
  request(PTRACE.DETACH, 'PTRACE_DETACH', pid, 0, sig);
}

/** Change the PTRACE_O_* options of a tracee. */
export function setOptions(pid: number, options: number): void {
  request(PTRACE.SETOPTIONS, 'PTRACE_SETOPTIONS', pid, 0, options);
}

/** The message of the last ptrace event (new tid for CLONE/FORK, exit status for EXIT). */
export function getEventMsg(pid: number): bigint {
  const out = Buffer.alloc(8);
  request(PTRACE.GETEVENTMSG, 'PTRACE_GETEVENTMSG', pid, 0, out);
  return out.readBigUInt64LE(0);
}

/**
 * Read register set `type` (an {@link NT} value) into a new Buffer of the
 * size the kernel filled. `maxSize` bounds it (xstate can be several KiB).
 */
export function getRegset(pid: number, type: number, maxSize = 4096): Buffer {
  const data = Buffer.alloc(maxSize);
  const iov = Buffer.alloc(16);
  iov.writeBigUInt64LE(addressOf(data), 0);
  iov.writeBigUInt64LE(BigInt(maxSize), 8);
  request(PTRACE.GETREGSET, 'PTRACE_GETREGSET', pid, type, iov);
  return data.subarray(0, Number(iov.readBigUInt64LE(8)));
}

/** Write register set `type` from `data` (as returned by {@link getRegset}). */
export function setRegset(pid: number, type: number, data: Buffer): void {
  const iov = Buffer.alloc(16);
  iov.writeBigUInt64LE(addressOf(data), 0);
  iov.writeBigUInt64LE(BigInt(data.length), 8);
  request(PTRACE.SETREGSET, 'PTRACE_SETREGSET', pid, type, iov);
}

/** Read the word at `offset` of the tracee's `struct user` (PTRACE_PEEKUSER). */
export function peekUser(pid: number, offset: number): bigint {
  // glibc's wrapper returns the word itself, so -1 is ambiguous: use errno.
  clearErrno();
  const r = libc().ptrace(PTRACE.PEEKUSER, pid, offset, 0);
  const e = errno();
  if (r === -1 && e !== 0) {
    throw sysError('PTRACE_PEEKUSER', e, `reading user area offset ${offset} of pid ${pid}`, {
      pid,
    });
  }
  return BigInt.asUintN(64, BigInt(r));
}

/** Write the word at `offset` of the tracee's `struct user` (PTRACE_POKEUSER). */
export function pokeUser(pid: number, offset: number, value: bigint): void {
  request(PTRACE.POKEUSER, 'PTRACE_POKEUSER', pid, offset, BigInt.asUintN(64, value));
}

/** The siginfo of the signal that caused the current stop (128 raw bytes). */
export function getSiginfo(pid: number): Buffer {
  const out = Buffer.alloc(SIGINFO_SIZE);
  request(PTRACE.GETSIGINFO, 'PTRACE_GETSIGINFO', pid, 0, out);
  return out;
}

/** Replace the siginfo of the signal being delivered at the current stop. */
export function setSiginfo(pid: number, info: Buffer): void {
  request(PTRACE.SETSIGINFO, 'PTRACE_SETSIGINFO', pid, 0, info);
}

/** The tracee's blocked-signal mask (bit n-1 = signal n). */
export function getSigmask(pid: number): bigint {
  const out = Buffer.alloc(8);
  request(PTRACE.GETSIGMASK, 'PTRACE_GETSIGMASK', pid, 8, out);
  return out.readBigUInt64LE(0);
}

/** A task's restartable-sequences registration (rseq(2)); `size` 0 when it has none. */
export interface RseqConfig {
  /** Address of its `struct rseq`. */
  abi: bigint;
  size: number;
  /** The signature that must precede its abort handlers. */
  signature: number;
  flags: number;
}

/** The tracee's rseq registration (PTRACE_GET_RSEQ_CONFIGURATION, Linux 5.13). */
export function getRseqConfig(pid: number): RseqConfig {
  const out = Buffer.alloc(24);
  request(PTRACE.GET_RSEQ_CONFIGURATION, 'PTRACE_GET_RSEQ_CONFIGURATION', pid, 24, out);
  return {
    abi: out.readBigUInt64LE(0),
    size: out.readUInt32LE(8),
    signature: out.readUInt32LE(12),
    flags: out.readUInt32LE(16),
  };
}

const ENOENT = 2;
/** Size of one classic BPF instruction (`struct sock_filter`). */
export const BPF_INSN_SIZE = 8;

/**
 * The classic BPF program of the tracee's seccomp filter `index`, as
 * `struct sock_filter` instructions; undefined past the last. Index 0 is
 * the oldest filter, as get_nth_filter() in kernel/seccomp.c counts (seen
 * on 6.18; the request's commit message says the newest). Needs
 * CAP_SYS_ADMIN and a tracer not under seccomp itself.
 */
export function seccompFilter(pid: number, index: number): Buffer | undefined {
  const count = libc().ptrace(PTRACE.SECCOMP_GET_FILTER, pid, index, 0);
  if (count === -1) {
    const err = errno();
    if (err === ENOENT) return undefined;
    throw sysError(
      'PTRACE_SECCOMP_GET_FILTER',
      err,
      `reading seccomp filter ${index} of pid ${pid}`,
      {
        pid,
      },
    );
  }
  const prog = Buffer.alloc(Number(count) * BPF_INSN_SIZE);
  request(PTRACE.SECCOMP_GET_FILTER, 'PTRACE_SECCOMP_GET_FILTER', pid, index, prog);
  return prog;
}

/**
 * The flags of the tracee's seccomp filter `index` that the kernel reports
 * (`SECCOMP_FILTER_FLAG_LOG`), from PTRACE_SECCOMP_GET_METADATA.
 */
export function seccompFilterFlags(pid: number, index: number): number {
  const meta = Buffer.alloc(16); // struct seccomp_metadata { u64 filter_off; u64 flags; }
  meta.writeBigUInt64LE(BigInt(index), 0);
  request(PTRACE.SECCOMP_GET_METADATA, 'PTRACE_SECCOMP_GET_METADATA', pid, 16, meta);
  return Number(meta.readBigUInt64LE(8));
}

/** Set the tracee's blocked-signal mask (SIGKILL and SIGSTOP are ignored by the kernel). */
export function setSigmask(pid: number, mask: bigint): void {
  const buf = Buffer.alloc(8);
  buf.writeBigUInt64LE(BigInt.asUintN(64, mask), 0);
  request(PTRACE.SETSIGMASK, 'PTRACE_SETSIGMASK', pid, 8, buf);
}

/**
 * The queued (pending, not yet delivered) signals of a tracee, as raw
 * 128-byte siginfo buffers, without dequeuing them. `shared` selects the
 * process-wide queue instead of the thread's own.
 */
export function peekSiginfo(pid: number, shared: boolean): Buffer[] {
  const batch = 32;
  const args = Buffer.alloc(16); // struct ptrace_peeksiginfo_args { u64 off; u32 flags; s32 nr; }
  const out = Buffer.alloc(batch * SIGINFO_SIZE);
  const result: Buffer[] = [];
  for (;;) {
    args.writeBigUInt64LE(BigInt(result.length), 0);
    args.writeUInt32LE(shared ? 1 : 0, 8);
    args.writeInt32LE(batch, 12);
    const n = request(PTRACE.PEEKSIGINFO, 'PTRACE_PEEKSIGINFO', pid, addressOf(args), out);
    for (let i = 0; i < n; i++) {
      result.push(Buffer.from(out.subarray(i * SIGINFO_SIZE, (i + 1) * SIGINFO_SIZE)));
    }
    if (n < batch) return result;
  }
}

/** What PTRACE_GET_SYSCALL_INFO says about the current stop. */
export interface SyscallInfo {
  /** 0 none, 1 entry, 2 exit, 3 seccomp (PTRACE_SYSCALL_INFO_*). */
  op: number;
  arch: number;
  instructionPointer: bigint;
  stackPointer: bigint;
  /** For entry and seccomp stops. */
  nr?: bigint;
  args?: bigint[];
  /** For exit stops. */
  rval?: bigint;
  isError?: boolean;
}

/** Decode PTRACE_GET_SYSCALL_INFO (struct ptrace_syscall_info). */
export function getSyscallInfo(pid: number): SyscallInfo {
  const out = Buffer.alloc(88);
  request(PTRACE.GET_SYSCALL_INFO, 'PTRACE_GET_SYSCALL_INFO', pid, out.length, out);
  const info: SyscallInfo = {
    op: out.readUInt8(0),
    arch: out.readUInt32LE(4),
    instructionPointer: out.readBigUInt64LE(8),
    stackPointer: out.readBigUInt64LE(16),
  };
  if (info.op === 1 || info.op === 3) {
    info.nr = out.readBigUInt64LE(24);
    info.args = Array.from({ length: 6 }, (_, i) => out.readBigUInt64LE(32 + 8 * i));
  } else if (info.op === 2) {
    info.rval = out.readBigInt64LE(24);
    info.isError = out.readUInt8(32) !== 0;
  }
  return info;
}
