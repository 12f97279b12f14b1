/**
 * The `seccomp` phase: a thread's seccomp mode and, in filter mode, its
 * chain of classic BPF filters, read with PTRACE_SECCOMP_GET_FILTER and
 * installed again at restart, so a sandboxed program stays sandboxed.
 *
 * While ckpt works in a task under seccomp, its filters are suspended
 * (PTRACE_O_SUSPEND_SECCOMP, which ends when ckpt detaches): a filter must
 * not refuse, trap or kill ckpt's own calls. At checkpoint the engine sets
 * it when it freezes such a task (and runs the calls one at a time: a
 * batch left running by a dying ckpt would run unsuspended). At restart
 * this phase sets it on every thread that gets filters, before they are
 * installed.
 *
 * Filters are installed before the credentials are applied (order 880,
 * before creds at 900): installing needs CAP_SYS_ADMIN or no_new_privs,
 * and the restored task still has the restarter's capabilities then.
 * The oldest filters every thread of a process has in common (installed
 * before the threads were started, or with TSYNC) are installed once by
 * the leader with SECCOMP_FILTER_FLAG_TSYNC, before any other thread is
 * restored, so that the threads share them again, as a later TSYNC by the
 * program requires; each thread then installs the rest of its own chain.
 * The kernel shows no identity of filters, only their programs: equal
 * programs at the same depth are taken to be the same filter.
 *
 * A chain is a `seccomp_filters` object keyed by its content: identical
 * chains (a whole tree forked after one sandbox call) are saved once.
 * Filters that hand system calls to a user-space supervisor
 * (SECCOMP_RET_USER_NOTIF) are refused: the supervisor is not restored.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { RecordValue } from '../codec/record.js';
import type { CheckpointCtx, RestartCtx } from '../context.js';
import { CkptError } from '../errors.js';
import { isSyscallError } from '../kernel/inject.js';
import { PR } from '../kernel/prctl.js';
import {
  BPF_INSN_SIZE,
  PTRACE_O,
  RESTORE_PTRACE_OPTIONS,
  seccompFilter,
  seccompFilterFlags,
  setOptions,
} from '../kernel/ptrace.js';
import type { ObjectOps, TaskPhase } from '../registry.js';
import type { CheckpointTask, RestartTask } from '../task.js';
import { seccompFiltersRecord, seccompRecord } from './records.js';

const SECCOMP_MODE_DISABLED = 0;
const SECCOMP_MODE_STRICT = 1;
const SECCOMP_MODE_FILTER = 2;
const SECCOMP_SET_MODE_FILTER = 1;
const SECCOMP_FILTER_FLAG_TSYNC = 1;
const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_PRIVATE = 2;
const MAP_ANONYMOUS = 0x20;
/** `struct sock_fprog`: u16 len, padding, pointer to the instructions. */
const FPROG_SIZE = 16;
/** BPF_RET | BPF_K: return a constant. */
const BPF_CLASS_MASK = 0x07;
const BPF_RET = 0x06;
const BPF_RVAL_MASK = 0x18;
const BPF_K = 0x00;
const SECCOMP_RET_ACTION_FULL = 0xffff0000;
const SECCOMP_RET_USER_NOTIF = 0x7fc00000;

/** The `seccomp_filters` object: a chain of filters, oldest first. */
export type SeccompChain = RecordValue<typeof seccompFiltersRecord>;

/** A thread's seccomp state as read at checkpoint. */
interface ThreadSeccomp {
  mode: number;
  chain?: SeccompChain;
  /** Content hash of `chain`: the object's key. */
  key?: string;
}

/** What prepare found for a process: its leader's state and each other thread's. */
interface ProcessSeccomp extends ThreadSeccomp {
  threads: Map<number, ThreadSeccomp>;
}

const DATA_KEY = 'seccomp';

/** The filters of thread `tid`, oldest first (the kernel's index 0). */
function readChain(tid: number): SeccompChain {
  const filters: SeccompChain['filters'] = [];
  for (let index = 0; ; index++) {
    const prog = seccompFilter(tid, index);
    if (prog === undefined) break;
    filters.push({ flags: seccompFilterFlags(tid, index), prog });
  }
  return { filters };
}

/** True when a filter returns SECCOMP_RET_USER_NOTIF for some call. */
function notifiesSupervisor(prog: Buffer): boolean {
  for (let at = 0; at + BPF_INSN_SIZE <= prog.length; at += BPF_INSN_SIZE) {
    const code = prog.readUInt16LE(at);
    if ((code & BPF_CLASS_MASK) !== BPF_RET || (code & BPF_RVAL_MASK) !== BPF_K) continue;
    const k = prog.readUInt32LE(at + 4);
    if ((k & SECCOMP_RET_ACTION_FULL) >>> 0 === SECCOMP_RET_USER_NOTIF) return true;
  }
  return false;
}

// node:crypto costs ~7 ms to load, in every command; only a process with
// seccomp filters needs it.
let crypto: typeof import('node:crypto') | undefined;

function chainKey(chain: SeccompChain): string {
  crypto ??= createRequire(import.meta.url)('node:crypto') as typeof import('node:crypto');
  const h = crypto.createHash('sha256');
  for (const f of chain.filters) {
    h.update(`${f.flags}:${f.prog.length}:`);
    h.update(f.prog);
  }
  return h.digest('hex');
}

/** Read thread `tid`'s seccomp state (its mode from /proc, given). */
function readThread(tid: number, tgid: number, mode: number): ThreadSeccomp {
  if (mode !== SECCOMP_MODE_FILTER) return { mode };
  const chain = readChain(tid);
  const who = tid === tgid ? `pid ${tid}` : `thread ${tid} of pid ${tgid}`;
  if (chain.filters.length === 0) {
    throw new CkptError(
      'EUNEXPECTED',
      `${who} is in seccomp filter mode but has no filter to read`,
      {
        pid: tgid,
      },
    );
  }
  if (chain.filters.some((f) => notifiesSupervisor(f.prog))) {
    throw new CkptError(
      'ENOTSUP',
      `${who} runs under a seccomp filter that hands system calls to a supervisor process (SECCOMP_RET_USER_NOTIF); its supervisor cannot be restored with it`,
      { pid: tgid },
    );
  }
  return { mode, chain, key: chainKey(chain) };
}

/** The process's state: from prepare, or read now (every thread is frozen). */
function processState(task: CheckpointTask): ProcessSeccomp {
  const prepared = task.data.get(DATA_KEY) as ProcessSeccomp | undefined;
  if (prepared) return prepared;
  task.sys.settle();
  const state: ProcessSeccomp = {
    ...readThread(task.pid, task.pid, task.status.seccomp),
    threads: new Map(),
  };
  for (const name of readdirSync(`/proc/${task.pid}/task`)) {
    const tid = Number(name);
    if (tid !== task.pid) state.threads.set(tid, readThread(tid, task.pid, seccompModeOf(tid)));
  }
  task.data.set(DATA_KEY, state);
  return state;
}

/** Seccomp mode of a thread from /proc (the fallback path only: prepare has the status). */
function seccompModeOf(tid: number): number {
  const m = /^Seccomp:\s*(\d+)/m.exec(readFileSync(`/proc/${tid}/status`, 'utf8'));
  return m ? Number(m[1]) : SECCOMP_MODE_DISABLED;
}

/** How many leading filters two chains have in common (same flags and program). */
function commonPrefix(a: SeccompChain, b: SeccompChain): number {
  let n = 0;
  while (
    n < a.filters.length &&
    n < b.filters.length &&
    a.filters[n]!.flags === b.filters[n]!.flags &&
    a.filters[n]!.prog.equals(b.filters[n]!.prog)
  )
    n++;
  return n;
}

/**
 * How many of its oldest filters every thread of the process has in
 * common (the part of the kernel's filter tree they share): 0 unless every
 * thread is in filter mode.
 */
function sharedFilters(state: ProcessSeccomp): number {
  if (state.mode !== SECCOMP_MODE_FILTER) return 0;
  let n = state.chain!.filters.length;
  for (const t of state.threads.values()) {
    if (t.mode !== SECCOMP_MODE_FILTER) return 0;
    n = Math.min(n, commonPrefix(state.chain!, t.chain!));
  }
  return n;
}

function writeRecord(ctx: CheckpointCtx, s: ThreadSeccomp, shared: number): void {
  const filters = s.chain ? ctx.checkpointObj(SECCOMP_FILTERS, s.key!, s.chain) : 0;
  ctx.write(seccompRecord, { mode: s.mode, filters, shared });
}

function suspendError(pid: number, e: unknown): CkptError {
  return new CkptError(
    'ESYS',
    `pid ${pid}: cannot suspend seccomp while restoring it (PTRACE_O_SUSPEND_SECCOMP needs CAP_SYS_ADMIN, a kernel with CONFIG_CHECKPOINT_RESTORE and a ckpt not under seccomp itself): ${(e as Error).message}`,
    { pid },
  );
}

/** Let ckpt's calls in `task` pass its filters until it detaches (see the module comment). */
function suspendFilters(task: RestartTask): void {
  task.sys.whenStopped((pid) => {
    try {
      setOptions(pid, PTRACE_O.SUSPEND_SECCOMP | RESTORE_PTRACE_OPTIONS);
    } catch (e) {
      throw suspendError(task.savedPid, e);
    }
  });
}

/**
 * The same for the process's other threads, before the leader gives them
 * filters with TSYNC: they are still waiting in their first stop (their
 * own restore comes after the leader's), so ptrace reaches them directly.
 */
function suspendOtherThreads(task: RestartTask): void {
  for (const name of readdirSync(`/proc/${task.pid}/task`)) {
    const tid = Number(name);
    if (tid === task.pid) continue;
    try {
      setOptions(tid, PTRACE_O.SUSPEND_SECCOMP | RESTORE_PTRACE_OPTIONS);
    } catch (e) {
      throw suspendError(task.savedPid, e);
    }
  }
}

/**
 * Install `filters` in `task`, oldest first, the first `tsync` of them with
 * TSYNC (for every thread). The programs go into a mapping made for them;
 * the calls and its unmap run now when `now`, else they are posted to run
 * with the task's last calls.
 */
function installFilters(
  task: RestartTask,
  filters: SeccompChain['filters'],
  tsync: number,
  now: boolean,
): void {
  const n = filters.length;
  const progAt: number[] = [];
  let size = n * FPROG_SIZE;
  for (const f of filters) {
    progAt.push(size);
    size += f.prog.length;
  }
  const length = Math.ceil(size / 4096) * 4096;
  const addr = task.sys.check(
    'mmap',
    [0, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0],
    'mapping room for its seccomp filters',
  );
  const buf = Buffer.alloc(size);
  filters.forEach((f, i) => {
    buf.writeUInt16LE(f.prog.length / BPF_INSN_SIZE, i * FPROG_SIZE);
    buf.writeBigUInt64LE(addr + BigInt(progAt[i]!), i * FPROG_SIZE + 8);
    f.prog.copy(buf, progAt[i]);
  });
  task.mem.write(addr, buf);
  const calls = filters.map((f, i) => ({
    name: 'seccomp' as const,
    args: [
      SECCOMP_SET_MODE_FILTER,
      f.flags | (i < tsync ? SECCOMP_FILTER_FLAG_TSYNC : 0),
      addr + BigInt(i * FPROG_SIZE),
    ],
    what: `installing a seccomp filter${i < tsync ? ' for every thread (TSYNC)' : ''}`,
  }));
  const check = (results: readonly bigint[]) => {
    results.slice(0, n).forEach((r, i) => {
      // TSYNC reports a thread it could not synchronise by its (positive) id.
      if (r === 0n) return;
      const why = isSyscallError(r) ? `errno ${-r}` : `thread ${r} could not take it`;
      throw new CkptError('ESYS', `pid ${task.savedPid}: ${calls[i]!.what} failed: ${why}`, {
        pid: task.savedPid,
        syscall: 'seccomp',
      });
    });
  };
  const all = [...calls, { name: 'munmap' as const, args: [addr, length] }];
  if (now) check(task.sys.batch(all));
  else task.sys.post(all, { done: check });
}

/**
 * Restore a thread's seccomp state. The leader installs the filters every
 * thread shares right away, with TSYNC, before any other thread is
 * restored; each thread (leader included) then installs the rest of its
 * chain, posted to run with its last calls.
 */
function restoreThreadState(ctx: RestartCtx, task: RestartTask, leader: boolean): void {
  const rec = ctx.read(seccompRecord);
  if (rec.mode === SECCOMP_MODE_DISABLED) return;
  suspendFilters(task);
  if (rec.mode === SECCOMP_MODE_STRICT) {
    task.sys.postChecked([
      {
        name: 'prctl',
        args: [PR.SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0, 0],
        what: 'entering seccomp strict mode',
      },
    ]);
    return;
  }
  const { filters } = ctx.fetchObj<SeccompChain>(rec.filters, SECCOMP_FILTERS);
  if (rec.shared > filters.length) {
    throw new CkptError(
      'EBADREC',
      `pid ${task.savedPid}: seccomp record shares ${rec.shared} of ${filters.length} filters`,
      { pid: task.savedPid, recordType: seccompRecord.type },
    );
  }
  if (leader && rec.shared > 0) {
    task.sys.settle();
    suspendOtherThreads(task);
    installFilters(task, filters.slice(0, rec.shared), rec.shared, true);
  }
  if (filters.length > rec.shared) installFilters(task, filters.slice(rec.shared), 0, false);
}

/** Name of the chain object type. */
export const SECCOMP_FILTERS = 'seccomp_filters';

/** A chain of seccomp filters, saved once per distinct content. */
export const seccompFiltersObject: ObjectOps<SeccompChain> = {
  name: SECCOMP_FILTERS,
  id: 20,
  checkpoint(ctx, chain) {
    ctx.write(seccompFiltersRecord, chain);
  },
  restore(ctx) {
    return ctx.read(seccompFiltersRecord);
  },
  describe: (chain) => `seccomp filters (${chain.filters.length})`,
};

/** Saves and restores every thread's seccomp mode and filters. */
export const seccompPhase: TaskPhase = {
  name: 'seccomp',
  order: 880,
  prepare(_ctx, task) {
    task.data.set(DATA_KEY, {
      ...readThread(task.pid, task.pid, task.status.seccomp),
      threads: new Map(),
    } satisfies ProcessSeccomp);
  },
  prepareThread(_ctx, thread, task) {
    const state = task.data.get(DATA_KEY) as ProcessSeccomp | undefined;
    state?.threads.set(thread.pid, readThread(thread.pid, task.pid, thread.status.seccomp));
  },
  checkpoint(ctx, task) {
    const state = processState(task);
    writeRecord(ctx, state, sharedFilters(state));
  },
  checkpointThread(ctx, thread, task) {
    const state = processState(task);
    const s = state.threads.get(thread.pid);
    if (!s) {
      throw new CkptError(
        'EUNEXPECTED',
        `thread ${thread.pid} of pid ${task.pid} was not prepared`,
        {
          pid: task.pid,
        },
      );
    }
    writeRecord(ctx, s, sharedFilters(state));
  },
  restore: (ctx, task) => restoreThreadState(ctx, task, true),
  restoreThread: (ctx, thread) => restoreThreadState(ctx, thread, false),
};
