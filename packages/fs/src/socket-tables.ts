/**
 * The /proc/PID/net tables that describe and classify the sockets of a
 * checkpoint, read once per network namespace and checkpoint. Handlers'
 * `match` sees only the file, so the files phase notes which checkpoint
 * each file it plans belongs to ({@link plannedIn}); a file outside one
 * (a message, a unit test) reads the tables afresh.
 */
import type { CheckpointCtx, FileInfo } from '@ckpt/core';
import { perNamespace } from './sock-diag.js';
import { type SocketEntry, SocketTables } from './socket-info.js';

const checkpointOf = new WeakMap<FileInfo, CheckpointCtx>();

/** Note that `file` is planned in checkpoint `ctx`: questions about its socket use ctx's tables. */
export function plannedIn(ctx: CheckpointCtx, file: FileInfo): void {
  checkpointOf.set(file, ctx);
}

/** The socket tables of `file`'s network namespace: its checkpoint's, else read now. */
function tablesOf(file: FileInfo): SocketTables {
  const ctx = checkpointOf.get(file);
  if (!ctx) return new SocketTables(file.pid);
  return perNamespace(ctx, file.pid, 'proc-net', (pid) => new SocketTables(pid));
}

/** The inode of the socket `file` is. */
function inodeOf(file: FileInfo): number {
  return file.target.inode ?? file.stat.ino;
}

/**
 * A few words on the socket `file` is: "TCP socket listening on
 * 127.0.0.1:8080", "unix stream socket (unnamed)", or just "socket" when
 * no table lists it (see `SocketTables.describe`).
 */
export function describeSocket(file: FileInfo): string {
  return tablesOf(file).describe(inodeOf(file));
}

/** The /proc/PID/net line of the socket `file` is (TCP, UDP or unix), if a table lists it. */
export function socketEntry(file: FileInfo): SocketEntry | undefined {
  return tablesOf(file).entry(inodeOf(file));
}
