/**
 * @ckpt/ns — namespaces: uts, ipc, pid.
 *
 * @packageDocumentation
 */
import { type CkptPlugin, definePlugin } from '@ckpt/core';

/**
 * The @ckpt/ns plugin. It registers nothing yet: its handlers arrive with the
 * issues that build them (see the feature matrix in docs/).
 */
export const nsPlugin: CkptPlugin = definePlugin({ name: '@ckpt/ns' });

export default nsPlugin;
