/**
 * The unix sockets sock_diag lists, read once per network namespace and
 * checkpoint (a listing holds every unix socket of the namespace: the
 * pair handler and the waiting-socket handler ask it for many sockets).
 */
import { type CheckpointCtx, type UnixSocketDiag, unixSockets } from '@ckpt/core';

const listings = new WeakMap<CheckpointCtx, Map<number, Map<number, UnixSocketDiag>>>();

/** The unix sockets of the network namespace `pid` is in (a container's may be its own), by inode. */
export function unixDiag(ctx: CheckpointCtx, pid: number): Map<number, UnixSocketDiag> {
  let byNs = listings.get(ctx);
  if (!byNs) {
    byNs = new Map();
    listings.set(ctx, byNs);
  }
  const ns = ctx.namespaces.inode(pid, 'net');
  let d = byNs.get(ns);
  if (!d) {
    d = unixSockets(pid);
    byNs.set(ns, d);
  }
  return d;
}
