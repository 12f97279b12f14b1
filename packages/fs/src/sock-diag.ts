/**
 * What sock_diag lists, read once per network namespace and checkpoint: a
 * listing holds every socket of its kind in the namespace, and the pair
 * and waiting-socket handlers ask it about many sockets.
 */
import {
  type CheckpointCtx,
  type RestartCtx,
  readNamespace,
  tcpListenBacklogs,
  type UnixSocketDiag,
  unixSockets,
} from '@ckpt/core';

const listings = new WeakMap<CheckpointCtx | RestartCtx, Map<string, unknown>>();

/**
 * `read(pid)` for the network namespace `pid` is in, once per checkpoint
 * or restart and `kind` (also for /proc/PID/net's tables: socket-tables.ts,
 * and the connections open where a restart began: tcp-socket.ts).
 */
export function perNamespace<T>(
  ctx: CheckpointCtx | RestartCtx,
  pid: number,
  kind: string,
  read: (pid: number) => T,
): T {
  let cache = listings.get(ctx);
  if (!cache) {
    cache = new Map();
    listings.set(ctx, cache);
  }
  // A checkpoint reads the frozen tree's links once; a restart's tasks move.
  const ns =
    'namespaces' in ctx ? ctx.namespaces.inode(pid, 'net') : readNamespace(pid, 'net').inode;
  const key = `${kind} ${ns}`;
  let d = cache.get(key);
  if (!d) {
    d = read(pid);
    cache.set(key, d);
  }
  return d as T;
}

/** The unix sockets of the network namespace `pid` is in (a container's may be its own), by inode. */
export function unixDiag(ctx: CheckpointCtx, pid: number): Map<number, UnixSocketDiag> {
  return perNamespace(ctx, pid, 'unix', unixSockets);
}

/** The backlogs of the listening TCP sockets of the network namespace `pid` is in, by inode. */
export function tcpBacklogs(ctx: CheckpointCtx, pid: number): Map<number, number> {
  return perNamespace(ctx, pid, 'tcp', tcpListenBacklogs);
}
