/**
 * Readers and parsers for the /proc files a checkpointer needs.
 *
 * Each file has a pure `parseX(text)` (tested on captured samples) and a
 * synchronous `readX(pid)` that reads the live file. Every failure is a
 * CkptError: `ESRCH` when the process is gone, `ENOENT` when only
 * the entry is (a closed fd, a zombie's links), `EPERM`, or `EINVAL`
 * naming the file whose content could not be parsed.
 *
 * @packageDocumentation
 */

export {
  type Fdinfo,
  type FdStat,
  type FdTarget,
  type FileType,
  listFds,
  O_CLOEXEC,
  type OpenFile,
  parseFdinfo,
  parseFdTarget,
  readEachFd,
  readFdinfo,
  readFdTarget,
  readOpenFiles,
  statFd,
} from './fdinfo.js';
export {
  type MapsEntry,
  mapFilesPath,
  mapsFilePath,
  parseMaps,
  parseMapsLine,
  readMaps,
  type VmaKind,
} from './maps.js';
export {
  type CgroupMount,
  cgroupMounts,
  type Mount,
  parseMounts,
  unescapeMountinfo,
} from './mountinfo.js';
export {
  NamespaceCache,
  type NsLink,
  type NsType,
  nsPath,
  ownNamespace,
  parseNsLink,
  readNamespace,
  readNamespaces,
} from './ns.js';
export {
  decodePagemapEntry,
  openPagemapFile,
  PAGE_SIZE,
  type PagemapEntry,
  type PagemapFile,
  type PageRun,
  type PageRunOptions,
  pageRuns,
  readPagemap,
  readPageRuns,
} from './pagemap.js';
export {
  parseSmaps,
  parseSmapsFlags,
  parseSmapsRollup,
  readSmaps,
  readSmapsFlags,
  readSmapsRollup,
  type SmapsEntry,
  type SmapsFlagsEntry,
  type SmapsRollup,
  type SmapsSizes,
  VM_FLAG_MEANINGS,
} from './smaps.js';
export {
  type ProcStat,
  type ProcStatBrief,
  parseStat,
  parseStatBrief,
  readStat,
  readStatBrief,
} from './stat.js';
export { type IdSet, type ProcStatus, parseStatus, readStatus } from './status.js';
export {
  type AuxvEntry,
  commForMessage,
  parseAuxv,
  parseNulList,
  parsePersonality,
  readAuxv,
  readCmdline,
  readComm,
  readCwd,
  readEnviron,
  readExe,
  readPersonality,
  readRoot,
  readTimerslackNs,
} from './task.js';
export { collectSubtree, type ProcessInfo, scanProcesses, threadsOf } from './tree.js';
