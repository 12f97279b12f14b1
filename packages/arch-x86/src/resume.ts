/**
 * Kill-safe injection on x86-64: the code placed right after ckpt's own
 * `syscall` instruction in a task being checkpointed. If ckpt dies while a
 * call it injected is in flight, the task runs this code instead of being
 * left with injected registers: it reloads every register the injection
 * changed and jumps back to where the task was, re-entering an interrupted
 * syscall exactly as the kernel would have (see resumeRegs).
 */
import type { Marker } from '@ckpt/core';
import { decodeRegs, getReg, type RegName } from './regs.js';
import { resumeRegs } from './restart.js';

/** movabs REG, imm64 encodings (REX.W + B8+r, REX.WB for r8–r15). */
const MOVABS: Partial<Record<RegName, [number, number]>> = {
  rax: [0x48, 0xb8],
  rcx: [0x48, 0xb9],
  rdx: [0x48, 0xba],
  rsi: [0x48, 0xbe],
  rdi: [0x48, 0xbf],
  r8: [0x49, 0xb8],
  r9: [0x49, 0xb9],
  r10: [0x49, 0xba],
  r11: [0x49, 0xbb],
};

const EFLAGS_DF = 0x400n;
const STD = 0xfd;

/** The 10 bytes of `movabs REG, v`. */
function movabs(reg: RegName, v: bigint): number[] {
  const [rex, op] = MOVABS[reg]!;
  const imm = Buffer.alloc(8);
  imm.writeBigUInt64LE(BigInt.asUintN(64, v));
  return [rex, op, ...imm];
}

/**
 * Code that restores the state `saved` (a NT_PRSTATUS buffer) after an
 * injected syscall: the registers the injection or the syscall instruction
 * clobbered (rax, the argument registers, rcx, r11), the direction flag the
 * injection cleared, and rip. Other flags come back from r11 via sysret.
 */
export function x86ResumeCode(saved: Buffer): Buffer {
  const original = decodeRegs(saved);
  const { regs } = resumeRegs(original, { sameTask: true });
  const parts: Buffer[] = [];
  for (const name of Object.keys(MOVABS) as RegName[]) {
    parts.push(Buffer.from(movabs(name, regs[name])));
  }
  if (original.eflags & EFLAGS_DF) parts.push(Buffer.from([STD]));
  // jmp qword [rip+0]; the target follows.
  const target = Buffer.alloc(8);
  target.writeBigUInt64LE(BigInt.asUintN(64, regs.rip));
  parts.push(Buffer.from([0xff, 0x25, 0, 0, 0, 0]), target);
  return Buffer.concat(parts);
}

/** `mov REG, [rcx+disp8]` for the registers a table entry loads (see x86BatchCode). */
const LOAD_FROM_RCX: [number, number, number][] = [
  [0x48, 0x41, 8], // rax ← nr
  [0x48, 0x79, 16], // rdi
  [0x48, 0x71, 24], // rsi
  [0x48, 0x51, 32], // rdx
  [0x4c, 0x51, 40], // r10
  [0x4c, 0x41, 48], // r8
  [0x4c, 0x49, 56], // r9
];

/**
 * The size of a batch table entry: ten words (go, nr → result, six
 * arguments, two addresses the result is also written to).
 */
const ENTRY_SIZE = 80;
const NR_TGKILL = 234n;
const UD2 = Buffer.from([0x0f, 0x0b]);

/**
 * A loop that runs the syscalls of a table one after another (one stop of
 * the tracer for many calls), for `SyscallConvention.batchCode`. The word
 * at `cursor` holds the address of the current table entry; an entry is
 * ten words: go (0 ends the table), the syscall number (overwritten with
 * the result), the six arguments, and two addresses the result is also
 * written to (another entry's argument, a field of a struct a later call
 * reads; the entry's own result word when unused). At the end the task sends itself
 * `marker.signal` with tgkill, which stops it for its tracer; after that
 * comes `tail`, the resume code (kill-safe injection: a tracer that died
 * meanwhile leaves the marker ignored and the task resumes exactly), or
 * else `ud2`.
 *
 * Only mov, lea, jrcxz and jmp run between the syscalls: no flag changes,
 * so the flags the syscall instruction restores from r11 stay the task's.
 * Registers changed: rax, rcx, rdx, rsi, rdi, r8–r11, which the resume
 * code reloads.
 */
export function x86BatchCode(at: bigint, cursor: bigint, marker: Marker, tail?: Buffer): Buffer {
  const out: number[] = [];
  const ripRel = (op: number[]) => {
    // The displacement counts from the end of this 7-byte instruction.
    const next = at + BigInt(out.length + op.length + 4);
    const disp = Buffer.alloc(4);
    disp.writeInt32LE(Number(cursor - next));
    out.push(...op, ...disp);
  };
  const top = out.length;
  ripRel([0x48, 0x8b, 0x0d]); // mov rcx, [rip+cursor]
  for (const [rex, modrm, disp] of LOAD_FROM_RCX) out.push(rex, 0x8b, modrm, disp);
  out.push(0x48, 0x8b, 0x09); // mov rcx, [rcx]   (go)
  const jrcxz = out.length;
  out.push(0xe3, 0); // jrcxz done
  out.push(0x0f, 0x05); // syscall
  ripRel([0x48, 0x8b, 0x0d]); // mov rcx, [rip+cursor]
  out.push(0x48, 0x89, 0x41, 0x08); // mov [rcx+8], rax
  out.push(0x48, 0x8b, 0x51, 64); // mov rdx, [rcx+64]
  out.push(0x48, 0x89, 0x02); // mov [rdx], rax
  out.push(0x48, 0x8b, 0x51, 72); // mov rdx, [rcx+72]
  out.push(0x48, 0x89, 0x02); // mov [rdx], rax
  out.push(0x48, 0x8d, 0x49, ENTRY_SIZE); // lea rcx, [rcx+80]
  ripRel([0x48, 0x89, 0x0d]); // mov [rip+cursor], rcx
  out.push(0xeb, (top - (out.length + 2)) & 0xff); // jmp top
  out[jrcxz + 1] = out.length - (jrcxz + 2);
  pushMarker(out, marker);
  return Buffer.concat([Buffer.from(out), tail ?? UD2]);
}

/**
 * Append the marker: tgkill(tgid, pid, signal), which stops the traced task
 * where ckpt expects it. Four 10-byte movabs and a syscall (42 bytes), the
 * length {@link X86_MARKER_STUB_END} counts on.
 */
function pushMarker(out: number[], marker: Marker): void {
  out.push(
    ...movabs('rax', NR_TGKILL),
    ...movabs('rdi', BigInt(marker.tgid)),
    ...movabs('rsi', BigInt(marker.pid)),
    ...movabs('rdx', BigInt(marker.signal)),
    0x0f,
    0x05, // syscall: tgkill(tgid, pid, signal)
  );
}

/**
 * One syscall, then the marker (see {@link x86BatchCode}), for
 * `SyscallConvention.markerStub`: code that writes no memory, so it can run
 * from the read-only vDSO. The syscall is set up in the registers; its
 * result is kept in r10 across the marker's tgkill (`stubResult`), and
 * `tail`, the resume code, follows.
 */
export function x86MarkerStub(marker: Marker, tail: Buffer): Buffer {
  const out: number[] = [0x0f, 0x05, 0x49, 0x89, 0xc2]; // syscall; mov r10, rax
  pushMarker(out, marker);
  return Buffer.concat([Buffer.from(out), tail]);
}

/** Where {@link x86MarkerStub} keeps the result: r10 of the registers at the marker's stop. */
export function x86StubResult(regs: Buffer): bigint {
  return BigInt.asIntN(64, getReg(regs, 'r10'));
}

/** Offset in {@link x86MarkerStub}'s code right after the marker's syscall. */
export const X86_MARKER_STUB_END = 5 + 4 * 10 + 2;
