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
 * When every thread of a process has the same filters (installed before
 * the threads were started, or with TSYNC), the leader installs them with
 * SECCOMP_FILTER_FLAG_TSYNC so that the threads share one chain again, as
 * a later TSYNC by the program requires; otherwise each thread installs
 * its own.
 *
 * A chain is a `seccomp_filters` object keyed by its content: identical
 * chains (a whole tree forked after one sandbox call) are saved once.
 * Filters that hand system calls to a user-space supervisor
 * (SECCOMP_RET_USER_NOTIF) are refused: the supervisor is not restored.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import type { RecordValue } from '../codec/record.js';
import type { CheckpointCtx, RestartCtx } from '../context.js';
import { CkptError } from '../errors.js';
import { isSyscallError } from '../kernel/inject.js';
import {
  BPF_INSN_SIZE,
  PTRACE_O,
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
const PR_SET_SECCOMP = 22;
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

/** What prepare found for a process: its leader's state and each thread's key. */
interface ProcessSeccomp extends ThreadSeccomp {
  /** Keys (or 'mode N') of the other threads, by tid. */
  threads: Map<number, string>;
}

const DATA_KEY = 'seccomp';

/** The filters of thread `tid`, oldest first. */
function readChain(tid: number): SeccompChain {
  const filters: SeccompChain['filters'] = [];
  for (let index = 0; ; index++) {
    const prog = seccompFilter(tid, index);
    if (prog === undefined) break;
    filters.push({ flags: seccompFilterFlags(tid, index), prog });
  }
  return { filters: filters.reverse() };
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

function chainKey(chain: SeccompChain): string {
  const h = createHash('sha256');
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

/** How a thread's state compares with the leader's: its key, or its mode when it has no chain. */
function tag(s: ThreadSeccomp): string {
  return s.key ?? `mode ${s.mode}`;
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
    if (tid === task.pid) continue;
    const mode = seccompModeOf(tid);
    state.threads.set(tid, tag(readThread(tid, task.pid, mode)));
  }
  task.data.set(DATA_KEY, state);
  return state;
}

/** Seccomp mode of a thread from /proc (the fallback path only: prepare has the status). */
function seccompModeOf(tid: number): number {
  const m = /^Seccomp:\s*(\d+)/m.exec(readFileSync(`/proc/${tid}/status`, 'utf8'));
  return m ? Number(m[1]) : SECCOMP_MODE_DISABLED;
}

/** Every thread of the process shares the leader's filters. */
function shared(state: ProcessSeccomp): boolean {
  return (
    state.mode === SECCOMP_MODE_FILTER && [...state.threads.values()].every((t) => t === state.key)
  );
}

function writeRecord(ctx: CheckpointCtx, s: ThreadSeccomp, sync: boolean): void {
  const filters = s.chain ? ctx.checkpointObj(SECCOMP_FILTERS, s.key!, s.chain) : 0;
  ctx.write(seccompRecord, { mode: s.mode, filters, sync });
}

/** Let ckpt's calls in `task` pass its filters until it detaches (see the module comment). */
function suspendFilters(task: RestartTask): void {
  task.sys.whenStopped((pid) => {
    try {
      setOptions(pid, PTRACE_O.SUSPEND_SECCOMP);
    } catch (e) {
      throw new CkptError(
        'ESYS',
        `pid ${task.savedPid}: cannot suspend seccomp while restoring it (PTRACE_O_SUSPEND_SECCOMP needs CAP_SYS_ADMIN, a kernel with CONFIG_CHECKPOINT_RESTORE and a ckpt not under seccomp itself): ${(e as Error).message}`,
        { pid: task.savedPid },
      );
    }
  });
}

/**
 * Install `chain` in `task` (oldest filter first), with TSYNC when `sync`:
 * the programs go into a mapping made for them, the calls and its unmap
 * are posted to run with the task's last calls.
 */
function installChain(task: RestartTask, chain: SeccompChain, sync: boolean): void {
  const n = chain.filters.length;
  const progAt: number[] = [];
  let size = n * FPROG_SIZE;
  for (const f of chain.filters) {
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
  chain.filters.forEach((f, i) => {
    buf.writeUInt16LE(f.prog.length / BPF_INSN_SIZE, i * FPROG_SIZE);
    buf.writeBigUInt64LE(addr + BigInt(progAt[i]!), i * FPROG_SIZE + 8);
    f.prog.copy(buf, progAt[i]);
  });
  task.mem.write(addr, buf);
  const calls = chain.filters.map((f, i) => ({
    name: 'seccomp' as const,
    args: [
      SECCOMP_SET_MODE_FILTER,
      f.flags | (sync ? SECCOMP_FILTER_FLAG_TSYNC : 0),
      addr + BigInt(i * FPROG_SIZE),
    ],
    what: `installing seccomp filter ${i + 1} of ${n}${sync ? ' for every thread (TSYNC)' : ''}`,
  }));
  task.sys.post([...calls, { name: 'munmap', args: [addr, length] }], {
    done: (results) => {
      results.slice(0, n).forEach((r, i) => {
        // TSYNC reports the thread it could not synchronise as a positive id.
        if (r === 0n) return;
        const why = isSyscallError(r) ? `errno ${-r}` : `thread ${r} could not take it`;
        throw new CkptError('ESYS', `pid ${task.savedPid}: ${calls[i]!.what} failed: ${why}`, {
          pid: task.savedPid,
          syscall: 'seccomp',
        });
      });
    },
  });
}

function restoreThreadState(ctx: RestartCtx, task: RestartTask, leader: boolean): void {
  const rec = ctx.read(seccompRecord);
  if (rec.mode === SECCOMP_MODE_DISABLED) return;
  suspendFilters(task);
  if (rec.mode === SECCOMP_MODE_STRICT) {
    task.sys.postChecked([
      {
        name: 'prctl',
        args: [PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0, 0],
        what: 'entering seccomp strict mode',
      },
    ]);
    return;
  }
  // A thread whose leader installs the shared chain with TSYNC gets it then.
  if (rec.sync && !leader) return;
  const chain = ctx.fetchObj<SeccompChain>(rec.filters, SECCOMP_FILTERS);
  installChain(task, chain, rec.sync);
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
    const s = readThread(thread.pid, task.pid, thread.status.seccomp);
    thread.data.set(DATA_KEY, s);
    state?.threads.set(thread.pid, tag(s));
  },
  checkpoint(ctx, task) {
    const state = processState(task);
    writeRecord(ctx, state, shared(state));
  },
  checkpointThread(ctx, thread, task) {
    const state = processState(task);
    const s =
      (thread.data.get(DATA_KEY) as ThreadSeccomp | undefined) ??
      readThread(thread.pid, task.pid, thread.status.seccomp);
    writeRecord(ctx, s, shared(state) && s.key === state.key);
  },
  restore: (ctx, task) => restoreThreadState(ctx, task, true),
  restoreThread: (ctx, thread) => restoreThreadState(ctx, thread, false),
};
