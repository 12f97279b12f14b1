/**
 * @ckpt/ipc — SysV IPC: shared memory, message queues, semaphores.
 *
 * @packageDocumentation
 */
import { type CkptPlugin, definePlugin } from '@ckpt/core';

/**
 * The @ckpt/ipc plugin. It registers nothing yet: its handlers arrive with the
 * issues that build them (see the feature matrix in docs/).
 */
export const ipcPlugin: CkptPlugin = definePlugin({ name: '@ckpt/ipc' });

export default ipcPlugin;
