/** The @ckpt/arch-x86 plugin object. */
import { type CkptPlugin, definePlugin } from '@ckpt/core';

/**
 * The x86-64 arch plugin. Its records and the CPU phase are registered by
 * the single-process checkpoint work; today it contributes the modules
 * exported beside it (registers, xstate, syscall convention).
 */
export const archX86Plugin: CkptPlugin = definePlugin({ name: '@ckpt/arch-x86' });
