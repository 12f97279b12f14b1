/**
 * The `rseq` phase: a thread's restartable-sequences registration (rseq(2);
 * glibc registers every thread it starts), read with
 * PTRACE_GET_RSEQ_CONFIGURATION and registered again at restart.
 *
 * Registration waits until the address space is rebuilt: once a task is
 * registered, the kernel writes its cpu number into the `struct rseq` at
 * every return to user space, and a task whose area is not mapped yet
 * would be killed. Order 950 puts it after the memory phase and before the
 * CPU state; the call is posted, so it runs in the task's last round trips.
 *
 * A thread frozen inside a critical section must resume at its abort
 * handler, as the kernel would have sent it there on its next return to
 * user space after being preempted: the registers saved for it say so
 * ({@link rseqAbortAddress}, used by the arch's CPU phase). A checkpoint
 * that leaves the task running leaves that to the kernel.
 */
import type { CheckpointCtx } from '../context.js';
import { CkptError } from '../errors.js';
import { getRseqConfig, type RseqConfig } from '../kernel/ptrace.js';
import type { TaskPhase } from '../registry.js';
import type { CheckpointTask } from '../task.js';
import { rseqRecord } from './records.js';

const KEY = 'taskstate:rseq';
/** Offset of `rseq_cs` (the current critical section's descriptor) in `struct rseq`. */
const RSEQ_CS_OFFSET = 8n;
/** `struct rseq_cs`: version, flags, start_ip, post_commit_offset, abort_ip. */
const RSEQ_CS_SIZE = 32;

/** The task's registration, read once per checkpoint. */
function configOf(task: CheckpointTask): RseqConfig {
  let c = task.data.get(KEY) as RseqConfig | undefined;
  if (!c) {
    c = getRseqConfig(task.pid);
    task.data.set(KEY, c);
  }
  return c;
}

/**
 * Where a task whose instruction pointer is `ip` must resume: the abort
 * handler of the rseq critical section it is inside, or undefined when it
 * is not inside one (or has no registration).
 */
export function rseqAbortAddress(task: CheckpointTask, ip: bigint): bigint | undefined {
  const c = configOf(task);
  if (c.size === 0) return undefined;
  const cs = task.mem.read(c.abi + RSEQ_CS_OFFSET, 8).readBigUInt64LE(0);
  if (cs === 0n) return undefined;
  const d = task.mem.read(cs, RSEQ_CS_SIZE);
  const start = d.readBigUInt64LE(8);
  const postCommitOffset = d.readBigUInt64LE(16);
  if (ip < start || ip >= start + postCommitOffset) return undefined;
  return d.readBigUInt64LE(24);
}

function checkpointRseq(ctx: CheckpointCtx, task: CheckpointTask): void {
  const c = configOf(task);
  ctx.write(rseqRecord, { abi: c.abi, size: c.size, signature: c.signature });
}

/** Saves and restores the rseq registration of every thread. */
export const rseqPhase: TaskPhase = {
  name: 'rseq',
  order: 950,
  checkpoint: checkpointRseq,
  checkpointThread: (ctx, thread) => checkpointRseq(ctx, thread),
  restore(ctx, task) {
    const rec = ctx.read(rseqRecord);
    if (rec.size === 0) return;
    if (rec.size < 32 || rec.abi % 32n !== 0n) {
      throw new CkptError(
        'EBADREC',
        `pid ${task.savedPid}: rseq area of ${rec.size} bytes at 0x${rec.abi.toString(16)} cannot be registered`,
        { pid: task.savedPid, recordType: rseqRecord.type },
      );
    }
    task.sys.postChecked([
      {
        name: 'rseq',
        args: [rec.abi, rec.size, 0, rec.signature],
        what: `registering the rseq area at 0x${rec.abi.toString(16)}`,
      },
    ]);
  },
  restoreThread: (ctx, thread) => rseqPhase.restore(ctx, thread),
};
