/**
 * @ckpt/core — the checkpoint/restart engine's core: the image codec, the
 * context, the objhash and deferqueue, the ops tables and plugin API, and
 * typed errors. Subsystem packages plug into it; it imports none of them.
 *
 * @packageDocumentation
 */

export type * from './arch.js';
export * from './codec/core-records.js';
export * from './codec/crc.js';
export * from './codec/io.js';
export * from './codec/reader.js';
export * from './codec/record.js';
export * from './codec/schema.js';
export * from './codec/types.js';
export * from './codec/writer.js';
export * from './context.js';
export * from './core-plugin.js';
export * from './deferqueue.js';
export * from './engine/check.js';
export * from './engine/checkpoint.js';
export {
  PTY_MASTER_PATHS,
  ptsIndexOfDevice,
  ptsIndexOfTtyNr,
  type SessionPty,
  takeSessionPty,
} from './engine/ctty.js';
export * from './engine/fd-transfer.js';
export * from './engine/freezer.js';
export * from './engine/injected-read.js';
export * from './engine/leaks.js';
export * from './engine/records.js';
export * from './engine/restart.js';
export * from './engine/run.js';
export * from './engine/shared-structs.js';
export { readMemoryRanges } from './engine/syscalls.js';
export * from './engine/task-io.js';
export * from './engine/tree-view.js';
export * from './errors.js';
export * from './flags.js';
export * from './image.js';
export * from './kernel/index.js';
export * from './log.js';
export * from './objhash.js';
export * from './proc/index.js';
export * from './registry.js';
export type * from './task.js';
export * from './taskstate/index.js';
