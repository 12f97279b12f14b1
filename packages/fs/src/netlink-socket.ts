/**
 * Netlink sockets bound to a port id: a daemon listening to the kernel's
 * events (dnsmasq and NetworkManager to route and address changes, udev to
 * uevents) or talking to it (`ip monitor`, libnl). (One never bound is a
 * listen-socket.ts socket: a new one stands for it.)
 *
 * Checkpoint reads, on ckpt's copy of the fd: the protocol and type, the
 * port id (getsockname's nl_pid), the multicast groups joined
 * (NETLINK_LIST_MEMBERSHIPS, every group, not only the first 32 that bind
 * takes), the boolean SOL_NETLINK options and the buffer sizes (udev asks
 * for a large receive buffer). Restart makes a socket of the same protocol
 * in the task and, on ckpt's copy, binds it to the same port id (which the
 * program may have remembered, to match replies), joins the groups and
 * sets the options.
 *
 * Not kept: messages waiting to be read (the kernel's; they cannot be put
 * back: the checkpoint warns how many bytes are lost), a reply the kernel
 * was still sending (a dump in progress is refused: try again), and a
 * socket connected to another port (refused).
 */
import { closeSync, readFileSync } from 'node:fs';
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

const AF_NETLINK = 16;
const SOL_SOCKET = 1;
const SO_TYPE = 3;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const SO_SNDBUFFORCE = 32;
const SO_RCVBUFFORCE = 33;
const SO_PROTOCOL = 38;
const SOL_NETLINK = 270;
const NETLINK_ADD_MEMBERSHIP = 1;
const NETLINK_LIST_MEMBERSHIPS = 9;
/** The boolean SOL_NETLINK options kept (PKTINFO, BROADCAST_ERROR, NO_ENOBUFS, LISTEN_ALL_NSID, CAP_ACK, EXT_ACK, GET_STRICT_CHK). */
const BOOLEAN_OPTIONS = [3, 4, 5, 8, 10, 11, 12];
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
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/net/netlink`, 'utf8');
  } catch {
    return undefined;
  }
  // sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
  for (const line of text.split('\n').slice(1)) {
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
      let options = 0;
      for (const opt of BOOLEAN_OPTIONS) {
        try {
          if (socketOption(fd, SOL_NETLINK, opt) !== 0) options |= 1 << opt;
        } catch {
          // an option this kernel lacks: off
        }
      }
      const groups = socketOptionBytes(
        fd,
        SOL_NETLINK,
        NETLINK_LIST_MEMBERSHIPS,
        'listing the multicast groups',
      );
      ctx.write(fileNetlinkRecord, {
        type: socketOption(fd, SOL_SOCKET, SO_TYPE),
        protocol: socketOption(fd, SOL_SOCKET, SO_PROTOCOL),
        flags: reopenFlags(file.info.flags),
        portid: socketName(fd).readUInt32LE(4),
        groups: Array.from({ length: groups.length >> 2 }, (_, i) => groups.readUInt32LE(i * 4)),
        options,
        rcvbuf: socketOption(fd, SOL_SOCKET, SO_RCVBUF),
        sndbuf: socketOption(fd, SOL_SOCKET, SO_SNDBUF),
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
      // The kernel doubles what is asked: half of what getsockopt gave.
      setSocketOption(
        copy,
        SOL_SOCKET,
        SO_RCVBUFFORCE,
        rec.rcvbuf >> 1,
        `${what}: its receive buffer`,
      );
      setSocketOption(
        copy,
        SOL_SOCKET,
        SO_SNDBUFFORCE,
        rec.sndbuf >> 1,
        `${what}: its send buffer`,
      );
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
      for (const opt of BOOLEAN_OPTIONS) {
        if (rec.options & (1 << opt))
          setSocketOption(copy, SOL_NETLINK, opt, 1, `${what}: option ${opt}`);
      }
    } finally {
      closeSync(copy);
    }
    return fd;
  },
};
