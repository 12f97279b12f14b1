/**
 * Event files: eventfd, signalfd, timerfd and epoll, each saved from what
 * /proc/PID/fdinfo shows of it and created again inside the task with the
 * same state. (One module: each is a few lines each way, and they share
 * how fdinfo is read.)
 *
 * - eventfd: its counter and EFD_SEMAPHORE; the counter is set by the
 *   initial value (or a write, past 32 bits).
 * - signalfd: its signal mask. The signals it reads are the task's pending
 *   ones, restored by the signals phase.
 * - timerfd: its clock, the time left and the period (the relative model
 *   of the seed's restart blocks: the time between checkpoint and restart
 *   does not count), and expirations not read yet (TFD_IOC_SET_TICKS). A
 *   timer armed with TFD_TIMER_ABSTIME keeps its deadline instead: "at
 *   12:00" on CLOCK_REALTIME is still 12:00 (so is a CLOCK_MONOTONIC one
 *   on the same boot), and it fires then, or at once if that has passed.
 * - epoll: every target with its events and data. fdinfo names a target by
 *   the fd number it was added with; the checkpoint checks that fd still
 *   holds that very file (inode and device), and restart adds the targets
 *   once the whole fd table is in place. Readiness is the kernel's to work
 *   out again from the targets' state; an EPOLLONESHOT target that fired
 *   and was not re-armed comes back armed.
 */
import {
  type CheckpointCtx,
  type CheckpointTask,
  CkptError,
  errnoText,
  type FileHandler,
  type FileInfo,
  type RestartTask,
  stage,
  statFd,
  taskClockNs,
} from '@ckpt/core';
import { moveAboveTable, restoringTask, whenTableComplete } from './file-object.js';
import { major, minor, O_CLOEXEC, reopenFlags } from './flags.js';
import {
  FileKind,
  fileEpollRecord,
  fileEventfdRecord,
  fileSignalfdRecord,
  fileTimerfdRecord,
} from './records.js';

const O_NONBLOCK = 0o4000;
const EFD_SEMAPHORE = 1;
const EPOLL_CTL_ADD = 1;
const EPERM = 1n;
const UINT32_MAX = 0xffff_ffffn;

/** The value of an fdinfo line `key: value` (extra lines), or undefined. */
function field(file: FileInfo, key: string): string | undefined {
  const line = file.info.extra.find((l) => l.startsWith(`${key}:`));
  return line?.slice(key.length + 1).trim();
}

function needField(file: FileInfo, key: string): string {
  const v = field(file, key);
  if (v === undefined) {
    throw new CkptError(
      'EUNEXPECTED',
      `pid ${file.pid} fd ${file.fd}: /proc/${file.pid}/fdinfo/${file.fd} has no "${key}" line`,
      { pid: file.pid, fd: file.fd },
    );
  }
  return v;
}

const isAnon = (type: string) => (f: FileInfo) =>
  f.target.kind === 'anon_inode' && f.target.anonType === type;

/** The fd `call` creates in `task`, moved above the saved table (see moveAboveTable). */
function create(task: RestartTask, above: number, call: () => bigint, what: string): number {
  return moveAboveTable(task, Number(call()), above, what);
}

export const eventfdFile: FileHandler = {
  kind: 'eventfd',
  id: FileKind.EVENTFD,
  match: isAnon('eventfd'),
  checkpoint(ctx, _task, file) {
    ctx.write(fileEventfdRecord, {
      count: BigInt(`0x${needField(file, 'eventfd-count')}`),
      semaphore: needField(file, 'eventfd-semaphore') === '1',
      flags: reopenFlags(file.info.flags),
    });
  },
  restore(ctx, task) {
    const rec = ctx.read(fileEventfdRecord);
    const { above } = restoringTask(ctx, 'an eventfd');
    const what = `creating an eventfd (count ${rec.count})`;
    const flags = (rec.semaphore ? EFD_SEMAPHORE : 0) | (rec.flags & O_NONBLOCK);
    const initial = rec.count <= UINT32_MAX ? rec.count : 0n;
    const fd = create(task, above, () => task.sys.check('eventfd2', [initial, flags], what), what);
    if (rec.count > UINT32_MAX) {
      const count = Buffer.alloc(8);
      count.writeBigUInt64LE(rec.count);
      const [at] = stage(task, [count]);
      task.sys.check('write', [fd, at!, 8], `${what}: setting its count`);
    }
    return fd;
  },
};

export const signalfdFile: FileHandler = {
  kind: 'signalfd',
  id: FileKind.SIGNALFD,
  match: isAnon('signalfd'),
  checkpoint(ctx, _task, file) {
    ctx.write(fileSignalfdRecord, {
      sigmask: BigInt(`0x${needField(file, 'sigmask')}`),
      flags: reopenFlags(file.info.flags),
    });
  },
  restore(ctx, task) {
    const rec = ctx.read(fileSignalfdRecord);
    const { above } = restoringTask(ctx, 'a signalfd');
    const what = `creating a signalfd (mask 0x${rec.sigmask.toString(16)})`;
    const mask = Buffer.alloc(8);
    mask.writeBigUInt64LE(rec.sigmask);
    const [at] = stage(task, [mask]);
    return create(
      task,
      above,
      () => task.sys.check('signalfd4', [-1, at!, 8, rec.flags & O_NONBLOCK], what),
      what,
    );
  },
};

const NS = 1_000_000_000n;
/** TFD_IOC_SET_TICKS, _IOW('T', 0, u64). */
const TFD_IOC_SET_TICKS = 0x40085400;
const TFD_TIMER_ABSTIME = 1;

/** Nanoseconds of an fdinfo `(sec, nsec)` pair. */
function timespecNs(file: FileInfo, key: string): bigint {
  const m = /^\((\d+), (\d+)\)$/.exec(needField(file, key));
  if (!m) {
    throw new CkptError('EUNEXPECTED', `pid ${file.pid} fd ${file.fd}: cannot read its ${key}`, {
      pid: file.pid,
      fd: file.fd,
    });
  }
  return BigInt(m[1]!) * NS + BigInt(m[2]!);
}

export const timerfdFile: FileHandler = {
  kind: 'timerfd',
  id: FileKind.TIMERFD,
  match: isAnon('timerfd'),
  checkpoint(ctx, _task, file) {
    const clockid = Number(needField(file, 'clockid'));
    const valueNs = timespecNs(file, 'it_value');
    // Kernels before 5.x do not show the flags: a relative timer then.
    const settimeFlags = Number.parseInt(field(file, 'settime flags') ?? '0', 8);
    // An absolute deadline ("at 12:00") stays one: the time the tree was
    // an image counts (for CLOCK_MONOTONIC, on this boot or in a time
    // namespace that continues).
    const now =
      settimeFlags & TFD_TIMER_ABSTIME && valueNs > 0n ? taskClockNs(file.pid, clockid) : undefined;
    ctx.write(fileTimerfdRecord, {
      clockid,
      flags: reopenFlags(file.info.flags),
      valueNs,
      intervalNs: timespecNs(file, 'it_interval'),
      ticks: BigInt(needField(file, 'ticks')),
      settimeFlags,
      deadlineNs: now === undefined ? 0n : now + valueNs,
    });
  },
  restore(ctx, task) {
    const rec = ctx.read(fileTimerfdRecord);
    const { above } = restoringTask(ctx, 'a timerfd');
    const what = `creating a timerfd (clock ${rec.clockid})`;
    const fd = create(
      task,
      above,
      () => task.sys.check('timerfd_create', [rec.clockid, rec.flags & O_NONBLOCK], what),
      what,
    );
    if (rec.valueNs > 0n) {
      // struct itimerspec { it_interval, it_value }: the deadline of an
      // absolute timer, else the time left from now (the relative model).
      const absolute = (rec.settimeFlags & TFD_TIMER_ABSTIME) !== 0 && rec.deadlineNs > 0n;
      const value = absolute ? rec.deadlineNs : rec.valueNs;
      const spec = Buffer.alloc(32);
      spec.writeBigInt64LE(rec.intervalNs / NS, 0);
      spec.writeBigInt64LE(rec.intervalNs % NS, 8);
      spec.writeBigInt64LE(value / NS, 16);
      spec.writeBigInt64LE(value % NS, 24);
      const [at] = stage(task, [spec]);
      const flags = absolute ? rec.settimeFlags : 0;
      task.sys.check('timerfd_settime', [fd, flags, at!, 0], `${what}: arming it`);
    }
    if (rec.ticks > 0n) {
      const ticks = Buffer.alloc(8);
      ticks.writeBigUInt64LE(rec.ticks);
      const [at] = stage(task, [ticks]);
      task.sys.check('ioctl', [fd, TFD_IOC_SET_TICKS, at!], `${what}: ${rec.ticks} expirations`);
    }
    return fd;
  },
};

/** One line of an epoll's fdinfo: `tfd: N events: X data: Y pos:P ino:I sdev:D`. */
const TARGET =
  /^tfd:\s*(\d+)\s+events:\s*([0-9a-f]+)\s+data:\s*([0-9a-f]+)\s+pos:\s*\d+\s+ino:\s*([0-9a-f]+)\s+sdev:\s*([0-9a-f]+)/;

/**
 * The targets of an epoll file, each checked to be the file at its fd in
 * `task` now.
 * @throws CkptError ENOTSUP for a target no longer at the fd it was added with
 */
function epollTargets(task: CheckpointTask, file: FileInfo) {
  return file.info.extra.flatMap((line) => {
    const m = TARGET.exec(line);
    if (!m) return [];
    const [, tfd, events, data, ino, sdev] = m;
    const fd = Number(tfd);
    // The kernel prints the superblock's dev_t: major in the top 12 bits.
    const dev = Number.parseInt(sdev!, 16);
    const want = { ino: Number.parseInt(ino!, 16), major: dev >>> 20, minor: dev & 0xfffff };
    let now: { ino: number; dev: number } | undefined;
    try {
      now = statFd(task.pid, fd);
    } catch {
      now = undefined;
    }
    if (
      !now ||
      now.ino !== want.ino ||
      major(now.dev) !== want.major ||
      minor(now.dev) !== want.minor
    ) {
      throw new CkptError(
        'ENOTSUP',
        `pid ${task.pid} fd ${file.fd}: the epoll watches a file it added as fd ${fd}, which no longer holds it (closed or replaced since); such an epoll cannot be restored`,
        { pid: task.pid, fd: file.fd },
      );
    }
    return [{ fd, events: Number.parseInt(events!, 16), data: BigInt(`0x${data}`) }];
  });
}

export const epollFile: FileHandler = {
  kind: 'epoll',
  id: FileKind.EPOLL,
  match: isAnon('eventpoll'),
  checkpoint(ctx: CheckpointCtx, task, file) {
    ctx.write(fileEpollRecord, {
      flags: reopenFlags(file.info.flags),
      targets: epollTargets(task, file),
    });
  },
  restore(ctx, task) {
    const rec = ctx.read(fileEpollRecord);
    const { above } = restoringTask(ctx, 'an epoll instance');
    const what = 'creating an epoll instance';
    const fd = create(task, above, () => task.sys.check('epoll_create1', [O_CLOEXEC], what), what);
    // Targets are named by fd: added once every fd is in place.
    whenTableComplete(ctx, () => {
      const events = rec.targets.map((t) => {
        // struct epoll_event: packed (12 bytes) on x86-64, the one arch ckpt runs on.
        const ev = Buffer.alloc(12);
        ev.writeUInt32LE(t.events, 0);
        ev.writeBigUInt64LE(t.data, 4);
        return ev;
      });
      task.sys.post(
        rec.targets.map((t, i) => ({
          name: 'epoll_ctl' as const,
          args: [fd, EPOLL_CTL_ADD, t.fd, { data: i }],
        })),
        {
          data: events,
          done: (results) => {
            for (const [i, r] of results.entries()) {
              if (r === 0n) continue;
              const t = rec.targets[i]!;
              const what = `pid ${task.savedPid}: adding fd ${t.fd} to an epoll instance (events 0x${t.events.toString(16)})`;
              // An fd reconnected to something else (stdio on /dev/null, say)
              // may be a file epoll cannot watch: the program loses that
              // watch, not its restart.
              if (r === -EPERM && t.fd <= 2) {
                ctx.log.warn(
                  `${what}: fd ${t.fd} now leads to a file epoll cannot watch; not watched`,
                );
                continue;
              }
              throw new CkptError('ESYS', `${what} failed with ${errnoText(Number(-r))}`, {
                pid: task.savedPid,
                fd: t.fd,
                syscall: 'epoll_ctl',
                errno: Number(-r),
              });
            }
          },
        },
      );
    });
    return fd;
  },
};
