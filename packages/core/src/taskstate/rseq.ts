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
 * A thread frozen inside a critical section is moved to its abort handler
 * as soon as it is frozen, before ckpt runs anything in it
 * ({@link abortRseqCriticalSection}, called by the engine): that is where
 * the kernel sends a thread preempted inside one, and ckpt's own calls in
 * it would make the kernel forget the section (it disarms a section when
 * the thread returns to user space outside it). Left running or restored,
 * the thread then starts over its section, as after any preemption.
 */
import type { CheckpointCtx } from '../context.js';
import { CkptError } from '../errors.js';
import type { SyscallConvention } from '../kernel/convention.js';
import { getRseqConfig, NT, setRegset } from '../kernel/ptrace.js';
import type { TaskPhase } from '../registry.js';
import type { CheckpointTask, TaskMemory } from '../task.js';
import { rseqRecord } from './records.js';

/** Offset of `rseq_cs` (the current critical section's descriptor) in `struct rseq`. */
const RSEQ_CS_OFFSET = 8n;
/** `struct rseq_cs`: version, flags, start_ip, post_commit_offset, abort_ip. */
const RSEQ_CS_SIZE = 32;

/**
 * Where a thread of `pid` whose instruction pointer is `ip` must resume: the
 * abort handler of the rseq critical section it is inside, or undefined
 * when it is not inside one (or has no registration). `mem` reads the task.
 */
export function rseqAbortAddress(pid: number, mem: TaskMemory, ip: bigint): bigint | undefined {
  let d: Buffer;
  try {
    const c = getRseqConfig(pid);
    if (c.size === 0) return undefined;
    const cs = mem.read(c.abi + RSEQ_CS_OFFSET, 8).readBigUInt64LE(0);
    if (cs === 0n) return undefined;
    d = mem.read(cs, RSEQ_CS_SIZE);
  } catch {
    // No rseq support to ask (the rseq phase says so), or a section
    // descriptor the task cannot read either: the kernel's to deal with
    // (it kills the task) when it next checks it.
    return undefined;
  }
  const start = d.readBigUInt64LE(8);
  const postCommitOffset = d.readBigUInt64LE(16);
  if (ip < start || ip >= start + postCommitOffset) return undefined;
  return d.readBigUInt64LE(24);
}

/**
 * If the frozen thread `pid` (registers `regs`, NT_PRSTATUS) is inside an
 * rseq critical section, move it to the section's abort handler, as the
 * kernel would on its way back to user space, in the task and in `regs`.
 * Returns whether it did.
 */
export function abortRseqCriticalSection(
  pid: number,
  regs: Buffer,
  conv: SyscallConvention,
  mem: TaskMemory,
): boolean {
  const abort = rseqAbortAddress(pid, mem, conv.getIp(regs));
  if (abort === undefined) return false;
  conv.setIp(regs, abort);
  setRegset(pid, NT.PRSTATUS, regs);
  return true;
}

function checkpointRseq(ctx: CheckpointCtx, task: CheckpointTask): void {
  const c = getRseqConfig(task.pid);
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
