/**
 * The `timers` phase: a process's interval timers (setitimer(2); alarm(2)
 * is ITIMER_REAL) and its POSIX timers (timer_create(2)), saved with the
 * time left until each fires and its period: the seed's relative model,
 * so a timer due 2 s after the checkpoint fires 2 s after the restart.
 *
 * Checkpoint lists the POSIX timers in /proc/PID/timers (id, signal and
 * sigev_value, how it notifies, clock) and reads every timer's times with
 * injected getitimer/timer_gettime, posted with the other phases' reads.
 * Restart recreates each POSIX timer under its own id (prctl
 * PR_TIMER_CREATE_RESTORE_IDS makes timer_create take the id asked for)
 * and arms the timers, with calls posted to run in the task's last round
 * trips. Overrun counts are not kept.
 */
import { readFileSync } from 'node:fs';
import type { RecordValue } from '../codec/record.js';
import { InjectedRead } from '../engine/injected-read.js';
import { CkptError } from '../errors.js';
import { PR } from '../kernel/prctl.js';
import { readStatus } from '../proc/index.js';
import type { TaskPhase } from '../registry.js';
import type { RestartTask, SyscallRequest } from '../task.js';
import { timersRecord } from './records.js';

/** `struct itimerval` and `struct itimerspec`: interval then value, two 64-bit words each. */
const TIMES_SIZE = 32;
const SIGEVENT_SIZE = 64;
const ITIMERS = 3;
const SIGEV_THREAD_ID = 4;
const NOTIFY: Record<string, number> = { signal: 0, none: 1, thread: 2 };

type SavedTimers = RecordValue<typeof timersRecord>;
type PosixTimer = SavedTimers['posix'][number];

/** The POSIX timers of /proc/PID/timers, without their times (their tid at the innermost pid level). */
export function parseProcTimers(text: string): Omit<PosixTimer, 'valueNs' | 'intervalNs'>[] {
  const timers: Omit<PosixTimer, 'valueNs' | 'intervalNs'>[] = [];
  for (const block of text.split(/^(?=ID:)/m)) {
    const id = /^ID: (\d+)/m.exec(block);
    const sig = /^signal: (\d+)\/(?:0x)?([0-9a-f]+)/m.exec(block);
    const notify = /^notify: (\w+)\/(pid|tid)\.(\d+)/m.exec(block);
    const clock = /^ClockID: (\d+)/m.exec(block);
    if (!id || !sig || !notify || !clock) continue;
    const toThread = notify[2] === 'tid';
    timers.push({
      id: Number(id[1]),
      signo: Number(sig[1]),
      value: BigInt(`0x${sig[2]}`),
      notify: (NOTIFY[notify[1]!] ?? 0) | (toThread ? SIGEV_THREAD_ID : 0),
      tid: toThread ? Number(notify[3]) : 0,
      clockid: Number(clock[1]),
    });
  }
  return timers;
}

/** [interval, value] of a raw itimerval (usec) or itimerspec (nsec), in ns. */
function times(buf: Buffer, at: number, unitNs: bigint): { valueNs: bigint; intervalNs: bigint } {
  const ns = (o: number) =>
    buf.readBigInt64LE(at + o) * 1_000_000_000n + buf.readBigInt64LE(at + o + 8) * unitNs;
  return { intervalNs: ns(0), valueNs: ns(16) };
}

/** A raw itimerval (unitNs 1000) or itimerspec (unitNs 1). */
function rawTimes(t: { valueNs: bigint; intervalNs: bigint }, unitNs: bigint): Buffer {
  const b = Buffer.alloc(TIMES_SIZE);
  const put = (ns: bigint, o: number) => {
    b.writeBigInt64LE(ns / 1_000_000_000n, o);
    b.writeBigInt64LE((ns % 1_000_000_000n) / unitNs, o + 8);
  };
  put(t.intervalNs, 0);
  put(t.valueNs, 16);
  return b;
}

function procTimers(pid: number): Omit<PosixTimer, 'valueNs' | 'intervalNs'>[] {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/timers`, 'utf8');
  } catch {
    return []; // a kernel without CONFIG_CHECKPOINT_RESTORE has no such file
  }
  return parseProcTimers(text).map((t) =>
    // The thread as the process's own pid namespace numbers it.
    t.tid === 0 ? t : { ...t, tid: readStatus(t.tid).nsPid.at(-1) ?? t.tid },
  );
}

/** The timers, read by calls posted in `prepare` (with the other phases' reads). */
const timerReads = new InjectedRead<SavedTimers>('timers', (task, done) => {
  const posix = procTimers(task.pid);
  const at = (data: number, offset: number) => ({ data, offset });
  task.sys.postChecked(
    [
      ...Array.from({ length: ITIMERS }, (_, w) => ({
        name: 'getitimer' as const,
        args: [w, at(0, w * TIMES_SIZE)],
        what: `reading interval timer ${w}`,
      })),
      ...posix.map((t, i) => ({
        name: 'timer_gettime' as const,
        args: [t.id, at(1, i * TIMES_SIZE)],
        what: `reading POSIX timer ${t.id}`,
      })),
    ],
    {
      data: [
        Buffer.alloc(ITIMERS * TIMES_SIZE),
        Buffer.alloc(Math.max(posix.length, 1) * TIMES_SIZE),
      ],
      readBack: true,
      done: (_results, [it, specs]) =>
        done({
          itimers: Array.from({ length: ITIMERS }, (_, w) => times(it!, w * TIMES_SIZE, 1000n)),
          posix: posix.map((t, i) => ({ ...t, ...times(specs!, i * TIMES_SIZE, 1n) })),
        }),
    },
  );
});

/** The sigevent timer_create gets for `t`, in the task restored from `task`. */
function sigevent(task: RestartTask, t: PosixTimer): Buffer {
  const ev = Buffer.alloc(SIGEVENT_SIZE);
  ev.writeBigUInt64LE(t.value, 0);
  ev.writeInt32LE(t.signo, 8);
  ev.writeInt32LE(t.notify, 12);
  if (t.notify & SIGEV_THREAD_ID) {
    let tid = t.tid;
    if (task.pid !== task.savedPid) {
      // Under new pids only the leader's id is known here.
      if (t.tid !== task.savedPid) {
        throw new CkptError(
          'ENOTSUP',
          `pid ${task.savedPid}: POSIX timer ${t.id} signals thread ${t.tid}, which --no-pids renumbers`,
          { pid: task.savedPid },
        );
      }
      tid = task.pid;
    }
    ev.writeInt32LE(tid, 16);
  }
  return ev;
}

/** The calls that recreate and arm the timers, and the data parts they use. */
function restoreCalls(
  task: RestartTask,
  saved: SavedTimers,
): { calls: (SyscallRequest & { what: string })[]; data: Buffer[] } {
  const calls: (SyscallRequest & { what: string })[] = [];
  const data: Buffer[] = [];
  const part = (b: Buffer) => data.push(b) - 1;
  saved.itimers.forEach((t, w) => {
    if (t.valueNs === 0n) return; // disarmed (its period alone means nothing)
    calls.push({
      name: 'setitimer',
      args: [w, { data: part(rawTimes(t, 1000n)) }, 0],
      what: `arming interval timer ${w}`,
    });
  });
  if (saved.posix.length > 0) {
    calls.push({
      name: 'prctl',
      args: [PR.TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0],
      what: 'asking for POSIX timer ids (PR_TIMER_CREATE_RESTORE_IDS)',
    });
    for (const t of saved.posix) {
      const id = Buffer.alloc(8);
      id.writeInt32LE(t.id, 0);
      calls.push({
        name: 'timer_create',
        args: [t.clockid, { data: part(sigevent(task, t)) }, { data: part(id) }],
        what: `recreating POSIX timer ${t.id}`,
      });
      if (t.valueNs !== 0n) {
        calls.push({
          name: 'timer_settime',
          args: [t.id, 0, { data: part(rawTimes(t, 1n)) }, 0],
          what: `arming POSIX timer ${t.id}`,
        });
      }
    }
    calls.push({
      name: 'prctl',
      args: [PR.TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0],
      what: 'ending POSIX timer ids (PR_TIMER_CREATE_RESTORE_IDS)',
    });
  }
  return { calls, data };
}

/** Saves and restores the interval and POSIX timers of a process. */
export const timersPhase: TaskPhase = {
  name: 'timers',
  order: 850,
  prepare: (_ctx, task) => timerReads.post(task),
  checkpoint(ctx, task) {
    ctx.write(timersRecord, timerReads.get(task));
  },
  restore(ctx, task) {
    const saved = ctx.read(timersRecord);
    const { calls, data } = restoreCalls(task, saved);
    if (calls.length === 0) return;
    task.sys.postChecked(calls, { data });
  },
};
