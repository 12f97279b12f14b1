/**
 * Task state core owns: comm and other per-task values, signal state,
 * resource limits, the rseq registration, timers, scheduling attributes,
 * seccomp and cgroup membership, as eight phases and their records.
 */
import type { RecordKind } from '../codec/record.js';
import type { ObjectOps, TaskPhase } from '../registry.js';
import { cgroupsPhase } from './cgroups.js';
import { taskMiscPhase } from './misc.js';
import {
  cgroupsRecord,
  rlimitsRecord,
  rseqRecord,
  schedRecord,
  seccompFiltersRecord,
  seccompRecord,
  sighandRecord,
  signalRecord,
  sigpendingRecord,
  taskMiscRecord,
  timersRecord,
} from './records.js';
import { rlimitsPhase } from './rlimits.js';
import { rseqPhase } from './rseq.js';
import { schedPhase } from './sched.js';
import { seccompFiltersObject, seccompPhase } from './seccomp.js';
import { signalsPhase } from './signals.js';
import { timersPhase } from './timers.js';

export {
  type CgroupEntry,
  cgroupDir,
  cgroupsPhase,
  frozenCgroupOf,
  isFrozenCgroupDir,
  moveIntoCgroups,
  parseProcCgroup,
  readProcCgroup,
} from './cgroups.js';
export { taskMiscPhase } from './misc.js';
export * from './records.js';
export { rlimitsPhase } from './rlimits.js';
export { abortRseqCriticalSection, rseqAbortAddress, rseqPhase } from './rseq.js';
export {
  SECCOMP_FILTERS,
  type SeccompChain,
  seccompFiltersObject,
  seccompPhase,
} from './seccomp.js';
export { signalsPhase } from './signals.js';
export { parseProcTimers, timersPhase } from './timers.js';

/** The records of core's task state. */
export const taskStateRecords: readonly RecordKind[] = [
  taskMiscRecord,
  rlimitsRecord,
  sighandRecord,
  signalRecord,
  sigpendingRecord,
  rseqRecord,
  timersRecord,
  seccompRecord,
  seccompFiltersRecord,
  schedRecord,
  cgroupsRecord,
];

/** The phases of core's task state: task (100), cgroups (120), signals (400), rlimits (800), timers (850), sched (860), seccomp (880), rseq (950). */
export const taskStatePhases: readonly TaskPhase[] = [
  taskMiscPhase,
  cgroupsPhase,
  signalsPhase,
  rlimitsPhase,
  rseqPhase,
  timersPhase,
  schedPhase,
  seccompPhase,
];

/** The shared objects of core's task state: seccomp filter chains. */
export const taskStateObjects: readonly ObjectOps[] = [seccompFiltersObject];
