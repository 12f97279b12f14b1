/**
 * Task state core owns: comm and other per-task values, signal state,
 * resource limits and the rseq registration, as four phases and their
 * records.
 */
import type { RecordKind } from '../codec/record.js';
import type { TaskPhase } from '../registry.js';
import { taskMiscPhase } from './misc.js';
import {
  rlimitsRecord,
  rseqRecord,
  sighandRecord,
  signalRecord,
  sigpendingRecord,
  taskMiscRecord,
} from './records.js';
import { rlimitsPhase } from './rlimits.js';
import { rseqPhase } from './rseq.js';
import { signalsPhase } from './signals.js';

export { taskMiscPhase } from './misc.js';
export * from './records.js';
export { rlimitsPhase } from './rlimits.js';
export { abortRseqCriticalSection, rseqAbortAddress, rseqPhase } from './rseq.js';
export { signalsPhase } from './signals.js';

/** The records of core's task state. */
export const taskStateRecords: readonly RecordKind[] = [
  taskMiscRecord,
  rlimitsRecord,
  sighandRecord,
  signalRecord,
  sigpendingRecord,
  rseqRecord,
];

/** The phases of core's task state: task (100), signals (400), rlimits (800), rseq (950). */
export const taskStatePhases: readonly TaskPhase[] = [
  taskMiscPhase,
  signalsPhase,
  rlimitsPhase,
  rseqPhase,
];
