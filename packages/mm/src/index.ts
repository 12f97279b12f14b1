/**
 * @ckpt/mm — the address space: VMAs, pages, brk, stack, auxv, exe.
 *
 * @packageDocumentation
 */
import { type CkptPlugin, definePlugin } from '@ckpt/core';

/**
 * The @ckpt/mm plugin. It registers nothing yet: its handlers arrive with the
 * issues that build them (see the feature matrix in docs/).
 */
export const mmPlugin: CkptPlugin = definePlugin({ name: '@ckpt/mm' });

export default mmPlugin;
