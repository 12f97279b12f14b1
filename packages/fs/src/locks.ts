/**
 * File locks held through the tree's open files: record locks (fcntl
 * F_SETLK, lockf), flock(2) locks and open-file-description locks
 * (F_OFD_SETLK), as the "lock:" lines of each fd's fdinfo list them. Saved
 * per task with the fd they were seen on, after its fd table; restart
 * takes each again from that task once its fd table is complete, before
 * any task runs. A lock seen on several fds or in several tasks (a flock
 * on a description shared through fork) is simply taken again by each:
 * taking a lock its owner holds already changes nothing.
 *
 * A task waiting for a lock ("->" lines) is not holding it: its interrupted
 * fcntl or flock asks again after restart. Leases are not restored (a
 * warning says so).
 */
import {
  type CheckpointCtx,
  CkptError,
  type FileInfo,
  type RecordValue,
  type RestartTask,
  readFdTarget,
  type SyscallRequest,
} from '@ckpt/core';
import type { fileLocksRecord } from './records.js';

type SavedLock = RecordValue<typeof fileLocksRecord>['locks'][number];

/** `kind` values of saved locks. */
export const LockKind = { POSIX: 0, FLOCK: 1, OFD: 2 } as const;
const KIND_OF: Record<string, number> = {
  POSIX: LockKind.POSIX,
  FLOCK: LockKind.FLOCK,
  OFDLCK: LockKind.OFD,
};
const KIND_NAMES = ['fcntl record lock', 'flock lock', 'open-file-description lock'];

const F_SETLK = 6;
const F_OFD_SETLK = 37;
const F_RDLCK = 0;
const F_WRLCK = 1;
const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;
/** `struct flock` on 64-bit Linux: type, whence, start, len, pid. */
const FLOCK_SIZE = 32;

/**
 * The lock a "lock:" line of fdinfo describes ("1: POSIX  ADVISORY  WRITE
 * 42 fe:00:123 5 14"), without its fd; 'lease' for a lease, undefined for
 * a waiter ("->") or anything else.
 */
export function parseLockLine(line: string): Omit<SavedLock, 'fd'> | 'lease' | undefined {
  const m = /^lock:\s+\d+:\s+(->\s+)?(\S+)\s+\S+\s+(\S+)\s+\S+\s+\S+\s+(\d+)\s+(\d+|EOF)/.exec(
    line,
  );
  if (!m || m[1]) return undefined;
  if (m[2] === 'LEASE' || m[2] === 'DELEG') return 'lease';
  const kind = KIND_OF[m[2]!];
  if (kind === undefined) return undefined;
  const start = BigInt(m[4]!);
  const len = m[5] === 'EOF' ? 0n : BigInt(m[5]!) - start + 1n;
  return { kind, write: m[3] === 'WRITE', start, len };
}

/** The locks held through `files` (one task's fds), each with its fd. */
export function locksOf(ctx: CheckpointCtx, files: readonly FileInfo[]): SavedLock[] {
  const locks: SavedLock[] = [];
  for (const file of files) {
    for (const line of file.info.extra) {
      const lock = parseLockLine(line);
      if (lock === 'lease') {
        ctx.log.warn(
          `pid ${file.pid} fd ${file.fd}: its lease on ${file.target.text} is not restored`,
        );
      } else if (lock) {
        locks.push({ fd: file.fd, ...lock });
      }
    }
  }
  return locks;
}

function flockStruct(lock: SavedLock): Buffer {
  const b = Buffer.alloc(FLOCK_SIZE);
  b.writeInt16LE(lock.write ? F_WRLCK : F_RDLCK, 0);
  b.writeInt16LE(0, 2); // SEEK_SET
  b.writeBigInt64LE(lock.start, 8);
  b.writeBigInt64LE(lock.len, 16);
  return b;
}

/** The call that takes `lock` again (never waiting), and its data. */
function lockCall(lock: SavedLock, data: Buffer[]): SyscallRequest {
  if (lock.kind === LockKind.FLOCK) {
    return { name: 'flock', args: [lock.fd, (lock.write ? LOCK_EX : LOCK_SH) | LOCK_NB] };
  }
  const cmd = lock.kind === LockKind.OFD ? F_OFD_SETLK : F_SETLK;
  return { name: 'fcntl', args: [lock.fd, cmd, { data: data.push(flockStruct(lock)) - 1 }] };
}

function describe(lock: SavedLock): string {
  const range = lock.len === 0n ? `${lock.start}-EOF` : `${lock.start}+${lock.len}`;
  return `${lock.write ? 'write' : 'read'} ${KIND_NAMES[lock.kind]} (${range})`;
}

/**
 * Take `locks` again in `task` (its fd table complete): calls posted to
 * run with its next round trip; a lock someone else holds now fails the
 * restart, naming the fd, its file and the lock.
 */
export function retakeLocks(task: RestartTask, locks: readonly SavedLock[]): void {
  if (locks.length === 0) return;
  const data: Buffer[] = [];
  const calls = locks.map((l) => lockCall(l, data));
  task.sys.post(calls, {
    data,
    done: (results) => {
      const i = results.findIndex((r) => r < 0n);
      if (i < 0) return;
      const lock = locks[i]!;
      let file = `fd ${lock.fd}`;
      try {
        file = readFdTarget(task.pid, lock.fd).text;
      } catch {
        // described by its fd alone
      }
      throw new CkptError(
        'ESYS',
        `pid ${task.savedPid} fd ${lock.fd}: cannot take its ${describe(lock)} on ${file} again (errno ${-results[i]!}${results[i] === -11n || results[i] === -13n ? ': another process holds a conflicting lock' : ''})`,
        { pid: task.savedPid, fd: lock.fd, errno: Number(-results[i]!) },
      );
    },
  });
}
