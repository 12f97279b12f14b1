/**
 * The `rlimits` phase: soft and hard limit of every resource, read and set
 * with injected prlimit64(2) on the task itself.
 *
 * Restore runs after memory and files, so that limits lower than what the
 * restore itself needs (RLIMIT_NOFILE, RLIMIT_AS, …) do not get in its way,
 * and before credentials. The new task starts with ckpt's own limits; a
 * hard limit above them needs CAP_SYS_RESOURCE, and RLIMIT_NOFILE can never
 * exceed fs.nr_open: either is a clear error, never a silently lower limit.
 */

import { readFileSync } from 'node:fs';
import { CkptError } from '../errors.js';
import { errnoText } from '../kernel/libc.js';
import type { TaskPhase } from '../registry.js';
import type { RestartTask } from '../task.js';
import { injectedReads } from './reads.js';
import { RLIMIT_NAMES, rlimitsRecord } from './records.js';

const RLIM_NLIMITS = RLIMIT_NAMES.length;
const RLIMIT_NOFILE = 7;
const RLIMIT_SIZE = 16;
const EPERM = 1n;

function nrOpen(): bigint | undefined {
  try {
    return BigInt(readFileSync('/proc/sys/fs/nr_open', 'utf8').trim());
  } catch {
    return undefined;
  }
}

function show(v: bigint): string {
  return v === (1n << 64n) - 1n ? 'unlimited' : v.toString();
}

/** Saves and restores RLIMIT_CPU..RLIMIT_RTTIME. */
export const rlimitsPhase: TaskPhase = {
  name: 'rlimits',
  order: 800,
  prepare: (_ctx, task) => injectedReads.post(task),
  checkpoint(ctx, task) {
    const buf = injectedReads.get(task).limits;
    ctx.write(rlimitsRecord, {
      limits: RLIMIT_NAMES.map((_, r) => ({
        cur: buf.readBigUInt64LE(r * RLIMIT_SIZE),
        max: buf.readBigUInt64LE(r * RLIMIT_SIZE + 8),
      })),
    });
  },
  restore(ctx, task) {
    const { limits } = ctx.read(rlimitsRecord);
    const pid = task.savedPid;
    if (limits.length !== RLIM_NLIMITS) {
      throw new CkptError(
        'EBADREC',
        `pid ${pid}: the image has ${limits.length} resource limits, Linux has ${RLIM_NLIMITS}`,
        {
          pid,
          recordType: rlimitsRecord.type,
        },
      );
    }
    // Every limit set by calls posted to run with the task's next injected
    // calls (still before the credentials); their results are checked then.
    const wanted = limits.map(({ cur, max }) => {
      const buf = Buffer.alloc(RLIMIT_SIZE);
      buf.writeBigUInt64LE(cur, 0);
      buf.writeBigUInt64LE(max, 8);
      return buf;
    });
    task.sys.post(
      limits.map((_, r) => ({ name: 'prlimit64' as const, args: [0, r, { data: r }, 0] })),
      { data: wanted, done: (results) => checkLimits(task, limits, results) },
    );
  },
};

/** Turn the first failed prlimit64 of the restore into an error saying why. */
function checkLimits(
  task: RestartTask,
  limits: readonly { cur: bigint; max: bigint }[],
  results: readonly bigint[],
): void {
  const pid = task.savedPid;
  limits.forEach(({ cur, max }, r) => {
    const name = RLIMIT_NAMES[r]!;
    const ret = results[r]!;
    if (ret === 0n) return;
    if (ret === -EPERM) {
      // A failed prlimit64 reports nothing: read what the task has now.
      const old = task.sys.scratch(RLIMIT_SIZE);
      task.sys.check('prlimit64', [0, r, 0, old], `reading ${name}`);
      const own = task.mem.read(old, RLIMIT_SIZE).readBigUInt64LE(8);
      const limit = r === RLIMIT_NOFILE ? nrOpen() : undefined;
      let why = 'prlimit64() was refused (EPERM) by a security module';
      if (limit !== undefined && max > limit) why = `above fs.nr_open ${limit}`;
      else if (max > own)
        why = `above ckpt's own hard limit ${show(own)} and ckpt lacks CAP_SYS_RESOURCE`;
      throw new CkptError(
        'EPERM',
        `pid ${pid}: cannot restore ${name} hard limit ${show(max)}: ${why}`,
        {
          pid,
          syscall: 'prlimit64',
          errno: 1,
        },
      );
    }
    throw new CkptError(
      'ESYS',
      `pid ${pid}: cannot restore ${name} ${show(cur)}/${show(max)}: prlimit64() returned ${errnoText(Number(-ret))}`,
      {
        pid,
        syscall: 'prlimit64',
        errno: Number(-ret),
      },
    );
  });
}
