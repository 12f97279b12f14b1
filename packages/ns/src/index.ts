/**
 * @ckpt/ns — namespaces: uts (ipc and pid come later; the engine restarts a
 * container's root into fresh pid, uts, ipc and mount namespaces).
 *
 * @packageDocumentation
 */
import { type CkptPlugin, definePlugin } from '@ckpt/core';
import { taskNsRecord, utsNsRecord } from './records.js';
import { nsPhase, utsNsObject } from './uts.js';

export * from './records.js';
export * from './uts.js';

/** The namespaces plugin: the `ns` and `uts_ns` records, the uts_ns object, the `ns` phase. */
export const nsPlugin: CkptPlugin = definePlugin({
  name: '@ckpt/ns',
  records: [taskNsRecord, utsNsRecord],
  objects: [utsNsObject],
  phases: [nsPhase],
});

export default nsPlugin;
