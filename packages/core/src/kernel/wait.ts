/**
 * Waiting for tracees and decoding what waitpid(2) reports.
 */
import { CkptError } from '../errors.js';
import { errno, libc, sysError } from './libc.js';
import { PTRACE_EVENT } from './ptrace.js';

/** waitpid option: wait for all children and tracees, cloned threads included. */
export const __WALL = 0x40000000;
const WNOHANG = 1;
const SIGTRAP = 5;
const EINTR = 4;

/** A decoded wait status. */
export type WaitStatus =
  | { kind: 'exited'; pid: number; code: number }
  | { kind: 'signaled'; pid: number; signal: number; core: boolean }
  | {
      kind: 'stopped';
      pid: number;
      /** WSTOPSIG: the stop signal (SIGTRAP | 0x80 for TRACESYSGOOD syscall-stops). */
      signal: number;
      /** The PTRACE_EVENT_* in `status >> 16`, 0 for a plain signal-delivery-stop. */
      event: number;
      /**
       * What kind of ptrace stop this is (for a seized tracee):
       * 'signal-delivery' — a signal is about to be delivered (`signal`);
       * 'group' — a job-control stop (PTRACE_EVENT_STOP with a stop signal);
       * 'interrupt' — a PTRACE_INTERRUPT/listen trap (PTRACE_EVENT_STOP with SIGTRAP);
       * 'syscall' — a PTRACE_SYSCALL stop (with TRACESYSGOOD);
       * 'event' — another PTRACE_EVENT_* (clone, fork, exec, exit...).
       */
      stop: 'signal-delivery' | 'group' | 'interrupt' | 'syscall' | 'event';
    };

/** Decode a raw waitpid status word. */
export function decodeWaitStatus(pid: number, status: number): WaitStatus {
  const low = status & 0x7f;
  if (low === 0) return { kind: 'exited', pid, code: (status >> 8) & 0xff };
  if ((status & 0xff) !== 0x7f) {
    return { kind: 'signaled', pid, signal: low, core: (status & 0x80) !== 0 };
  }
  const signal = (status >> 8) & 0xff;
  const event = (status >> 16) & 0xff;
  let stop: 'signal-delivery' | 'group' | 'interrupt' | 'syscall' | 'event';
  if (event === PTRACE_EVENT.STOP) stop = signal === SIGTRAP ? 'interrupt' : 'group';
  else if (event !== 0) stop = 'event';
  else if (signal === (SIGTRAP | 0x80)) stop = 'syscall';
  else stop = 'signal-delivery';
  return { kind: 'stopped', pid, signal, event, stop };
}

/** Options of {@link waitStop}. */
export interface WaitOptions {
  /** Give up after this many milliseconds (default: wait forever). */
  timeoutMs?: number;
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));

/**
 * Wait for the next state change of `pid` (a child or a tracee) with __WALL
 * and decode it. Blocks the thread. With `timeoutMs`, polls and throws
 * EAGAIN when nothing happened in time.
 */
export function waitStop(pid: number, options: WaitOptions = {}): WaitStatus {
  const statusBuf = Buffer.alloc(4);
  const deadline = options.timeoutMs === undefined ? undefined : Date.now() + options.timeoutMs;
  let pause = 0.05;
  for (;;) {
    const flags = __WALL | (deadline === undefined ? 0 : WNOHANG);
    const r = libc().waitpid(pid, statusBuf, flags);
    if (r === -1) {
      const e = errno();
      if (e === EINTR) continue;
      throw sysError('waitpid', e, `waiting for pid ${pid}`, { pid });
    }
    if (r === pid) return decodeWaitStatus(pid, statusBuf.readInt32LE(0));
    if (deadline !== undefined && Date.now() >= deadline) {
      throw new CkptError(
        'EAGAIN',
        `pid ${pid} did not stop within ${options.timeoutMs} ms (is it traced by another process, or stuck in uninterruptible sleep?)`,
        { pid, syscall: 'waitpid' },
      );
    }
    Atomics.wait(sleepCell, 0, 0, pause);
    pause = Math.min(pause * 2, 10);
  }
}

/**
 * Wait for `pid` and require a ptrace stop; an exit or a kill becomes an
 * ESRCH `CkptError` that says how the task ended.
 */
export function waitForStop(
  pid: number,
  options: WaitOptions = {},
): Extract<WaitStatus, { kind: 'stopped' }> {
  const st = waitStop(pid, options);
  if (st.kind === 'stopped') return st;
  throw new CkptError('ESRCH', `pid ${pid} ${describeEnd(st)} while being traced`, {
    pid,
    syscall: 'waitpid',
  });
}

/** "exited with code 3", "was killed by signal 9". */
export function describeEnd(st: WaitStatus): string {
  if (st.kind === 'exited') return `exited with code ${st.code}`;
  if (st.kind === 'signaled') return `was killed by signal ${st.signal}`;
  return `stopped by signal ${st.signal}`;
}

/** Reap a child that has exited or been killed (no-op if it is not ours). */
export function reap(pid: number): WaitStatus | undefined {
  const end = waitEnd(pid, __WALL);
  return end === 'running' ? undefined : end;
}

/**
 * Reap a child if it has exited or been killed, without waiting: its end,
 * `running` while it runs (or is stopped), undefined if it is not ours.
 */
export function reapIfEnded(pid: number): WaitStatus | 'running' | undefined {
  return waitEnd(pid, __WALL | WNOHANG);
}

const WUNTRACED = 2;

/**
 * Like {@link reapIfEnded}, but a job-control stop of the child (SIGTSTP,
 * SIGSTOP, SIGTTIN, SIGTTOU) is returned too, once per stop.
 */
export function reapIfEndedOrStopped(pid: number): WaitStatus | 'running' | undefined {
  const statusBuf = Buffer.alloc(4);
  for (;;) {
    const r = libc().waitpid(pid, statusBuf, __WALL | WNOHANG | WUNTRACED);
    if (r === 0) return 'running';
    if (r === pid) return decodeWaitStatus(pid, statusBuf.readInt32LE(0));
    if (r === -1 && errno() === EINTR) continue;
    return undefined;
  }
}

/** waitpid until `pid` ends (stops are passed over); `running` for WNOHANG's 0. */
function waitEnd(pid: number, flags: number): WaitStatus | 'running' | undefined {
  const statusBuf = Buffer.alloc(4);
  for (;;) {
    const r = libc().waitpid(pid, statusBuf, flags);
    if (r === 0) return 'running';
    if (r === pid) {
      const st = decodeWaitStatus(pid, statusBuf.readInt32LE(0));
      if (st.kind !== 'stopped') return st;
      continue;
    }
    if (r === -1 && errno() === EINTR) continue;
    return undefined;
  }
}
