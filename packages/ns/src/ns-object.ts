/**
 * What the uts and ipc namespaces have in common: one object per namespace,
 * saved as one record through the objhash (keyed by its nsfs inode) and
 * referenced by objref from each task's `ns` record; at restart the first
 * task that references it applies the saved settings, every other task
 * inherits them. A subtree stays in the host's namespace, which is never
 * changed; in a container only the init's namespace can be restored yet.
 */
import {
  type CheckpointCtx,
  CheckpointFlags,
  CkptError,
  type ObjectOps,
  type RecordSchema,
  type RestartCtx,
  type RestartTask,
} from '@ckpt/core';

/** A restored namespace: its saved settings, and whether a task has applied them yet. */
export interface RestoredNs<T> {
  saved: T;
  applied: boolean;
}

/** The ObjectOps of a namespace saved as one `record`. */
export function namespaceObject<T extends object>(spec: {
  name: string;
  id: number;
  record: RecordSchema<T>;
  /** For messages: what identifies the namespace to a person. */
  describe: (saved: T) => string;
}): ObjectOps<T | RestoredNs<T>> {
  return {
    name: spec.name,
    id: spec.id,
    checkpoint(ctx, obj) {
      ctx.write(spec.record, obj as T);
    },
    restore(ctx) {
      return { saved: ctx.read(spec.record), applied: false };
    },
    describe(obj) {
      return spec.describe('applied' in obj ? obj.saved : obj);
    },
  };
}

/**
 * Save the namespace of object type `type` whose nsfs inode is `inode`
 * (once per image: `read` runs only the first time) and return its objref.
 */
export function checkpointNamespace<T>(
  ctx: CheckpointCtx,
  type: string,
  inode: number,
  read: () => T,
): number {
  const key = String(inode);
  return ctx.checkpointObj(type, key, ctx.objhash.lookup(type, key) ? undefined : read());
}

/**
 * Restore the namespace `objref` (of object type `type`, a `kind`
 * namespace) for `task`: nothing if an earlier task applied it; in a
 * subtree, `inHost` (which must not change the host's namespace); in a
 * container, `apply` by its init, and a refusal for any other task.
 * @throws CkptError ENOTSUP for a container task in a namespace of its own
 */
export function restoreNamespace<T>(
  ctx: RestartCtx,
  task: RestartTask,
  objref: number,
  type: string,
  kind: string,
  how: { inHost: (saved: T) => void; apply: (saved: T) => void },
): void {
  const restored = ctx.fetchObj<RestoredNs<T>>(objref, type);
  if (restored.applied) return; // shared: the task inherited it from its parent
  if (!ctx.has(CheckpointFlags.CONTAINER)) {
    how.inHost(restored.saved);
  } else if (ctx.active !== 0) {
    throw new CkptError(
      'ENOTSUP',
      `pid ${task.savedPid} is in a ${kind} namespace other than the container's init; not supported yet`,
      { pid: task.savedPid },
    );
  } else {
    how.apply(restored.saved);
  }
  restored.applied = true;
}
