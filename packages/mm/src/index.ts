/**
 * @ckpt/mm — the address space: VMAs of every kind a normal program has,
 * their pages (only present or swapped ones), shared anonymous memory saved
 * once for every task that maps it, brk, the stack, arg/env, auxv and the
 * exe file.
 *
 * @packageDocumentation
 */
import { type CkptPlugin, definePlugin } from '@ckpt/core';
import { mmPhase } from './mm.js';
import { mmRecord, pgarrRecord, shmemRecord, vmaRecord } from './records.js';
import { shmemObject } from './shmem.js';
import { vmaHandlers } from './vmas.js';

export * from './file-identity.js';
export { mmPhase } from './mm.js';
export * from './pages.js';
export * from './records.js';
export * from './shmem.js';
export * from './vmas.js';

/**
 * The memory plugin: mm, vma, pgarr and shmem records, the shmem object
 * type, the VMA handlers, the mm phase.
 */
export const mmPlugin: CkptPlugin = definePlugin({
  name: '@ckpt/mm',
  records: [mmRecord, vmaRecord, pgarrRecord, shmemRecord],
  objects: [shmemObject],
  vmas: vmaHandlers,
  phases: [mmPhase],
});

export default mmPlugin;
