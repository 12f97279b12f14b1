/**
 * @ckpt/ns — namespaces: uts (every uname field), ipc (its sysctls; the
 * SysV objects are @ckpt/ipc's) and network (a loopback-only one the tree
 * made), one object each per namespace, referenced by objref from every
 * task's `ns` record, so tasks that shared a namespace share it after
 * restart. The engine restarts a container's root into fresh pid, uts, ipc
 * and mount namespaces; any other namespace the tree made (a container's
 * network, `unshare -i/-u/-n` anywhere in the tree) is made again by the
 * first task in it and entered by the others. A container's own mounts
 * (tmpfs with its files, bind mounts, proc, sysfs, mqueue) are mounted
 * again in its new mount namespace. The host's are never changed.
 *
 * @packageDocumentation
 */
import { type CkptPlugin, definePlugin } from '@ckpt/core';
import { cgroupNsObject } from './cgroup-ns.js';
import { ipcNsObject } from './ipc.js';
import { mountsPhase } from './mounts.js';
import { netNsObject } from './net.js';
import { nsPhase } from './phase.js';
import { pidNsPhase } from './pid-ns.js';
import {
  cgroupNsRecord,
  ipcNsRecord,
  mountFileDataRecord,
  mountFileRecord,
  mountRecord,
  mountsRecord,
  netNsRecord,
  pidNsRecord,
  taskNsRecord,
  utsNsRecord,
} from './records.js';
import { utsNsObject } from './uts.js';

export * from './cgroup-ns.js';
export * from './ipc.js';
export * from './ipc-sysctls.js';
export * from './mounts.js';
export * from './net.js';
export * from './ns-object.js';
export * from './phase.js';
export * from './pid-ns.js';
export * from './records.js';
export * from './uts.js';

/** The namespaces plugin: the `ns`, `uts_ns`, `ipc_ns`, `net_ns`, `pid_ns` and mount records, their objects, the `ns`, `pidns` and `mounts` phases. */
export const nsPlugin: CkptPlugin = definePlugin({
  name: '@ckpt/ns',
  records: [
    taskNsRecord,
    cgroupNsRecord,
    utsNsRecord,
    ipcNsRecord,
    netNsRecord,
    pidNsRecord,
    mountsRecord,
    mountRecord,
    mountFileRecord,
    mountFileDataRecord,
  ],
  objects: [utsNsObject, ipcNsObject, netNsObject, cgroupNsObject],
  phases: [nsPhase, pidNsPhase, mountsPhase],
});

export default nsPlugin;
