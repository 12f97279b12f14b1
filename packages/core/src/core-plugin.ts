/**
 * Core registers its own records through the same plugin API that
 * subsystems and third parties use.
 */
import {
  bufferRecord,
  errorRecord,
  headerArchRecord,
  headerRecord,
  objrefRecord,
  stringRecord,
  tailRecord,
} from './codec/core-records.js';
import { taskRecord, threadRecord, treeRecord } from './engine/records.js';
import { definePlugin } from './registry.js';
import { taskStateObjects, taskStatePhases, taskStateRecords } from './taskstate/index.js';

/**
 * The plugin that declares core's records and the phases of the task state
 * core owns (comm & co., signals, rlimits, timers, seccomp, rseq). Always
 * registered first.
 */
export const corePlugin = definePlugin({
  name: '@ckpt/core',
  records: [
    headerRecord,
    headerArchRecord,
    bufferRecord,
    stringRecord,
    objrefRecord,
    treeRecord,
    taskRecord,
    threadRecord,
    tailRecord,
    errorRecord,
    ...taskStateRecords,
  ],
  phases: taskStatePhases,
  objects: taskStateObjects,
});
