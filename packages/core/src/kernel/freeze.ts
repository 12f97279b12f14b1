/**
 * Freezing one task with PTRACE_SEIZE + PTRACE_INTERRUPT, and letting it go.
 *
 * Safety: a seized tracee is detached by the kernel when its tracer exits,
 * however it exits (SIGKILL included), and SEIZE never sends a signal of its
 * own. So if ckpt dies at any point, the target resumes as if nothing had
 * happened — unless we set PTRACE_O_EXITKILL, which we never do here.
 *
 * What the target sees, by the state it was in:
 * - running or sleeping: it stops in an interrupt trap. A sleeping syscall
 *   is interrupted and the task stops with the syscall's restart code in
 *   the return register (e.g. -ERESTART_RESTARTBLOCK for nanosleep); on
 *   resume the kernel restarts the syscall transparently.
 * - stopped by job control ('T'): SEIZE re-traps it into a group-stop,
 *   reported as PTRACE_EVENT_STOP with the stop signal; after detach it is
 *   still stopped.
 * - about to receive a signal: we see a signal-delivery-stop first; we let
 *   the signal be delivered and wait again for our interrupt.
 */
import { readFileSync } from 'node:fs';
import { CkptError } from '../errors.js';
import { commForMessage, readStat, readStatus } from '../proc/index.js';
import { errno, libc, sysError } from './libc.js';
import { cont, detach, getEventMsg, interrupt, seize } from './ptrace.js';
import { type WaitStatus, waitForStop, waitStop } from './wait.js';

const SIGKILL = 9;
const SIGSTOP = 19;
const ECHILD = 10;

/** Options of {@link freezeTask}. */
export interface FreezeOptions {
  /** PTRACE_O_* flags to seize with (e.g. TRACESYSGOOD | TRACECLONE | TRACEFORK). */
  ptraceOptions?: number;
  /** How long to wait for the task to stop (default 10 s). */
  timeoutMs?: number;
}

/** A task held in a ptrace stop by this process. */
export interface FrozenTask {
  pid: number;
  /** The stop that holds it: an interrupt trap, or a group-stop. */
  stop: Extract<WaitStatus, { kind: 'stopped' }>;
  /** It was in a job-control stop (state 'T') before we seized it. */
  wasStopped: boolean;
  /** Tasks it created (clone/fork/vfork events) while we were freezing it. */
  newTasks: number[];
}

/** How to leave a frozen task: as it was, stopped (SIGSTOP), or killed. */
export type UnfreezeMode = 'resume' | 'stopped' | 'kill';

/** A task seized and asked to stop, whose stop is not collected yet. */
export interface SeizedTask {
  pid: number;
  /** It was in a job-control stop (state 'T') when we seized it. */
  wasStopped: boolean;
}

/**
 * Stop `pid` (a thread id works too) under ptrace, consistently: when this
 * returns, the task is in a ptrace stop and will stay there until
 * {@link unfreezeTask}. Throws ESRCH if it vanished, EBUSY if another
 * tracer holds it, EPERM if we may not trace it.
 */
export function freezeTask(pid: number, options: FreezeOptions = {}): FrozenTask {
  return awaitFrozen(seizeTask(pid, options), options);
}

const PF_KTHREAD = 0x200000;

/** Why PTRACE_SEIZE of `pid` fails with EPERM, as far as ckpt can tell. */
function whyUntraceable(pid: number): string {
  if (pid === 1) return "it is the init of ckpt's pid namespace, which nothing may trace";
  try {
    if (readStat(pid).flags & PF_KTHREAD) return 'it is a kernel thread';
  } catch {
    // gone: say what else it could be
  }
  return 'ckpt needs root (CAP_SYS_PTRACE) and a Yama ptrace_scope that allows it';
}

/**
 * The first half of {@link freezeTask}: PTRACE_SEIZE and PTRACE_INTERRUPT,
 * without waiting for the stop. A task frozen by a cgroup freezer can be
 * seized this way; it stops once it is thawed ({@link awaitFrozen}).
 */
export function seizeTask(pid: number, options: FreezeOptions = {}): SeizedTask {
  awaitVforkDone(pid);
  const wasStopped = readStat(pid).state === 'T';
  try {
    seize(pid, options.ptraceOptions ?? 0);
  } catch (e) {
    const tracer = tracerOf(pid);
    if (tracer !== 0) {
      const by =
        tracer === process.pid
          ? 'this process (frozen twice?)'
          : `pid ${tracer} (${commForMessage(tracer)}: a debugger or another ckpt; ckpt cannot checkpoint a traced process, nor a tracer with its tracee)`;
      throw new CkptError(
        'EBUSY',
        `cannot freeze pid ${pid}: it is already traced by ${by}`,
        { pid, syscall: 'PTRACE_SEIZE' },
        { cause: e },
      );
    }
    if (e instanceof CkptError && e.code === 'EPERM') {
      throw new CkptError(
        'EPERM',
        `cannot freeze pid ${pid}: the kernel refused to trace it (EPERM): ${whyUntraceable(pid)}`,
        { pid, syscall: 'PTRACE_SEIZE' },
        { cause: e },
      );
    }
    throw e;
  }
  try {
    interrupt(pid);
  } catch (e) {
    releaseQuietly(pid);
    throw e;
  }
  return { pid, wasStopped };
}

/**
 * The second half of {@link freezeTask}: wait until a seized task is in
 * its interrupt trap (or group-stop). On failure the task is let go.
 */
export function awaitFrozen(task: SeizedTask, options: FreezeOptions = {}): FrozenTask {
  const { pid } = task;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const newTasks: number[] = [];
  try {
    for (let rounds = 0; rounds < 64; rounds++) {
      const st = waitForStop(pid, { timeoutMs });
      if (st.stop === 'interrupt' || st.stop === 'group') {
        // A group-stop also tells a stopped task that a cgroup freezer
        // showed as 'D' (frozen) when it was seized.
        const wasStopped = task.wasStopped || st.stop === 'group';
        return { pid, stop: st, wasStopped, newTasks };
      }
      if (st.stop === 'event') {
        newTasks.push(Number(getEventMsg(pid)));
        cont(pid, 0);
      } else {
        // A signal raced with our interrupt: deliver it as the kernel would
        // have, and wait again (the interrupt stays pending).
        cont(pid, st.stop === 'signal-delivery' ? st.signal : 0);
      }
    }
    throw new CkptError('EAGAIN', `pid ${pid} kept receiving signals and never stopped`, { pid });
  } catch (e) {
    releaseQuietly(pid);
    throw e;
  }
}

/** How long a task may wait for its vfork child (posix_spawn's is brief) before ckpt gives up. */
const VFORK_WAIT_MS = 2000;
const nap = new Int32Array(new SharedArrayBuffer(4));

/**
 * A task waiting for its vfork child to exec or exit cannot be stopped
 * before that (the wait is not interruptible by ptrace): wait briefly, as
 * posix_spawn's wait ends at once, then say so instead of timing out.
 * @throws CkptError EBUSY when it is still waiting
 */
function awaitVforkDone(pid: number): void {
  // The wait is in kernel_clone (wait_for_vfork_done, inlined on some
  // kernels), in an uninterruptible (killable) sleep.
  const waiting = () => {
    try {
      const wchan = readFileSync(`/proc/${pid}/wchan`, 'utf8').trim();
      return (
        (wchan === 'wait_for_vfork_done' || wchan === 'kernel_clone') && readStat(pid).state === 'D'
      );
    } catch {
      return false;
    }
  };
  const end = Date.now() + VFORK_WAIT_MS;
  while (waiting()) {
    if (Date.now() > end) {
      throw new CkptError(
        'EBUSY',
        `cannot freeze pid ${pid}: it waits for its vfork child to start a program or exit, and cannot be stopped until then; try again once the child has`,
        { pid },
      );
    }
    Atomics.wait(nap, 0, 0, 10);
  }
}

function tracerOf(pid: number): number {
  try {
    return readStatus(pid).tracerPid;
  } catch {
    return 0;
  }
}

function releaseQuietly(pid: number): void {
  try {
    detach(pid, 0);
  } catch {
    // Gone or not stopped: the kernel detaches it when we exit anyway.
  }
}

/**
 * Release a task frozen by {@link freezeTask}.
 * - 'resume': detach; it continues as it was (a job-control-stopped task
 *   stays stopped, an interrupted syscall is restarted).
 * - 'stopped': leave it in a job-control stop (SIGSTOP), untraced.
 * - 'kill': SIGKILL it and collect its exit.
 */
export function unfreezeTask(task: FrozenTask | number, mode: UnfreezeMode = 'resume'): void {
  const pid = typeof task === 'number' ? task : task.pid;
  if (mode === 'kill') {
    if (libc().kill(pid, SIGKILL) === -1)
      throw sysError('kill', errno(), `killing pid ${pid}`, { pid });
    // The tracer is told of the death first; consume that report.
    for (;;) {
      const st = waitStop(pid, { timeoutMs: 10_000 });
      if (st.kind !== 'stopped') return;
    }
  }
  if (mode === 'stopped') {
    // Queued now, dequeued after detach: the task then group-stops untraced.
    if (libc().kill(pid, SIGSTOP) === -1) {
      throw sysError('kill', errno(), `stopping pid ${pid}`, { pid });
    }
  }
  detach(pid, 0);
}

/**
 * Release a frozen process: its leader and its other `threads` (each
 * frozen on its own), as {@link unfreezeTask} does for one task. A stop
 * signal or SIGKILL is sent once, to the process; with 'kill', every
 * thread's death is collected before the leader's: a traced thread stays
 * a zombie until its tracer collects it, and the leader's own death is
 * not reported before its threads are gone.
 */
export function unfreezeProcess(
  leader: FrozenTask,
  threads: readonly FrozenTask[],
  mode: UnfreezeMode = 'resume',
): void {
  if (threads.length === 0) {
    unfreezeTask(leader, mode);
    return;
  }
  if (mode === 'kill') {
    if (libc().kill(leader.pid, SIGKILL) === -1)
      throw sysError('kill', errno(), `killing pid ${leader.pid}`, { pid: leader.pid });
    for (const t of [...threads, leader]) {
      try {
        while (waitStop(t.pid, { timeoutMs: 10_000 }).kind === 'stopped');
      } catch (e) {
        // Collected already (ECHILD): the kernel released it with its group.
        if (!(e instanceof CkptError && e.context.errno === ECHILD)) throw e;
      }
    }
    return;
  }
  unfreezeTask(leader, mode);
  // Stopped with the leader, if it is: a stop signal stops the whole process.
  for (const t of threads) detach(t.pid, 0);
}
