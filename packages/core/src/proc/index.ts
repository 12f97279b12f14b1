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
export { type ProcStat, parseStat, readStat } from './stat.js';
export { type IdSet, type ProcStatus, parseStatus, readStatus } from './status.js';
export {
  type MapsEntry,
  type VmaKind,
  mapsFilePath,
  parseMaps,
  parseMapsLine,
  readMaps,
} from './maps.js';
export {
  type SmapsEntry,
  type SmapsRollup,
  type SmapsSizes,
  VM_FLAG_MEANINGS,
  parseSmaps,
  parseSmapsRollup,
  readSmaps,
  readSmapsRollup,
} from './smaps.js';
export {
  PAGE_SIZE,
  type PageRun,
  type PageRunOptions,
  type PagemapEntry,
  decodePagemapEntry,
  pageRuns,
  readPageRuns,
  readPagemap,
} from './pagemap.js';
export {
  type FdStat,
  type FdTarget,
  type Fdinfo,
  type FileType,
  O_CLOEXEC,
  type OpenFile,
  listFds,
  parseFdTarget,
  parseFdinfo,
  readFdTarget,
  readFdinfo,
  readOpenFiles,
  statFd,
} from './fdinfo.js';
export {
  type NsLink,
  type NsType,
  nsPath,
  parseNsLink,
  readNamespace,
  readNamespaces,
} from './ns.js';
export { type ProcessInfo, collectSubtree, scanProcesses, threadsOf } from './tree.js';
export {
  type AuxvEntry,
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
