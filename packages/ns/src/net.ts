/**
 * The network namespace: one object per namespace, like uts and ipc (see
 * ns-object.ts). ckpt's own (the host's) is only named. One the tree made
 * (a container's `unshare --net`, a sandboxed `unshare -n`) is saved when
 * it holds nothing restart cannot make again: its loopback interface only,
 * with the addresses the kernel gives it, no routes and no firewall rules.
 * Anything more (a veth, an address or route added, nftables rules) is
 * refused at checkpoint, naming it. Restart makes a new namespace (an
 * injected unshare) and brings `lo` up if it was; sockets are restored by
 * the tasks in it, so they are that namespace's again.
 *
 * Not kept: the namespace's sysctls (`net.*`) and statistics.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import {
  bringInterfaceUp,
  type CheckpointCtx,
  type CheckpointTask,
  CkptError,
  inNamespaceOf,
  interfaceIsUp,
  type ObjectOps,
  ownNamespace,
  type RecordValue,
  type RestartCtx,
  type RestartTask,
} from '@ckpt/core';
import {
  checkpointNamespace,
  namespaceObject,
  type RestoredNs,
  restoreNamespace,
} from './ns-object.js';
import { netNsRecord } from './records.js';

/** The saved state of a network namespace. */
export type NetNs = RecordValue<typeof netNsRecord>;

/** A restored network namespace. */
export type RestoredNet = RestoredNs<NetNs>;

const LOOPBACK = 'lo';
/** The only local IPv4 and IPv6 addresses of a loopback-only namespace (the kernel's own). */
const LOOPBACK_V4 = '127.0.0.1';
const LOOPBACK_V6 = '00000000000000000000000000000001';

/** ObjectOps of network namespaces (linux-cr's CKPT_OBJ_NET_NS came after the seed: id 14). */
export const netNsObject: ObjectOps<NetNs | RestoredNet> = namespaceObject({
  name: 'net_ns',
  id: 14,
  record: netNsRecord,
  describe: (net) =>
    net.host
      ? "the host's network namespace"
      : `network namespace (lo ${net.loopbackUp ? 'up' : 'down'})`,
});

/** The interface names of /proc/PID/net/dev (the task's namespace). */
export function interfaceNames(devText: string): string[] {
  return devText
    .split('\n')
    .slice(2)
    .map((line) => line.split(':')[0]!.trim())
    .filter((name) => name !== '');
}

/** The local IPv4 addresses (`/32 host LOCAL`) of /proc/PID/net/fib_trie's text. */
export function localIpv4Addresses(fibTrie: string): string[] {
  const out = new Set<string>();
  const lines = fibTrie.split('\n');
  lines.forEach((line, i) => {
    const m = /\|-- (\S+)/.exec(line);
    if (m && /\/32 host LOCAL/.test(lines[i + 1] ?? '')) out.add(m[1]!);
  });
  return [...out];
}

function procNet(pid: number, name: string): string {
  return readFileSync(`/proc/${pid}/net/${name}`, 'utf8');
}

/** The nftables tables of the network namespace of `pid` ([] without nft). */
function nftTables(pid: number): string[] {
  const run = inNamespaceOf(pid, 'net', `of pid ${pid}`, () =>
    spawnSync('nft', ['list', 'tables'], { encoding: 'utf8' }),
  );
  if (run.error || run.status !== 0) return [];
  return run.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
}

/** What the namespace of `pid` holds that restart would not make again. */
function whatIsLost(pid: number): string[] {
  const lost: string[] = [];
  const others = interfaceNames(procNet(pid, 'dev')).filter((n) => n !== LOOPBACK);
  if (others.length > 0) lost.push(`interface(s) ${others.join(', ')}`);
  const v4 = localIpv4Addresses(procNet(pid, 'fib_trie')).filter((a) => a !== LOOPBACK_V4);
  const v6 = procNet(pid, 'if_inet6')
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0]!)
    .filter((a) => a !== '' && a !== LOOPBACK_V6);
  if (v4.length + v6.length > 0) lost.push(`address(es) ${[...v4, ...v6].join(', ')}`);
  const routes = procNet(pid, 'route')
    .split('\n')
    .slice(1)
    .filter((l) => l.trim() !== '');
  if (routes.length > 0) lost.push(`${routes.length} IPv4 route(s)`);
  const tables = nftTables(pid);
  if (tables.length > 0) lost.push(`nftables ${tables.join(', ')}`);
  return lost;
}

/** Read the network namespace of `pid`, refusing what restart would lose. */
function readNetNs(pid: number, inode: number): NetNs {
  if (inode === ownNamespace('net')) return { host: true, loopbackUp: false };
  const lost = whatIsLost(pid);
  if (lost.length > 0) {
    throw new CkptError(
      'ENOTSUP',
      `pid ${pid} is in network namespace net:[${inode}], which has ${lost.join('; ')}; only a namespace with nothing but its loopback interface can be checkpointed (give the tree the host's network, or remove them)`,
      { pid },
    );
  }
  const loopbackUp = inNamespaceOf(pid, 'net', `of pid ${pid}`, () => interfaceIsUp(LOOPBACK));
  return { host: false, loopbackUp };
}

/**
 * Save the network namespace of `task` (once per namespace) and return its
 * objref. `inode` is its nsfs inode, the object's identity.
 */
export function checkpointNet(ctx: CheckpointCtx, task: CheckpointTask, inode: number): number {
  return checkpointNamespace(ctx, 'net_ns', inode, () => readNetNs(task.pid, inode));
}

/** Restore the network namespace `objref` for `task` (see the module comment). */
export function restoreNet(ctx: RestartCtx, task: RestartTask, objref: number): void {
  restoreNamespace<NetNs>(ctx, task, objref, 'net_ns', 'net', {
    inHost() {
      // restart's own network: nothing to set.
    },
    apply(net) {
      if (!net.loopbackUp) return;
      inNamespaceOf(task.pid, 'net', `of pid ${task.pid}`, () => {
        bringInterfaceUp(LOOPBACK);
      });
    },
  });
}
