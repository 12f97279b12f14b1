/**
 * The restore stub: a static x86-64 ELF of about 240 bytes that loops in
 * `pause()`.
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
 * The stub dies with ckpt, which spawned it: a ckpt killed before it could
 * trace the stub would otherwise leave it in its loop for good.
 *
 *        mov edi, 1 (PR_SET_PDEATHSIG); mov esi, 9 (SIGKILL)
 *        mov eax, 157 (prctl); syscall
 *        mov eax, 110 (getppid); syscall
 *        cmp eax, PARENT           ; ckpt's pid, set when the file is written
 *        je loop                   ; else ckpt died before the prctl:
 *        mov eax, 60 (exit); syscall ; exit(1)
 * loop:  mov eax, 34 (pause); syscall; jmp loop
 */
const CODE = Buffer.from([
  0xbf, 0x01, 0x00, 0x00, 0x00, 0xbe, 0x09, 0x00, 0x00, 0x00, 0xb8, 0x9d, 0x00, 0x00, 0x00, 0x0f,
  0x05, 0xb8, 0x6e, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x3d, 0x00, 0x00, 0x00, 0x00, 0x74, 0x07, 0xb8,
  0x3c, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7,
]);
/** The `cmp eax, PARENT` immediate. */
const PARENT_OFFSET = CODE_OFFSET + 25;
/** The loop's syscall instruction. */
const SYSCALL_OFFSET = CODE_OFFSET + 43;
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
  parentPidOffset: PARENT_OFFSET,
};
