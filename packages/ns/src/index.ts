/**
 * @ckpt/ns — namespaces: uts (every uname field) and ipc (its sysctls; the
 * SysV objects are @ckpt/ipc's), one object each per namespace, referenced
 * by objref from every task's `ns` record, so tasks that shared a namespace
 * share it after restart. The engine restarts a container's root into fresh
 * pid, uts, ipc and mount namespaces, where the first task restores the
 * saved settings (and the pid counter of its pid namespace); a subtree
 * stays in the host's, which are never changed.
 * Nested pid namespaces, and tasks in a uts or ipc namespace other than
 * their parent's, come later (the checkpoint refuses them).
 *
 * @packageDocumentation
 */
import { type CkptPlugin, definePlugin } from '@ckpt/core';
import { ipcNsObject } from './ipc.js';
import { nsPhase } from './phase.js';
import { pidNsPhase } from './pid-ns.js';
import { ipcNsRecord, pidNsRecord, taskNsRecord, utsNsRecord } from './records.js';
import { utsNsObject } from './uts.js';

export * from './ipc.js';
export * from './ipc-sysctls.js';
export * from './ns-object.js';
export * from './phase.js';
export * from './pid-ns.js';
export * from './records.js';
export * from './uts.js';

/** The namespaces plugin: the `ns`, `uts_ns`, `ipc_ns` and `pid_ns` records, their objects, the `ns` and `pidns` phases. */
export const nsPlugin: CkptPlugin = definePlugin({
  name: '@ckpt/ns',
  records: [taskNsRecord, utsNsRecord, ipcNsRecord, pidNsRecord],
  objects: [utsNsObject, ipcNsObject],
  phases: [nsPhase, pidNsPhase],
});

export default nsPlugin;
