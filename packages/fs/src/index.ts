/**
 * @ckpt/fs — open files: the fd table with close-on-exec, regular files and
 * directories, deleted files, FIFOs, file locks, eventfd/signalfd/timerfd/epoll/inotify, listening sockets, established TCP connections, unix socket pairs, pseudo-terminals, simple devices, fds leading outside the
 * checkpoint (ttys, pipes, sockets), and the cwd, root and umask.
 *
 * @packageDocumentation
 */
import { type CkptPlugin, definePlugin } from '@ckpt/core';
import { fileObject } from './file-object.js';
import { filesPhase } from './files.js';
import { fsPhase } from './fs.js';
import { ghostObject } from './ghost.js';
import { fileHandlers } from './handlers.js';
import { pipeObject } from './pipe.js';
import { ptyObject } from './pty.js';
import {
  fileDescRecord,
  fileEpollRecord,
  fileEventfdRecord,
  fileExternalRecord,
  fileGhostRecord,
  fileInotifyRecord,
  fileLocksRecord,
  fileNameRecord,
  fileNetlinkRecord,
  fileOwnerRecord,
  filePidfdRecord,
  filePipeRecord,
  filePtyRecord,
  fileRecord,
  fileSignalfdRecord,
  fileSocketRecord,
  fileTableRecord,
  fileTcpRecord,
  fileTimerfdRecord,
  fileUnixRecord,
  fsRecord,
  ghostDataRecord,
  ghostFileRecord,
  pipeBufRecord,
  ptyRecord,
  unixPairRecord,
} from './records.js';
import { unixPairObject } from './unix-pair.js';

export { simpleDevice } from './devices.js';
export { epollFile, eventfdFile, signalfdFile, timerfdFile } from './event-files.js';
export { externalFile, isExternal } from './external.js';
export { fileObject, type RestoredFile, type SavedFile } from './file-object.js';
export { filesPhase } from './files.js';
export { major, minor } from './flags.js';
export { fsPhase } from './fs.js';
export {
  checkpointGhost,
  GHOST_LIMIT,
  GHOST_OBJECT,
  ghostFdInTask,
  ghostFile,
  ghostObject,
  type RestoredGhost,
  type SavedGhost,
} from './ghost.js';
export { fileHandlers, unsupported } from './handlers.js';
export { inotifyFile } from './inotify.js';
export { listenSocketFile } from './listen-socket.js';
export { netlinkSocketFile } from './netlink-socket.js';
export { pidfdFile } from './pidfd.js';
export { isTreePipe, pipeFile, pipeObject, type RestoredPipe } from './pipe.js';
export { isTreePty, ptyFile, ptyObject } from './pty.js';
export * from './records.js';
export { regularFile } from './regular.js';
export { tcpSocketFile } from './tcp-socket.js';
export { connectedUnix, unixPairFile, unixPairObject } from './unix-pair.js';

/** The files plugin: file and fs records, the `file` object type, the file handlers, the files and fs phases. */
export const fsPlugin: CkptPlugin = definePlugin({
  name: '@ckpt/fs',
  records: [
    fileTableRecord,
    fileDescRecord,
    fileRecord,
    fileNameRecord,
    fileExternalRecord,
    filePipeRecord,
    pipeBufRecord,
    fsRecord,
    ghostFileRecord,
    ghostDataRecord,
    fileGhostRecord,
    fileEventfdRecord,
    fileSignalfdRecord,
    fileEpollRecord,
    fileInotifyRecord,
    fileTimerfdRecord,
    fileSocketRecord,
    unixPairRecord,
    fileUnixRecord,
    ptyRecord,
    filePtyRecord,
    fileLocksRecord,
    filePidfdRecord,
    fileTcpRecord,
    fileNetlinkRecord,
    fileOwnerRecord,
  ],
  objects: [fileObject, pipeObject, ghostObject, unixPairObject, ptyObject],
  files: fileHandlers,
  phases: [filesPhase, fsPhase],
});

export default fsPlugin;
