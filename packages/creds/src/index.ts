/**
 * @ckpt/creds — credentials: uids, gids, groups, capabilities, securebits.
 *
 * @packageDocumentation
 */
import { type CkptPlugin, definePlugin } from '@ckpt/core';

/**
 * The @ckpt/creds plugin. It registers nothing yet: its handlers arrive with the
 * issues that build them (see the feature matrix in docs/).
 */
export const credsPlugin: CkptPlugin = definePlugin({ name: '@ckpt/creds' });

export default credsPlugin;
