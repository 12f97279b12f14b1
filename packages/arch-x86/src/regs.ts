/**
 * x86-64 general-purpose registers: the layout of the kernel's
 * `struct user_regs_struct`, which is what PTRACE_GETREGSET NT_PRSTATUS
 * returns on x86-64 (27 unsigned 64-bit words).
 */
import { CkptError } from '@ckpt/core';

/** Register names in `struct user_regs_struct` order. */
export const USER_REGS = [
  'r15',
  'r14',
  'r13',
  'r12',
  'rbp',
  'rbx',
  'r11',
  'r10',
  'r9',
  'r8',
  'rax',
  'rcx',
  'rdx',
  'rsi',
  'rdi',
  'orig_rax',
  'rip',
  'cs',
  'eflags',
  'rsp',
  'ss',
  'fs_base',
  'gs_base',
  'ds',
  'es',
  'fs',
  'gs',
] as const;

/** One register of {@link USER_REGS}. */
export type RegName = (typeof USER_REGS)[number];

/** The registers as unsigned 64-bit values. */
export type UserRegs = Record<RegName, bigint>;

/** sizeof(struct user_regs_struct). */
export const USER_REGS_SIZE = USER_REGS.length * 8;

/** Byte offset of each register in the buffer. */
export const REG_OFFSET = Object.fromEntries(USER_REGS.map((name, i) => [name, i * 8])) as Record<
  RegName,
  number
>;

/** Decode a `user_regs_struct` buffer. */
export function decodeRegs(buf: Buffer): UserRegs {
  if (buf.length < USER_REGS_SIZE) {
    throw new CkptError(
      'EINVAL',
      `x86-64 register buffer is ${buf.length} bytes, expected ${USER_REGS_SIZE}`,
    );
  }
  const out = {} as UserRegs;
  USER_REGS.forEach((name, i) => {
    out[name] = buf.readBigUInt64LE(i * 8);
  });
  return out;
}

/** Encode registers into a new `user_regs_struct` buffer. */
export function encodeRegs(regs: UserRegs): Buffer {
  const buf = Buffer.alloc(USER_REGS_SIZE);
  USER_REGS.forEach((name, i) => {
    buf.writeBigUInt64LE(BigInt.asUintN(64, regs[name]), i * 8);
  });
  return buf;
}

/** Read one register from a `user_regs_struct` buffer. */
export function getReg(buf: Buffer, name: RegName): bigint {
  return buf.readBigUInt64LE(REG_OFFSET[name]);
}

/** Write one register into a `user_regs_struct` buffer (negative values wrap). */
export function setReg(buf: Buffer, name: RegName, value: bigint): void {
  buf.writeBigUInt64LE(BigInt.asUintN(64, value), REG_OFFSET[name]);
}
