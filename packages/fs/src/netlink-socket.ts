/**
 * Netlink sockets bound to a port id: a daemon listening to the kernel's
 * events (dnsmasq and NetworkManager to route and address changes, udev to
 * uevents) or talking to it (`ip monitor`, libnl). (One never bound is a
 * listen-socket.ts socket: a new one stands for it.)
 *
 * Checkpoint reads, on ckpt's copy of the fd: the protocol and type, the
 * port id (getsockname's nl_pid), the multicast groups joined
 * (NETLINK_LIST_MEMBERSHIPS, every group, not only the first 32 that bind
 * takes), and the options the program changed (socket-options.ts: the
 * boolean SOL_NETLINK ones, the buffer sizes: udev asks for a large
 * receive buffer). Restart makes a socket of the same protocol
 * in the task and, on ckpt's copy, binds it to the same port id (which the
 * program may have remembered, to match replies), with the options set
 * first, and joins the groups.
 *
 * Not kept: messages waiting to be read (the kernel's; they cannot be put
 * back: the checkpoint warns how many bytes are lost), a reply the kernel
 * was still sending (a dump in progress is refused: try again), and a
 * socket connected to another port (refused).
 */
import { closeSync } from 'node:fs';
import {
  bindSocket,
  CkptError,
  errnoName,
  type FileHandler,
  type FileInfo,
  grabFd,
  setSocketOption,
  socketName,
  socketOption,
  socketOptionBytes,
  socketPeer,
  withFdCopy,
} from '@ckpt/core';
import { moveAboveTable, restoringTask } from './file-object.js';
import { reopenFlags } from './flags.js';
import { FileKind, fileNetlinkRecord } from './records.js';
import { readNet } from './socket-info.js';
import { changedSocketOptions, setSavedOptions } from './socket-options.js';

const AF_NETLINK = 16;
const SOL_SOCKET = 1;
const SO_TYPE = 3;
const SO_PROTOCOL = 38;
const SOL_NETLINK = 270;
const NETLINK_ADD_MEMBERSHIP = 1;
const NETLINK_LIST_MEMBERSHIPS = 9;
const O_NONBLOCK = 0o4000;
const EADDRINUSE = 98;

/** A netlink socket's line of /proc/PID/net/netlink. */
interface NetlinkEntry {
  protocol: number;
  portid: number;
  /** Bytes waiting to be read. */
  rmem: number;
  /** A dump (a multi-part reply) in progress. */
  dumping: boolean;
}

/** The netlink socket `inode` as `pid`'s network namespace lists it, if it does. */
function netlinkEntry(pid: number, inode: number): NetlinkEntry | undefined {
  // sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
  for (const line of readNet(pid, 'netlink').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || Number(f[9]) !== inode) continue;
    return {
      protocol: Number(f[1]),
      portid: Number(f[2]) >>> 0,
      rmem: Number(f[4]),
      dumping: f[6] !== '0',
    };
  }
  return undefined;
}

function entryOf(file: FileInfo): NetlinkEntry | undefined {
  if (file.target.kind !== 'socket') return undefined;
  return netlinkEntry(file.pid, file.target.inode ?? file.stat.ino);
}

export const netlinkSocketFile: FileHandler = {
  kind: 'netlink',
  id: FileKind.NETLINK,
  // Bound (port id not 0): an unbound one is the listen handler's.
  match: (f) => (entryOf(f)?.portid ?? 0) !== 0,
  checkpoint(ctx, _task, file) {
    const e = entryOf(file)!;
    const where = `pid ${file.pid} fd ${file.fd}: netlink socket (protocol ${e.protocol}, port ${e.portid})`;
    if (e.dumping) {
      throw new CkptError(
        'EAGAIN',
        `${where} is receiving a reply the kernel is still sending (a dump); try again`,
        { pid: file.pid, fd: file.fd },
      );
    }
    withFdCopy(file.pid, file.fd, (fd) => {
      const peer = socketPeer(fd);
      if (peer && peer.length >= 12 && (peer.readUInt32LE(4) !== 0 || peer.readUInt32LE(8) !== 0)) {
        throw new CkptError(
          'ENOTSUP',
          `${where} is connected to port ${peer.readUInt32LE(4)} (groups ${peer.readUInt32LE(8)}), not to the kernel; it cannot be restored`,
          { pid: file.pid, fd: file.fd },
        );
      }
      const groups = socketOptionBytes(
        fd,
        SOL_NETLINK,
        NETLINK_LIST_MEMBERSHIPS,
        'listing the multicast groups',
      );
      const type = socketOption(fd, SOL_SOCKET, SO_TYPE);
      const protocol = socketOption(fd, SOL_SOCKET, SO_PROTOCOL);
      ctx.write(fileNetlinkRecord, {
        type,
        protocol,
        flags: reopenFlags(file.info.flags),
        portid: socketName(fd).readUInt32LE(4),
        groups: Array.from({ length: groups.length >> 2 }, (_, i) => groups.readUInt32LE(i * 4)),
        options: changedSocketOptions(fd, AF_NETLINK, type, protocol),
      });
    });
    if (e.rmem > 0) {
      ctx.log.warn(`${where}: the messages it had not read (${e.rmem} bytes of buffers) are lost`);
    }
  },
  restore(ctx, task) {
    const rec = ctx.read(fileNetlinkRecord);
    const { above } = restoringTask(ctx, 'a netlink socket');
    const what = `recreating a netlink socket (protocol ${rec.protocol}, port ${rec.portid})`;
    const created = Number(
      task.sys.check(
        'socket',
        [AF_NETLINK, rec.type | (rec.flags & O_NONBLOCK), rec.protocol],
        what,
      ),
    );
    const fd = moveAboveTable(task, created, above, what);
    const copy = grabFd(task.pid, fd);
    try {
      setSavedOptions(copy, rec.options, what);
      const addr = Buffer.alloc(12);
      addr.writeUInt16LE(AF_NETLINK, 0);
      addr.writeUInt32LE(rec.portid, 4);
      const err = bindSocket(copy, addr);
      if (err === EADDRINUSE) {
        throw new CkptError(
          'EBUSY',
          `${what}: port ${rec.portid} is taken (the original still running?); stop the process that holds it, or restart where it is free`,
          { pid: task.savedPid },
        );
      }
      if (err !== 0) {
        throw new CkptError('ESYS', `${what}: bind failed with ${errnoName(err)}`, {
          pid: task.savedPid,
          syscall: 'bind',
          errno: err,
        });
      }
      rec.groups.forEach((word, w) => {
        for (let bit = 0; bit < 32; bit++) {
          if (((word >>> bit) & 1) === 0) continue;
          const group = w * 32 + bit + 1;
          setSocketOption(
            copy,
            SOL_NETLINK,
            NETLINK_ADD_MEMBERSHIP,
            group,
            `${what}: joining group ${group}`,
          );
        }
      });
    } finally {
      closeSync(copy);
    }
    return fd;
  },
};
