/**
 * The kernel interface: libc through koffi, ptrace, freezing, memory
 * access, syscall injection, pidfds, kcmp, prctl, setns and process
 * spawning.
 */
export type { Marker, SyscallConvention } from './convention.js';
export { readDirQuietly } from './dir-entries.js';
export { readAt, writeAt } from './file-io.js';
export { setFileTimes } from './file-times.js';
export { F_OWNER_PGRP, F_OWNER_PID, F_OWNER_TID, type FileOwner, fileOwner } from './fown.js';
export {
  awaitFrozen,
  type FreezeOptions,
  type FrozenTask,
  freezeTask,
  type SeizedTask,
  seizeTask,
  type UnfreezeMode,
  unfreezeProcess,
  unfreezeTask,
} from './freeze.js';
export { pathOfHandle } from './handle.js';
export {
  type Finish,
  findLeftoverParasites,
  findSyscallInsn,
  type InjectorOptions,
  injectSyscall,
  isSyscallError,
  PARASITE_MAGIC,
  SyscallInjector,
} from './inject.js';
export {
  DescriptionIndex,
  type FdRef,
  KCMP,
  type KcmpType,
  kcmp,
  sameFile,
} from './kcmp.js';
export { errnoName, errnoText } from './libc.js';
export { type GuardedSocket, guardLockedConnections, startTimeOf } from './lock-guardian.js';
export { addSeals, getSeals, memfdCreate } from './memfd.js';
export {
  type MemRange,
  type MemWrite,
  ProcMem,
  readMemory,
  readRanges,
  writeMemory,
  writeRanges,
  writeScattered,
} from './memory.js';
export {
  isMessageQueueFd,
  type ListedQueue,
  type MqAttr,
  type MqMessage,
  mqAttr,
  mqCreate,
  mqList,
  mqNotifyPid,
  mqOpenExisting,
  mqPutAll,
  mqTakeAll,
  mqUnlink,
  withMq,
} from './mqueue.js';
export {
  type LockedConnection,
  lockConnections,
  lockedConnectionCount,
  probeNetLock,
  unlockConnections,
} from './net-lock.js';
export { makeNode } from './nodes.js';
export { grabFd, pidfdGetfd, pidfdOpen, withFdCopy } from './pidfd.js';
export { F_GETPIPE_SZ, F_SETPIPE_SZ, fcntl, pipe2, SPLICE_F_NONBLOCK, tee } from './pipe.js';
export {
  decodePrctlMmMap,
  encodePrctlMmMap,
  PR,
  PR_SET_MM,
  PRCTL_MM_MAP_SIZE,
  type PrctlMmMap,
  prctl,
} from './prctl.js';
export {
  cont,
  detach,
  getEventMsg,
  getRegset,
  getRseqConfig,
  getSiginfo,
  getSigmask,
  getSyscallInfo,
  interrupt,
  listen,
  NT,
  PTRACE,
  PTRACE_EVENT,
  PTRACE_O,
  peekSiginfo,
  peekUser,
  pokeUser,
  type RseqConfig,
  SIGINFO_SIZE,
  type SyscallInfo,
  seize,
  setOptions,
  setRegset,
  setSiginfo,
  setSigmask,
  singlestep,
  syscallStep,
} from './ptrace.js';
export { dataChunks, dataRanges, type FileChunk, type FileRange } from './seek.js';
export {
  inNamespace,
  inNamespaceOf,
  inNewNamespace,
  openNamespace,
  type ThreadNsType,
} from './setns.js';
export { processExists, sendSignal, sendThreadSignal } from './signal.js';
export {
  endTcpTimeWait,
  tcpListenBacklogs,
  type UnixSocketDiag,
  unixSockets,
} from './sock-diag.js';
export {
  attachSocketFilter,
  bindSocket,
  bindToDevice,
  boundDevice,
  bringInterfaceUp,
  connectSocket,
  interfaceIsUp,
  peekSocket,
  peekUnixQueue,
  setSocketOption,
  shutdownReading,
  socketFilter,
  socketName,
  socketOption,
  socketOptionBytes,
  socketPeer,
  withNewSocket,
} from './sockets.js';
export { type SpawnOptions, type StdioTarget, spawnDetached, spawnProcess } from './spawn.js';
export {
  type IpcPerm,
  listSysvIpc,
  msgCreate,
  msgCreatePrivate,
  msgPeekAll,
  msgQueueState,
  msgSend,
  parseSysvIpc,
  removeIpc,
  SHM_DEST,
  SHM_LOCKED,
  type SysvIpcEntry,
  type SysvIpcKind,
  type SysvMessage,
  semCreate,
  semValues,
  setIpcPerm,
  setNextIpcId,
  shmAttach,
  shmCreate,
  shmDetach,
  shmLock,
} from './sysvipc.js';
export {
  readTcpState,
  sendUnsent,
  setTcpRepair,
  TCP_ESTABLISHED,
  TcpRepair,
  type TcpState,
  tcpStateOf,
  writeTcpState,
} from './tcp-repair.js';
export { taskClockNs } from './timens.js';
export {
  foregroundGroup,
  getTermios,
  getWinsize,
  packetMode,
  ptyIndex,
  ptyIndexOf,
  ptyLocked,
  rawOutput,
  readableBytes,
  setForegroundGroup,
  setPacketMode,
  setPtyLocked,
  setTermios,
  setWinsize,
  TERMIOS2_SIZE,
} from './tty.js';
export { USERFAULTFD_FLAGS, Userfaultfd } from './uffd.js';
export { unreadBytes } from './unread.js';
export {
  __WALL,
  decodeWaitStatus,
  describeEnd,
  reap,
  reapIfEnded,
  reapIfEndedOrStopped,
  type WaitOptions,
  type WaitStatus,
  waitForStop,
  waitStop,
} from './wait.js';
