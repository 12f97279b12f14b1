/**
 * The peer credentials of a unix socket pair (SO_PEERCRED: a process and
 * its effective uid and gid), which servers use to decide what a client
 * may do (D-Bus, polkit, a container runtime's socket). The kernel fixes
 * them when the pair is made, from whoever makes it: socketpair(2) gives
 * both ends its maker's; a connection gives the accepted end the
 * connecting process's (at connect) and the connecting end the listening
 * one's (at listen). Nothing sets them later.
 *
 * So restart makes each pair the way that yields the saved credentials:
 * ends with the same peer by socketpair, ends with different ones by a
 * listen and a connect on a temporary abstract name, each made by the
 * process the saved credentials name (when it is a live task of the tree;
 * else the task restoring the pair) with its effective ids switched to
 * the saved ones for that one call (the task still has ckpt's credentials
 * then: its own come last, see @ckpt/creds).
 */
import {
  closeInTask,
  copyFdFromProcess,
  type RestartCtx,
  type RestartTask,
  socketOptionBytes,
  stage,
  withFdCopy,
} from '@ckpt/core';

/** struct ucred: pid, uid, gid. */
export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;
const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;

/** The SO_PEERCRED of socket `fd` of `pid` (read through ckpt's copy of it). */
export function readPeerCred(pid: number, fd: number): PeerCred {
  const b = withFdCopy(pid, fd, (mine) =>
    socketOptionBytes(
      mine,
      SOL_SOCKET,
      SO_PEERCRED,
      `reading SO_PEERCRED of pid ${pid} fd ${fd}`,
      12,
    ),
  );
  return { pid: b.readInt32LE(0), uid: b.readUInt32LE(4), gid: b.readUInt32LE(8) };
}

const sameCred = (a: PeerCred, b: PeerCred) =>
  a.pid === b.pid && a.uid === b.uid && a.gid === b.gid;

/**
 * Run `fn` in `task` with its effective uid and gid set to `cred`'s
 * (the task is still root: it switches back after).
 */
function asCred<T>(task: RestartTask, cred: PeerCred, what: string, fn: () => T): T {
  if (cred.uid === 0 && cred.gid === 0) return fn();
  const keep = -1;
  task.sys.check(
    'setresgid',
    [keep, cred.gid, keep],
    `${what}: taking gid ${cred.gid} for a while`,
  );
  task.sys.check(
    'setresuid',
    [keep, cred.uid, keep],
    `${what}: taking uid ${cred.uid} for a while`,
  );
  try {
    return fn();
  } finally {
    task.sys.check('setresuid', [keep, 0, keep], `${what}: back to uid 0`);
    task.sys.check('setresgid', [keep, 0, keep], `${what}: back to gid 0`);
  }
}

/** The live task `cred` names, else `holder`. */
function makerOf(ctx: RestartCtx, cred: PeerCred, holder: RestartTask): RestartTask {
  return ctx.liveTasks.get(cred.pid) ?? holder;
}

/** Fd `fd` of `from` as an fd of `holder` (copied, and closed in `from`), or itself. */
function intoHolder(holder: RestartTask, from: RestartTask, fd: number, what: string): number {
  if (from === holder) return fd;
  const copy = copyFdFromProcess(holder, from.pid, fd, what);
  closeInTask(from, fd);
  return copy;
}

let serial = 0;

/**
 * Make a connected unix socket pair of `type` whose ends report `creds`
 * (in end order) as their SO_PEERCRED; returns the two fds in `holder`.
 */
export function makePairWithCreds(
  ctx: RestartCtx,
  holder: RestartTask,
  type: number,
  creds: readonly PeerCred[],
  what: string,
): [number, number] {
  const [c0, c1] = creds as [PeerCred, PeerCred];
  // Datagram sockets only get credentials from socketpair().
  if (sameCred(c0, c1) || type === SOCK_DGRAM) return socketpairAs(ctx, holder, type, c0, what);
  try {
    return connectAs(ctx, holder, type, c0, c1, what);
  } catch (e) {
    // The two processes cannot reach one another's abstract names (other
    // network namespaces): one pair, one maker's credentials.
    ctx.log.warn(
      `${what}: cannot connect its ends as pids ${c0.pid} and ${c1.pid} did (${(e as Error).message}); both ends report pid ${c0.pid}'s credentials as their peer's`,
    );
    return socketpairAs(ctx, holder, type, c0, what);
  }
}

/** A socketpair made by the process `cred` names, as it. */
function socketpairAs(
  ctx: RestartCtx,
  holder: RestartTask,
  type: number,
  cred: PeerCred,
  what: string,
): [number, number] {
  const maker = makerOf(ctx, cred, holder);
  const addr = maker.sys.scratch(8);
  asCred(maker, cred, what, () =>
    maker.sys.check('socketpair', [AF_UNIX, type | SOCK_CLOEXEC, 0, addr], what),
  );
  const pair = maker.mem.read(addr, 8);
  return [
    intoHolder(holder, maker, pair.readInt32LE(0), what),
    intoHolder(holder, maker, pair.readInt32LE(4), what),
  ];
}

/**
 * A connection whose end 0 connects (its peer is the listener, `c0`) and
 * end 1 is accepted (its peer is the connecting process, `c1`).
 */
function connectAs(
  ctx: RestartCtx,
  holder: RestartTask,
  type: number,
  c0: PeerCred,
  c1: PeerCred,
  what: string,
): [number, number] {
  const listener = makerOf(ctx, c0, holder);
  const connector = makerOf(ctx, c1, holder);
  const name = Buffer.alloc(110);
  name.writeUInt16LE(AF_UNIX, 0);
  const len = 3 + name.write(`ckpt-pair-${process.pid}-${serial++}`, 3, 'latin1');
  const [at] = stage(listener, [name]);
  const ls = Number(listener.sys.check('socket', [AF_UNIX, type | SOCK_CLOEXEC, 0], what));
  try {
    listener.sys.check('bind', [ls, at!, len], `${what}: binding a temporary name`);
    asCred(listener, c0, what, () => listener.sys.check('listen', [ls, 1], what));
    const [cat] = stage(connector, [name]);
    const cs = Number(connector.sys.check('socket', [AF_UNIX, type | SOCK_CLOEXEC, 0], what));
    let as: number;
    try {
      asCred(connector, c1, what, () => connector.sys.check('connect', [cs, cat!, len], what));
      as = Number(listener.sys.check('accept4', [ls, 0, 0, SOCK_CLOEXEC], what));
    } catch (e) {
      // Not left in the task's fd table for the fallback's pair.
      closeInTask(connector, cs);
      throw e;
    }
    return [intoHolder(holder, connector, cs, what), intoHolder(holder, listener, as, what)];
  } finally {
    closeInTask(listener, ls);
  }
}
