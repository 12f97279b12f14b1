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
import { taskRecord, treeRecord } from './engine/records.js';
import { definePlugin } from './registry.js';

/** The plugin that declares core's records. Always registered first. */
export const corePlugin = definePlugin({
  name: '@ckpt/core',
  records: [
    headerRecord,
    headerArchRecord,
    bufferRecord,
    stringRecord,
    objrefRecord,
    tailRecord,
    errorRecord,
  ],
});
