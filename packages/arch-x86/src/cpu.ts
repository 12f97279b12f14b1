/**
 * The CPU state of an x86-64 task: general registers (with fs/gs base),
 * the whole xstate area (x87, SSE, AVX, AVX-512, …) and the debug
 * registers, saved and restored by one phase that runs last on restart.
 */
import {
  array,
  bytes,
  CkptError,
  defineRecord,
  fixed,
  type RestartCtx,
  type TaskPhase,
  u64,
} from '@ckpt/core';
import { readDebugRegs, writeDebugRegs } from './debugregs.js';
import { decodeRegs, encodeRegs, USER_REGS_SIZE } from './regs.js';
import { resumeRegs } from './restart.js';
import { decodeXstateInfo, getXmm, readXstate, writeXstate } from './xstate.js';

/** Record type of the x86-64 CPU state (arch range 201–299). */
export const CPU_X86_64_RECORD = 201;

export const cpuRecord = defineRecord(
  CPU_X86_64_RECORD,
  'cpu_x86_64',
  'x86-64 registers, xstate, debug registers',
  {
    /** `struct user_regs_struct` as PTRACE_GETREGSET NT_PRSTATUS returns it. */
    regs: fixed(USER_REGS_SIZE),
    /** The NT_X86_XSTATE area (XSAVE layout with the kernel's software bytes). */
    xstate: bytes(1 << 16),
    /** DR0–DR3, DR6, DR7. */
    debug: array(u64('hex'), 6),
  },
);

const DEBUG_NAMES = ['dr0', 'dr1', 'dr2', 'dr3', 'dr6', 'dr7'] as const;

/** This CPU's xstate layout (ptrace buffer length and features), per restart. */
const xstateHere = new WeakMap<
  RestartCtx,
  { length: number } & ReturnType<typeof decodeXstateInfo>
>();

/**
 * Saves and restores the CPU state of a process's leader and of each of its
 * other threads; order 1000 so it is restored last.
 */
export const cpuPhase: TaskPhase = {
  name: 'cpu',
  order: 1000,
  checkpointThread: (ctx, thread) => cpuPhase.checkpoint(ctx, thread),
  restoreThread: (ctx, thread) => cpuPhase.restore(ctx, thread),
  checkpoint(ctx, task) {
    const dr = readDebugRegs(task.pid);
    ctx.write(cpuRecord, {
      regs: task.regs,
      xstate: readXstate(task.pid),
      debug: DEBUG_NAMES.map((n) => dr[n]),
    });
  },
  restore(ctx, task) {
    const rec = ctx.read(cpuRecord);
    // Load the image's xstate into a buffer of this kernel's layout, the
    // same for every task: read from the first one restored.
    let here = xstateHere.get(ctx);
    if (!here) {
      const current = readXstate(task.pid);
      here = { length: current.length, ...decodeXstateInfo(current) };
      xstateHere.set(ctx, here);
    }
    const length = here.length;
    const saved = decodeXstateInfo(rec.xstate);
    if (saved.xstateSize > here.length || (saved.xfeatures & ~here.xfeatures) !== 0n) {
      throw new CkptError(
        'ENOTSUP',
        `pid ${task.savedPid}: saved xstate (${saved.xstateSize} bytes, features 0x${saved.xfeatures.toString(16)}) does not fit this CPU (${here.xstateSize} bytes, 0x${here.xfeatures.toString(16)})`,
        { pid: task.savedPid },
      );
    }
    const debug = Object.fromEntries(DEBUG_NAMES.map((n, i) => [n, rec.debug[i] ?? 0n]));
    // Once the task is stopped (its memory phase's round trip may still be
    // running): nothing in its restore before then uses these registers.
    task.sys.whenStopped((pid) => {
      writeXstate(pid, rec.xstate.subarray(0, Math.min(rec.xstate.length, length)));
      writeDebugRegs(pid, debug as Record<(typeof DEBUG_NAMES)[number], bigint>, true);
    });
    task.finalRegs = encodeRegs(resumeRegs(decodeRegs(rec.regs)).regs);
  },
};

/** Registers of a cpu record by name, for `ckpt info --regs`. */
export function formatCpuRecord(value: ReturnType<typeof cpuRecord.decode>): string[] {
  const regs = decodeRegs(value.regs);
  const hex = (v: bigint) => `0x${v.toString(16).padStart(16, '0')}`;
  const names = Object.keys(regs) as (keyof typeof regs)[];
  const lines: string[] = [];
  for (let i = 0; i < names.length; i += 3) {
    lines.push(
      names
        .slice(i, i + 3)
        .map((n) => `${n.padStart(8)} ${hex(regs[n])}`)
        .join('  '),
    );
  }
  const info = decodeXstateInfo(value.xstate);
  lines.push(
    `xstate: ${value.xstate.length} bytes, xfeatures 0x${info.xfeatures.toString(16)}, in use 0x${info.xstateBv.toString(16)}`,
  );
  for (let n = 0; n < 16; n++)
    lines.push(`   xmm${String(n).padEnd(2)} ${getXmm(value.xstate, n).toString('hex')}`);
  lines.push(`debug: ${DEBUG_NAMES.map((d, i) => `${d}=${hex(value.debug[i] ?? 0n)}`).join(' ')}`);
  return lines;
}
