/** The file handlers of this package, and the error for files none supports. */
import { CkptError, type FileHandler, type FileInfo } from '@ckpt/core';
import { simpleDevice } from './devices.js';
import { epollFile, eventfdFile, signalfdFile, timerfdFile } from './event-files.js';
import { externalFile } from './external.js';
import { major, minor } from './flags.js';
import { ghostFile } from './ghost.js';
import { inotifyFile } from './inotify.js';
import { listenSocketFile, whyNotRestored } from './listen-socket.js';
import { netlinkSocketFile } from './netlink-socket.js';
import { isMessageQueue, messageQueueUnsupported } from './path-file.js';
import { pidfdFile } from './pidfd.js';
import { pipeFile } from './pipe.js';
import { ptyFile } from './pty.js';
import { regularFile } from './regular.js';
import { describeSocket } from './socket-tables.js';
import { tcpSocketFile, whyNotTcp } from './tcp-socket.js';
import { unixPairFile } from './unix-pair.js';

/** Every file handler of this package, in match order. */
export const fileHandlers: readonly FileHandler[] = [
  regularFile,
  ghostFile,
  eventfdFile,
  signalfdFile,
  timerfdFile,
  epollFile,
  inotifyFile,
  simpleDevice,
  pipeFile,
  // Before the external handler: a TCP connection on fds 0-2 (an inetd
  // or socket-activated service's) is restored as the connection, and a
  // socket the program bound there itself (an inetd "wait" service's
  // listener on fd 0, busybox syslogd's /dev/log) as its own socket.
  tcpSocketFile,
  listenSocketFile,
  netlinkSocketFile,
  externalFile,
  unixPairFile,
  ptyFile,
  pidfdFile,
];

/** What kind of file `file` is, in a few words, for messages. */
function kindOf(file: FileInfo): string {
  const { target, stat } = file;
  if (target.anonType) return target.anonType;
  if (target.kind === 'socket') return describeSocket(file);
  if (stat.type === 'chr' || stat.type === 'blk')
    return `${stat.type} ${major(stat.rdev)}:${minor(stat.rdev)}`;
  return target.kind === 'path' ? stat.type : (target.type ?? target.kind);
}

/** Explain why no handler takes `file` (the checkpoint fails with it). */
export function unsupported(file: FileInfo): CkptError {
  const { pid, fd, target } = file;
  if (isMessageQueue(file)) return messageQueueUnsupported(file);
  if (target.kind === 'path' && target.deleted) {
    return new CkptError(
      'ENOTSUP',
      `pid ${pid} fd ${fd}: ${target.path} was deleted while open; only deleted regular files are supported, not a deleted ${kindOf(file)}`,
      { pid, fd, path: target.path },
    );
  }
  const why = whyNotRestored(file) ?? whyNotTcp(file);
  if (why) {
    return new CkptError('ENOTSUP', `pid ${pid} fd ${fd}: ${why}; it cannot be restored`, {
      pid,
      fd,
    });
  }
  const sockets =
    target.kind === 'socket'
      ? '; of connected sockets, only established TCP connections and unix socket pairs within the tree are restored (and any socket on fds 0-2, which restart reconnects like a terminal)'
      : '';
  return new CkptError(
    'ENOTSUP',
    `pid ${pid} fd ${fd}: ${target.text} (${kindOf(file)}) is not supported yet${sockets}`,
    {
      pid,
      fd,
      ...(target.path ? { path: target.path } : {}),
    },
  );
}
