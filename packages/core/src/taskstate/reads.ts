/**
 * What the checkpoint of the task, signals and rlimits phases saves that
 * injected calls read (prctl values, the robust list, signal actions, the
 * alternate stack, resource limits, the personality and timer slack, which
 * /proc shows too but at a file per value): read together, in one
 * batch of injected calls, by the first of these phases to run, and kept
 * in `task.data` for the others. A frozen task changes none of these, and
 * checkpoint phases only read, so each value is exactly what the phase
 * itself would have read. (The blocked mask is not among them: it is read
 * by the signals phase, see sigmask.ts.)
 */
import { InjectedRead } from '../engine/injected-read.js';
import { PR } from '../kernel/prctl.js';
import type { SyscallRequest } from '../task.js';
import { RLIMIT_NAMES } from './records.js';

const PR_GET_PDEATHSIG = 2;
const PR_GET_TIMERSLACK = 30;
const PR_GET_CHILD_SUBREAPER = 37;
/** personality(2) with this argument only returns the current persona. */
const PERSONALITY_QUERY = 0xffff_ffff;
const KSIGACTION_SIZE = 32;
/** sizeof(sigset_t) the kernel expects as rt_sigaction's last argument. */
const SIGSET_SIZE = 8;
/** `stack_t` on x86-64: ss_sp u64, ss_flags i32, padding, ss_size u64. */
const STACK_T_SIZE = 24;
const RLIMIT_SIZE = 16;
const KEY = 'taskstate:reads';

/** Where the task phase's values are, in {@link InjectedReads.misc}. */
export const MISC = {
  comm: 0,
  tidAddress: 16,
  robustHead: 24,
  robustLen: 32,
  pdeath: 40,
  childSubreaper: 44,
  size: 48,
} as const;

/** The raw results, each a copy of the kernel's struct(s). */
export interface InjectedReads {
  /** PR_GET_NAME, PR_GET_PDEATHSIG, PR_GET_CHILD_SUBREAPER, PR_GET_TID_ADDRESS, get_robust_list (see {@link MISC}). */
  misc: Buffer;
  /** `struct kernel_sigaction` of signals 1..nsig. */
  actions: Buffer;
  /** sigaltstack's `stack_t`. */
  altstack: Buffer;
  /** `struct rlimit64` of every RLIMIT_*. */
  limits: Buffer;
  /** personality(0xffffffff). */
  personality: number;
  /** PR_GET_TIMERSLACK, in ns. */
  timerslackNs: bigint;
}

/**
 * The calls of {@link injectedReads}: the same for every task (their
 * arguments point into the post's data parts, not at addresses), so made
 * once per signal count rather than a hundred objects per task.
 */
const readCallsByNsig = new Map<number, readonly (SyscallRequest & { what: string })[]>();
function readCalls(nsig: number): readonly (SyscallRequest & { what: string })[] {
  let calls = readCallsByNsig.get(nsig);
  if (!calls) {
    const at = (data: number, offset = 0) => ({ data, offset });
    calls = [
      {
        name: 'prctl',
        args: [PR.GET_NAME, at(0, MISC.comm)],
        what: 'reading the name (PR_GET_NAME)',
      },
      {
        name: 'prctl',
        args: [PR_GET_PDEATHSIG, at(0, MISC.pdeath)],
        what: 'reading the parent-death signal',
      },
      {
        name: 'prctl',
        args: [PR_GET_CHILD_SUBREAPER, at(0, MISC.childSubreaper)],
        what: 'reading the child-subreaper flag',
      },
      {
        name: 'prctl',
        args: [PR.GET_TID_ADDRESS, at(0, MISC.tidAddress)],
        what: 'reading clear_child_tid (PR_GET_TID_ADDRESS)',
      },
      {
        name: 'get_robust_list',
        args: [0, at(0, MISC.robustHead), at(0, MISC.robustLen)],
        what: 'reading the robust futex list',
      },
      ...Array.from({ length: nsig }, (_, i) => ({
        name: 'rt_sigaction' as const,
        args: [i + 1, 0, at(1, i * KSIGACTION_SIZE), SIGSET_SIZE],
        what: `reading the action of signal ${i + 1}`,
      })),
      { name: 'sigaltstack', args: [0, at(2)], what: 'reading the alternate signal stack' },
      ...RLIMIT_NAMES.map((name, r) => ({
        name: 'prlimit64' as const,
        args: [0, r, 0, at(3, r * RLIMIT_SIZE)],
        what: `reading ${name}`,
      })),
      // Results, not data: the last two calls.
      { name: 'personality', args: [PERSONALITY_QUERY], what: 'reading the personality' },
      { name: 'prctl', args: [PR_GET_TIMERSLACK], what: 'reading the timer slack' },
    ];
    readCallsByNsig.set(nsig, calls);
  }
  return calls;
}

/**
 * The values: posted by the task phase's `prepare`, or read on first use
 * (one batch of injected calls either way).
 */
export const injectedReads = new InjectedRead<InjectedReads>(KEY, (task, done) => {
  const nsig = task.arch.nsig;
  // The parts the calls fill: data parts of the post, read back after.
  const misc = Buffer.alloc(MISC.size);
  const actions = Buffer.alloc(nsig * KSIGACTION_SIZE);
  const altstack = Buffer.alloc(STACK_T_SIZE);
  const limits = Buffer.alloc(RLIMIT_NAMES.length * RLIMIT_SIZE);
  task.sys.postChecked(readCalls(nsig), {
    data: [misc, actions, altstack, limits],
    readBack: true,
    done: (results, [m, a, s, l]) =>
      done({
        misc: m!,
        actions: a!,
        altstack: s!,
        limits: l!,
        personality: Number(results[results.length - 2]!),
        timerslackNs: results[results.length - 1]!,
      }),
  });
});
