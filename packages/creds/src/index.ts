/**
 * @ckpt/creds — credentials: uids, gids, supplementary groups, capability
 * sets, securebits, no_new_privs and dumpable.
 *
 * @packageDocumentation
 */
import { type CkptPlugin, definePlugin } from '@ckpt/core';
import { credsPhase } from './creds.js';
import { capabilitiesRecord, credRecord } from './records.js';

export * from './caps.js';
export { credsPhase } from './creds.js';
export * from './records.js';
export { applyCreds, readSecurebits } from './restore.js';

/** The credentials plugin: the cred and capabilities records and the creds phase. */
export const credsPlugin: CkptPlugin = definePlugin({
  name: '@ckpt/creds',
  records: [credRecord, capabilitiesRecord],
  phases: [credsPhase],
});

export default credsPlugin;
