/**
 * @ckpt/fs — open files: the fd table, files, pipes, devices, cwd and root.
 *
 * @packageDocumentation
 */
import { type CkptPlugin, definePlugin } from '@ckpt/core';

/**
 * The @ckpt/fs plugin. It registers nothing yet: its handlers arrive with the
 * issues that build them (see the feature matrix in docs/).
 */
export const fsPlugin: CkptPlugin = definePlugin({ name: '@ckpt/fs' });

export default fsPlugin;
