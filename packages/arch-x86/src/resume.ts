/**
 * Kill-safe injection on x86-64: the code placed right after ckpt's own
 * `syscall` instruction in a task being checkpointed. If ckpt dies while a
 * call it injected is in flight, the task runs this code instead of being
 * left with injected registers: it reloads every register the injection
 * changed and jumps back to where the task was, re-entering an interrupted
 * syscall exactly as the kernel would have (see resumeRegs).
 */
import { decodeRegs, type RegName } from './regs.js';
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
  for (const [name, [rex, op]] of Object.entries(MOVABS) as [RegName, [number, number]][]) {
    const imm = Buffer.alloc(8);
    imm.writeBigUInt64LE(BigInt.asUintN(64, regs[name]));
    parts.push(Buffer.from([rex, op]), imm);
  }
  if (original.eflags & EFLAGS_DF) parts.push(Buffer.from([STD]));
  // jmp qword [rip+0]; the target follows.
  const target = Buffer.alloc(8);
  target.writeBigUInt64LE(BigInt.asUintN(64, regs.rip));
  parts.push(Buffer.from([0xff, 0x25, 0, 0, 0, 0]), target);
  return Buffer.concat(parts);
}
