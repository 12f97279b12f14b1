/** The @ckpt/arch-x86 plugin object. */
import { type CkptPlugin, definePlugin } from '@ckpt/core';
import { x86_64Arch } from './arch.js';
import { cpuPhase, cpuRecord } from './cpu.js';

/** x86-64: the arch support, the CPU record and the CPU phase. */
export const archX86Plugin: CkptPlugin = definePlugin({
  name: '@ckpt/arch-x86',
  arch: x86_64Arch,
  records: [cpuRecord],
  phases: [cpuPhase],
});
