/**
 * Records of the process tree and of each task's identity, owned by the
 * engine.
 */
import { defineRecord } from '../codec/record.js';
import { array, str, struct, u32, u64 } from '../codec/schema.js';
import { RecordType } from '../codec/types.js';

/** One task of the tree, as linux-cr's `ckpt_pids` plus sessions. */
export const treeEntry = struct({
  pid: u32(),
  tgid: u32(),
  ppid: u32(),
  pgid: u32(),
  sid: u32(),
  /** Signal sent to the parent at exit (SIGCHLD for processes). */
  exitSignal: u32(),
  /** The pid at every pid-namespace level, outermost first (NSpid). */
  nsPids: array(u32(), 32),
});

/** The process tree in depth-first order; tasks are restored in this order. */
export const treeRecord = defineRecord(RecordType.TREE, 'tree', 'process tree (depth-first)', {
  tasks: array(treeEntry, 1 << 16),
});

/** Task states saved in the task record. */
export const TaskState = { RUNNING: 0, STOPPED: 1, ZOMBIE: 2 } as const;

/** Identity and scheduling-independent state of one task, before its phases. */
export const taskRecord = defineRecord(RecordType.TASK, 'task', 'task identity', {
  pid: u32(),
  comm: str(16),
  state: u32('dec', { 0: 'running', 1: 'stopped', 2: 'zombie' }),
  exitCode: u32(),
  /** /proc/PID/stat flags (PF_*). */
  flags: u32('hex'),
  /** Time the task was frozen, for the relative model of restart blocks. */
  frozenAtNs: u64(),
});
