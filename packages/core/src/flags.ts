/**
 * User flags stored in the image header (`uflags`) and the engine's
 * internal flags (`kflags`), as linux-cr split them.
 */

/** Flags the user chose for a checkpoint. */
export const CheckpointFlags = {
  /** Checkpoint a subtree, not a whole container (`CHECKPOINT_SUBTREE`). */
  SUBTREE: 1n << 0n,
  /** Kill the tree once the image is complete. */
  KILL: 1n << 1n,
  /** Leave the tree stopped once the image is complete. */
  LEAVE_STOPPED: 1n << 2n,
  /** The root was a pid-namespace init: a whole container. */
  CONTAINER: 1n << 3n,
} as const;

/** Flags the user chose for a restart. */
export const RestartFlags = {
  /** Leave restored tasks stopped (`RESTART_FROZEN`). */
  FROZEN: 1n << 0n,
  /** Return once the tree runs instead of waiting for it. */
  DETACH: 1n << 1n,
  /** Restore under new pids instead of the original ones. */
  NO_PIDS: 1n << 2n,
} as const;

/** Internal state flags of a context. */
export const ContextFlags = {
  CHECKPOINT: 1 << 0,
  RESTART: 1 << 1,
  /** The first error has been recorded; work is unwinding. */
  ERROR: 1 << 2,
  /** The image tail was written or verified. */
  SUCCESS: 1 << 3,
} as const;
