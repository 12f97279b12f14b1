/**
 * Records of the process tree and of each task's identity, owned by the
 * engine.
 */
import { defineRecord } from '../codec/record.js';
import { array, str, struct, u32, u64 } from '../codec/schema.js';
import { RecordType } from '../codec/types.js';

/** Task states saved in the tree and task records. */
export const TaskState = { RUNNING: 0, STOPPED: 1, ZOMBIE: 2 } as const;

const taskStateField = () => u32('dec', { 0: 'running', 1: 'stopped', 2: 'zombie' });

/**
 * One task of the tree, as linux-cr's `ckpt_pids` plus sessions. State,
 * exit status and comm are here, not only in the task record, because the tree is
 * built before any task record is read and a zombie must be dead by then
 * (its SIGCHLD has to reach its parent before the parent's signals are
 * restored).
 */
export const treeEntry = struct({
  pid: u32(),
  tgid: u32(),
  ppid: u32(),
  pgid: u32(),
  sid: u32(),
  /** Signal sent to the parent at exit (SIGCHLD for processes). */
  exitSignal: u32(),
  state: taskStateField(),
  /** A zombie's exit status in waitpid(2) form; 0 otherwise. */
  exitCode: u32(),
  /** Command name: a zombie gets it back before it exits. */
  comm: str(16),
  /** The pid at every pid-namespace level, outermost first (NSpid). */
  nsPids: array(u32(), 32),
  /**
   * The process group and session ids in the task's own (innermost) pid
   * namespace (0: outside it). A container's group whose leader has exited
   * is re-created with these ids inside.
   */
  nsPgid: u32(),
  nsSid: u32(),
  /**
   * 0 when the task's new children go to its own pid namespace; otherwise
   * the saved pid of the init of the nested namespace they go to (the task
   * called unshare(CLONE_NEWPID), as `unshare --pid --fork` does).
   */
  pidNsOfChildren: u32(),
  /**
   * Clone flags of what the task shares with its parent (CLONE_FILES: the
   * fd table, CLONE_FS: cwd, root and umask); restart creates it sharing them.
   */
  shares: u32('hex'),
  /**
   * The task's time namespace and the one its new children go to: 0 for
   * ckpt's own, k for the tree record's `timeNamespaces[k-1]` (see
   * time-ns.ts). Different when the task made a namespace for its children.
   */
  timeNs: u32(),
  timeNsOfChildren: u32(),
  /**
   * For a session leader whose controlling terminal is /dev/pts/N, a pty
   * the tree holds the master of: 1 + N (restart gives the leader a new
   * pty before its children exist); 0 otherwise.
   */
  ctty: u32(),
  /**
   * The process's threads other than its leader, ascending by thread id:
   * each one's id at every pid-namespace level, outermost first. Restart
   * creates them with the process, with these ids.
   */
  threads: array(struct({ nsTids: array(u32(), 32) }), 1 << 16),
});

/** The process tree in depth-first order; tasks are restored in this order. */
export const treeRecord = defineRecord(RecordType.TREE, 'tree', 'process tree (depth-first)', {
  tasks: array(treeEntry, 1 << 16),
  /**
   * The time namespaces the tree made: CLOCK_MONOTONIC and CLOCK_BOOTTIME
   * inside each when the tree was frozen, in nanoseconds (restart's new
   * namespaces continue from them).
   */
  timeNamespaces: array(struct({ monotonic: u64(), boottime: u64() }), 1 << 16),
});

/** Identity and scheduling-independent state of one task, before its phases. */
export const taskRecord = defineRecord(RecordType.TASK, 'task', 'task identity', {
  pid: u32(),
  comm: str(16),
  state: taskStateField(),
  exitCode: u32(),
  /** /proc/PID/stat flags (PF_*). */
  flags: u32('hex'),
  /** Time the task was frozen, for the relative model of restart blocks. */
  frozenAtNs: u64(),
});

/**
 * One thread of a multi-threaded process other than its leader: written
 * after the process's phases, and followed by the per-thread records of
 * the phases that have them (`TaskPhase.checkpointThread`).
 */
export const threadRecord = defineRecord(RecordType.THREAD, 'thread', 'thread identity', {
  /** Thread id, in the checkpointer's pid namespace. */
  tid: u32(),
  /** Its pid's tid at checkpoint (the process it belongs to). */
  tgid: u32(),
});
