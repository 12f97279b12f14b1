/**
 * Applying saved credentials to a restored task with syscalls injected into
 * it. The task starts with the credentials of `ckpt restart`'s caller, and
 * every step is a change that task makes to itself, so the kernel's own
 * rules (capabilities(7), setresuid(2), prctl(2)) guarantee that restart
 * never grants more than the caller holds, as the seed authorises every
 * change against the restarting task's credentials. This module orders the
 * steps so that each one still has the privilege it needs, and turns a
 * refusal into an error naming the credential and the reason.
 */
import {
  CkptError,
  type DataOf,
  errnoName,
  type IdSet,
  isSyscallError,
  PR,
  type ProcStatus,
  type RestartTask,
  readStatus,
  type SyscallName,
  stage,
} from '@ckpt/core';
import {
  CAP,
  type CapSets,
  capName,
  capsetArgs,
  capsIn,
  describeCaps,
  hasCap,
  knownCaps,
  PR_CAP_AMBIENT,
  PR_CAPS,
  SECBIT,
} from './caps.js';
import type { SavedCaps, SavedCred } from './records.js';

const EPERM = 1;
/** (uid_t)-1: setfsuid/setfsgid leave the id alone and just return it. */
const UNCHANGED = 0xffffffff;
/** Largest group list passed through the scratch area (12 KiB, shared with capset's structs). */
const SCRATCH_BYTES = 8192;
const PAGE = 4096;
const PROT_RW = 3;
const MAP_PRIVATE_ANON = 0x22;

/** The credentials the task has before this phase: those of `ckpt restart`. */
interface Caller {
  status: ProcStatus;
  securebits: number;
}

/** "setresuid() failed with EINVAL". */
const failed = (syscall: string, errno: number): string =>
  `${syscall}() failed with ${errnoName(errno)}`;

/** True when 0 (root) is among the real, effective and saved ids. */
const holdsRoot = (ids: IdSet): boolean => ids.real === 0 || ids.effective === 0 || ids.saved === 0;

/**
 * Give the restored task `cred` and `caps`. Call after every other phase
 * that needs the caller's privilege (files, memory, rlimits).
 * `callerSecurebits` and `status`: the task's securebits (see
 * {@link readSecurebits}) and /proc/PID/status now.
 * @throws CkptError EPERM naming the pid, the credential and why the
 *   caller cannot grant it; ENOTSUP for capabilities this kernel lacks
 */
export function applyCreds(
  task: RestartTask,
  cred: SavedCred,
  caps: SavedCaps,
  callerSecurebits = readSecurebits(task),
  status: ProcStatus = readStatus(task.pid),
): void {
  new CredApplier(task, cred, caps, { status, securebits: callerSecurebits }).run();
}

/**
 * The securebits `task` has now (with an injected prctl). Every task a
 * restart creates starts with those of `ckpt restart` and keeps them until
 * its credentials are applied: `applyCreds` takes them as an argument, so
 * that a restart reads them once, not once per task.
 */
export function readSecurebits(task: RestartTask): number {
  return Number(
    task.sys.check('prctl', [PR_CAPS.GET_SECUREBITS, 0, 0, 0, 0], 'reading securebits'),
  );
}

/** Where a staged struct is: its address, or a data part of a post. */
type Staged = bigint | DataOf;

/**
 * One step, queued: its arguments (given the addresses of its staged
 * buffers) and the error it becomes when it fails.
 */
interface Step {
  name: SyscallName;
  staged: readonly Buffer[];
  args: (addrs: readonly Staged[]) => readonly (number | bigint | Staged)[];
  error: (errno: number) => CkptError;
}

/** The calls of `steps`, each given where its staged structs are (`staged`, in order). */
function callsOf(steps: readonly Step[], staged: readonly Staged[]) {
  let next = 0;
  return steps.map((s) => {
    const mine = staged.slice(next, next + s.staged.length);
    next += s.staged.length;
    return { name: s.name, args: s.args(mine) };
  });
}

/** Throw the refusal of the first step that failed. */
function checkSteps(steps: readonly Step[], results: readonly bigint[]): void {
  results.forEach((r, i) => {
    if (isSyscallError(r)) throw steps[i]!.error(Number(-r));
  });
}

class CredApplier {
  private securebits: number;
  private readonly pid: number;
  /**
   * Steps not run yet: they run in order, as one batch, when a result is
   * needed and at the end. A failed step is reported after the whole batch
   * ran; the restart fails then, and the task is killed.
   */
  private readonly queue: Step[] = [];

  constructor(
    private readonly task: RestartTask,
    private readonly cred: SavedCred,
    private readonly caps: SavedCaps,
    private readonly caller: Caller,
  ) {
    this.securebits = caller.securebits;
    this.pid = task.savedPid;
  }

  run(): void {
    this.checkPossible();
    // Inheritable first: capset may add an inheritable capability only
    // when it is in the bounding set (pI' ⊆ pI ∪ bset), and a task may have
    // dropped from its bounding set a capability it keeps inheritable.
    this.setInheritable();
    // PR_CAPBSET_DROP needs CAP_SETPCAP in the effective set, which the
    // uid change below clears.
    this.dropBounding();
    // A uid change that leaves root clears the permitted set unless
    // keep-caps is on; the saved permitted set must survive it.
    this.keepCaps();
    // Groups and gids before uids: they need CAP_SETGID, effective only
    // while the euid is still the caller's.
    this.setGroups();
    this.setIds('gid', 'setresgid', CAP.SETGID);
    this.setFsId('gid', 'setfsgid', CAP.SETGID);
    this.setIds('uid', 'setresuid', CAP.SETUID);
    // Leaving euid 0 cleared the effective set (keep-caps kept only the
    // permitted one): raise the caller's again for setfsuid and securebits.
    this.capset(this.callerSets(), 'effective');
    // setres*id reset the fs ids to the effective ones.
    this.setFsId('uid', 'setfsuid', CAP.SETUID);
    // Ambient after the uid change (which clears it) and before
    // securebits, which may forbid raising it (NO_CAP_AMBIENT_RAISE).
    this.setAmbient();
    // Securebits need CAP_SETPCAP in the effective set: before the final
    // capset, which usually drops it.
    this.setSecurebits();
    // The saved sets. Ambient survives: capset keeps pA ∩ pP ∩ pI.
    this.capset(this.caps, 'permitted', () => {
      const missing = this.caps.permitted & ~this.caller.status.capPrm;
      return [
        `permitted capabilities ${describeCaps(missing)}`,
        `${this.who()} does not hold them`,
      ];
    });
    if (this.cred.noNewPrivs && !this.caller.status.noNewPrivs) {
      this.prctl([PR.SET_NO_NEW_PRIVS, 1], 'no_new_privs');
    }
    // Last: the kernel resets dumpable to fs.suid_dumpable whenever the
    // euid, egid, fsuid or fsgid change, or permitted capabilities grow.
    this.setDumpable();
    this.post();
  }

  /**
   * Post the queued steps (see `TaskSyscalls.post`): they run with the
   * task's next injected call (at the latest when restart finishes the
   * task, all tasks at once), and a failed one fails the restart then.
   */
  private post(): void {
    const steps = this.queue.splice(0);
    if (steps.length === 0) return;
    // The staged structs go with the post: data parts, placed when it runs.
    const parts = steps.flatMap((s) => s.staged);
    this.task.sys.post(
      callsOf(
        steps,
        parts.map((_, i) => ({ data: i })),
      ),
      { data: parts, done: (results) => checkSteps(steps, results) },
    );
  }

  /** Run the queued steps; their results, in order. */
  private flush(): bigint[] {
    const steps = this.queue.splice(0);
    if (steps.length === 0) return [];
    const parts = steps.flatMap((s) => s.staged);
    const results = this.task.sys.batch(
      callsOf(steps, parts.length > 0 ? stage(this.task, parts) : []),
    );
    checkSteps(steps, results);
    return results;
  }

  /** Refuse up front what no syscall could do: grow a bounding set, clear no_new_privs. */
  private checkPossible(): void {
    const known = knownCaps();
    const c = this.caps;
    const unknown = (c.inheritable | c.permitted | c.bounding | c.ambient) & ~known;
    if (unknown !== 0n) {
      throw new CkptError(
        'ENOTSUP',
        `pid ${this.pid}: cannot restore ${describeCaps(unknown)}: this kernel does not know ` +
          `capabilities above ${capName(capsIn(known).length - 1)}`,
        { pid: this.pid },
      );
    }
    const grow = c.bounding & ~this.caller.status.capBnd;
    if (grow !== 0n) {
      throw this.refused(
        `bounding-set capabilities ${describeCaps(grow)}`,
        `the bounding set of ${this.who()} lacks them, and a bounding set can only shrink`,
      );
    }
    if (!this.cred.noNewPrivs && this.caller.status.noNewPrivs) {
      throw this.refused(
        'no_new_privs off',
        `${this.runsAs()} with no_new_privs set, which is inherited and cannot be cleared`,
      );
    }
  }

  private setInheritable(): void {
    const { capInh, capPrm, capEff, capBnd } = this.caller.status;
    if (this.caps.inheritable === capInh) return;
    this.capset(this.callerSets(), 'inheritable', () => {
      const setpcap = hasCap(capEff, CAP.SETPCAP);
      const added = this.caps.inheritable & ~capInh;
      const missing = added & ~(setpcap ? capBnd : capPrm) || added;
      return [
        `inheritable capabilities ${describeCaps(missing)}`,
        setpcap
          ? `the bounding set of ${this.who()} lacks them`
          : `${this.who()} holds neither them nor CAP_SETPCAP`,
      ];
    });
  }

  private dropBounding(): void {
    for (const cap of capsIn(this.caller.status.capBnd & ~this.caps.bounding)) {
      this.prctl([PR_CAPS.CAPBSET_DROP, cap], `the bounding set without ${capName(cap)}`, () =>
        this.needs(CAP.SETPCAP),
      );
    }
  }

  private keepCaps(): void {
    const leavesRoot = holdsRoot(this.caller.status.uid) && !holdsRoot(this.cred.uid);
    if (!leavesRoot || this.securebits & SECBIT.KEEP_CAPS) return;
    // PR_SET_KEEPCAPS sets SECBIT_KEEP_CAPS without needing CAP_SETPCAP
    // (PR_SET_SECUREBITS does); it fails only when the bit is locked.
    this.prctl(
      [PR_CAPS.SET_KEEPCAPS, 1],
      'capabilities across the change of uid',
      () => `the securebits of ${this.who()} lock keep-caps off`,
    );
    this.securebits |= SECBIT.KEEP_CAPS;
  }

  private setGroups(): void {
    const want = this.cred.groups;
    const have = [...this.caller.status.groups].sort((a, b) => a - b);
    if (want.length === have.length && want.every((g, i) => g === have[i])) return;
    const list = Buffer.alloc(want.length * 4);
    want.forEach((g, i) => {
      list.writeUInt32LE(g, i * 4);
    });
    const what = `supplementary groups ${want.join(' ')}`;
    const why = () => this.needs(CAP.SETGID);
    if (list.length <= SCRATCH_BYTES) {
      this.call('setgroups', (addrs) => [want.length, addrs[0]!], what, why, [list]);
      return;
    }
    this.withMapping(list, (addr) => this.call('setgroups', [want.length, addr], what, why));
  }

  /** Real, effective and saved ids; a refusal names the ids the caller does not hold. */
  private setIds(kind: 'uid' | 'gid', setres: SyscallName, cap: number): void {
    const want = this.cred[kind];
    const have = this.caller.status[kind];
    const held = [have.real, have.effective, have.saved];
    const foreign = [want.real, want.effective, want.saved].filter((id) => !held.includes(id));
    const what = foreign.length
      ? `${kind} ${[...new Set(foreign)].join(', ')}`
      : `${kind}s ${want.real}/${want.effective}/${want.saved}`;
    this.call(setres, [want.real, want.effective, want.saved], what, () => this.needs(cap));
  }

  /** The fs id. setfs*id returns the previous id and never fails: read it back. */
  private setFsId(kind: 'uid' | 'gid', setfs: SyscallName, cap: number): void {
    const want = this.cred[kind].fs;
    if (want === this.cred[kind].effective) return;
    this.call(setfs, [want], `fs${kind} ${want}`);
    this.call(setfs, [UNCHANGED], `fs${kind} ${want}`);
    if (Number(this.flush().at(-1)) !== want) {
      throw this.refused(`fs${kind} ${want}`, this.needs(cap), setfs);
    }
  }

  private setAmbient(): void {
    const args = (op: number, cap = 0) => [PR_CAPS.CAP_AMBIENT, op, cap, 0, 0];
    this.prctl(args(PR_CAP_AMBIENT.CLEAR_ALL), 'the ambient set');
    // The securebits as they are at this step (the explanation is built later).
    const securebits = this.securebits;
    for (const cap of capsIn(this.caps.ambient)) {
      this.prctl(args(PR_CAP_AMBIENT.RAISE, cap), `ambient capability ${capName(cap)}`, () =>
        securebits & SECBIT.NO_CAP_AMBIENT_RAISE
          ? `the securebits of ${this.who()} forbid raising ambient capabilities`
          : `${this.who()} does not hold it`,
      );
    }
  }

  private setSecurebits(): void {
    const want = this.cred.securebits;
    const what = `securebits 0x${want.toString(16)}`;
    if (want === this.securebits) return;
    if ((want ^ this.securebits) === SECBIT.KEEP_CAPS) {
      // Only keep-caps differs (set above for the uid change): no privilege needed.
      this.prctl(
        [PR_CAPS.SET_KEEPCAPS, want & SECBIT.KEEP_CAPS ? 1 : 0],
        what,
        () => 'keep-caps is locked',
      );
    } else {
      this.prctl([PR_CAPS.SET_SECUREBITS, want], what, () =>
        hasCap(this.caller.status.capEff, CAP.SETPCAP)
          ? `the securebits of ${this.who()} (0x${this.caller.securebits.toString(16)}) lock bits that differ`
          : this.needs(CAP.SETPCAP),
      );
    }
    this.securebits = want;
  }

  private setDumpable(): void {
    const want = this.cred.dumpable;
    if (want !== 2) {
      this.prctl([PR.SET_DUMPABLE, want], `dumpable ${want}`);
      return;
    }
    // 2 (root-only core dumps) cannot be set with prctl; the kernel sets it
    // from fs.suid_dumpable when the ids changed above.
    this.prctl([PR.GET_DUMPABLE], 'dumpable');
    const now = this.flush().at(-1);
    if (now !== 2n) {
      throw this.refused(
        'dumpable 2',
        `prctl cannot set it and fs.suid_dumpable here made it ${now}`,
      );
    }
  }

  /**
   * capset(2) in the task; on EPERM `explain` says which capabilities
   * could not be restored and why.
   */
  private capset(sets: CapSets, which: string, explain?: () => [what: string, why: string]): void {
    this.queue.push({
      name: 'capset',
      staged: capsetArgs(sets),
      args: ([hdr, data]) => [hdr!, data!],
      error: (errno) => {
        const [what, why] =
          errno === EPERM && explain
            ? explain()
            : [`${which} capabilities`, failed('capset', errno)];
        return this.refused(what, why, 'capset', errno);
      },
    });
  }

  /** The caller's own sets with the saved inheritable set (set first, see run()). */
  private callerSets(): CapSets {
    const { capEff, capPrm } = this.caller.status;
    return { effective: capEff, permitted: capPrm, inheritable: this.caps.inheritable };
  }

  private prctl(args: readonly (number | bigint)[], what: string, whyEperm?: () => string): void {
    const padded = [...args, 0, 0, 0, 0].slice(0, 5);
    this.call('prctl', padded, what, whyEperm);
  }

  /** Queue a syscall in the task; a failure is a refusal to restore `what`. */
  private call(
    name: SyscallName,
    args:
      | readonly (number | bigint)[]
      | ((addrs: readonly Staged[]) => (number | bigint | Staged)[]),
    what: string,
    whyEperm?: () => string,
    staged: readonly Buffer[] = [],
  ): void {
    this.queue.push({
      name,
      staged,
      args: typeof args === 'function' ? args : () => args,
      error: (errno) => {
        const why = errno === EPERM && whyEperm ? whyEperm() : failed(name, errno);
        return this.refused(what, why, name, errno);
      },
    });
  }

  private refused(what: string, why: string, syscall?: string, errno = EPERM): CkptError {
    return new CkptError(
      errno === EPERM ? 'EPERM' : 'ESYS',
      `pid ${this.pid}: cannot restore ${what}: ${why}`,
      {
        pid: this.pid,
        syscall,
        errno,
      },
    );
  }

  /** Why an EPERM happened when the step needs `cap`. */
  private needs(cap: number): string {
    return hasCap(this.caller.status.capEff, cap)
      ? `the kernel refused it although ${this.who()} holds ${capName(cap)}`
      : `${this.runsAs()} without ${capName(cap)}`;
  }

  private runsAs(): string {
    return `ckpt restart runs as uid ${this.caller.status.uid.effective}`;
  }

  private who(): string {
    return `ckpt restart (uid ${this.caller.status.uid.effective})`;
  }

  /**
   * Queue `fn`'s steps with `data` (a long group list, beyond the scratch
   * area) copied into a temporary mapping of the task, and run them.
   */
  private withMapping(data: Buffer, fn: (addr: bigint) => void): void {
    this.flush();
    const len = BigInt(Math.ceil(data.length / PAGE) * PAGE);
    const sys = this.task.sys;
    const addr = sys.check(
      'mmap',
      [0, len, PROT_RW, MAP_PRIVATE_ANON, -1, 0],
      'mapping room for groups',
    );
    try {
      this.task.mem.write(addr, data);
      fn(addr);
      this.flush();
    } finally {
      sys.check('munmap', [addr, len], 'unmapping the room for groups');
    }
  }
}
