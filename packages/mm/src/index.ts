/**
 * @ckpt/mm — the address space: VMAs of every kind a normal program has,
 * their pages (only present or swapped ones), brk, the stack, arg/env,
 * auxv and the exe file.
 *
 * @packageDocumentation
 */
import { type CkptPlugin, definePlugin } from '@ckpt/core';
import { mmPhase } from './mm.js';
import { mmRecord, pgarrRecord, vmaRecord } from './records.js';
import { vmaHandlers } from './vmas.js';

export { mmPhase } from './mm.js';
export * from './pages.js';
export * from './records.js';
export * from './vmas.js';

/** The memory plugin: mm, vma and pgarr records, the VMA handlers, the mm phase. */
export const mmPlugin: CkptPlugin = definePlugin({
  name: '@ckpt/mm',
  records: [mmRecord, vmaRecord, pgarrRecord],
  vmas: vmaHandlers,
  phases: [mmPhase],
});

export default mmPlugin;
