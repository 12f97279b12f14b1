/**
 * @ckpt/arch-s390 — s390x task state.
 *
 * @packageDocumentation
 */
import { type CkptPlugin, definePlugin } from '@ckpt/core';

/**
 * The @ckpt/arch-s390 plugin. It registers nothing yet: its handlers arrive with the
 * issues that build them (see the feature matrix in docs/).
 */
export const archS390Plugin: CkptPlugin = definePlugin({ name: '@ckpt/arch-s390' });

export default archS390Plugin;
