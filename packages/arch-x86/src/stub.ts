/**
 * The restore stub: a 200-byte static x86-64 ELF that loops in `pause()`.
 * Restart clones each restored task out of it (see core's mktree), so we
 * need neither a compiler nor a helper binary on the target machine.
 */
import type { StubProgram } from '@ckpt/core';

/** Where the stub is loaded: low, where real programs rarely map. */
const BASE = 0x10000n;
const EHDR_SIZE = 64;
const PHDR_SIZE = 56;
const CODE_OFFSET = EHDR_SIZE + PHDR_SIZE;
/**
 * loop: mov eax, 34 (pause); syscall; jmp loop
 */
const CODE = Buffer.from([0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7]);
const SYSCALL_OFFSET = CODE_OFFSET + 5;
/** One page of code, one of zeroed scratch (memsz beyond filesz). */
const MEM_SIZE = 0x2000n;

function buildElf(): Buffer {
  const elf = Buffer.alloc(CODE_OFFSET + CODE.length);
  // e_ident: magic, 64-bit, little-endian, version 1, System V ABI.
  Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]).copy(elf, 0);
  elf.writeUInt16LE(2, 16); // e_type: ET_EXEC
  elf.writeUInt16LE(62, 18); // e_machine: EM_X86_64
  elf.writeUInt32LE(1, 20); // e_version
  elf.writeBigUInt64LE(BASE + BigInt(CODE_OFFSET), 24); // e_entry
  elf.writeBigUInt64LE(BigInt(EHDR_SIZE), 32); // e_phoff
  elf.writeUInt16LE(EHDR_SIZE, 52); // e_ehsize
  elf.writeUInt16LE(PHDR_SIZE, 54); // e_phentsize
  elf.writeUInt16LE(1, 56); // e_phnum
  // The single PT_LOAD, read-write-execute so the scratch page is writable.
  const ph = EHDR_SIZE;
  elf.writeUInt32LE(1, ph); // p_type: PT_LOAD
  elf.writeUInt32LE(7, ph + 4); // p_flags: RWX
  elf.writeBigUInt64LE(0n, ph + 8); // p_offset
  elf.writeBigUInt64LE(BASE, ph + 16); // p_vaddr
  elf.writeBigUInt64LE(BASE, ph + 24); // p_paddr
  elf.writeBigUInt64LE(BigInt(elf.length), ph + 32); // p_filesz
  elf.writeBigUInt64LE(MEM_SIZE, ph + 40); // p_memsz
  elf.writeBigUInt64LE(0x1000n, ph + 48); // p_align
  CODE.copy(elf, CODE_OFFSET);
  return elf;
}

/** The x86-64 restore stub. */
export const x86_64Stub: StubProgram = {
  elf: buildElf(),
  syscallAddr: BASE + BigInt(SYSCALL_OFFSET),
  scratchAddr: BASE + 0x1000n,
  scratchSize: 0x1000,
};
