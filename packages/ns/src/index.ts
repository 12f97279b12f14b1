/**
 * @ckpt/ns — namespaces: uts (every uname field) and ipc (its sysctls; the
 * SysV objects are @ckpt/ipc's), one object each per namespace, referenced
 * by objref from every task's `ns` record, so tasks that shared a namespace
 * share it after restart. The engine restarts a container's root into fresh
 * pid, uts, ipc and mount namespaces, where the first task restores the
 * saved settings; a subtree stays in the host's, which are never changed.
 * Nested pid namespaces, and tasks in a uts or ipc namespace other than
 * their parent's, come later (the checkpoint refuses them).
 *
 * @packageDocumentation
 */
import { type CkptPlugin, definePlugin } from '@ckpt/core';
import { ipcNsObject } from './ipc.js';
import { nsPhase } from './phase.js';
import { ipcNsRecord, taskNsRecord, utsNsRecord } from './records.js';
import { utsNsObject } from './uts.js';

export * from './ipc.js';
export * from './ipc-sysctls.js';
export * from './ns-object.js';
export * from './phase.js';
export * from './records.js';
export * from './uts.js';

/** The namespaces plugin: the `ns`, `uts_ns` and `ipc_ns` records and objects, the `ns` phase. */
export const nsPlugin: CkptPlugin = definePlugin({
  name: '@ckpt/ns',
  records: [taskNsRecord, utsNsRecord, ipcNsRecord],
  objects: [utsNsObject, ipcNsObject],
  phases: [nsPhase],
});

export default nsPlugin;
