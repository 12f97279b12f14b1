/**
 * The objhash (the seed's "infrastructure for shared objects"): every object
 * shared between tasks is saved once. At checkpoint it is keyed by its
 * kernel identity (a pipe's inode, a namespace's inode, a kcmp class) and
 * gets an objref in order of first appearance; later encounters write only
 * the objref. At restart, objrefs map back to recreated objects. The hash is
 * one-way: nothing is removed until the whole hash is discarded.
 */
import { CkptError } from './errors.js';

/** One object in the hash. */
export interface ObjEntry<T = unknown> {
  /** Positive identifier, assigned in order of first appearance. */
  readonly objref: number;
  /** Object type name (as registered in the ops table). */
  readonly type: string;
  /** Kernel identity at checkpoint (undefined for restart entries). */
  readonly key?: string;
  readonly obj: T;
  /** References found from the checkpointed tree (leak detection). */
  users: number;
  /** Written to the image already (CKPT_OBJ_CHECKPOINTED). */
  checkpointed: boolean;
}

/** The shared-object hash of one checkpoint or restart. */
export class ObjHash {
  private readonly byKey = new Map<string, ObjEntry>();
  private readonly byRef = new Map<number, ObjEntry>();
  private lastRef = 0;

  /** Number of objects held. */
  get size(): number {
    return this.byRef.size;
  }

  private static fullKey(type: string, key: string): string {
    return `${type}\0${key}`;
  }

  /** Find an object by type and kernel identity. */
  lookup<T>(type: string, key: string): ObjEntry<T> | undefined {
    return this.byKey.get(ObjHash.fullKey(type, key)) as ObjEntry<T> | undefined;
  }

  /**
   * Find or add an object by kernel identity and count one more user.
   * `isNew` tells whether this was the first encounter.
   */
  track<T>(type: string, key: string, obj: T): { entry: ObjEntry<T>; isNew: boolean } {
    const found = this.lookup<T>(type, key);
    if (found) {
      found.users++;
      return { entry: found, isNew: false };
    }
    const entry: ObjEntry<T> = {
      objref: ++this.lastRef,
      type,
      key,
      obj,
      users: 1,
      checkpointed: false,
    };
    this.byKey.set(ObjHash.fullKey(type, key), entry);
    this.byRef.set(entry.objref, entry);
    return { entry, isNew: true };
  }

  /** Restart side: register the object recreated for `objref`. */
  insert<T>(objref: number, type: string, obj: T): ObjEntry<T> {
    if (!Number.isInteger(objref) || objref <= 0) {
      throw new CkptError('EBADOBJREF', `invalid objref ${objref} for a ${type} object`);
    }
    if (this.byRef.has(objref)) {
      throw new CkptError('EBADOBJREF', `objref ${objref} is defined twice in the image`);
    }
    const entry: ObjEntry<T> = { objref, type, obj, users: 1, checkpointed: true };
    this.byRef.set(objref, entry);
    this.lastRef = Math.max(this.lastRef, objref);
    return entry;
  }

  /** Find an entry by objref, or undefined. */
  get<T>(objref: number): ObjEntry<T> | undefined {
    return this.byRef.get(objref) as ObjEntry<T> | undefined;
  }

  /**
   * Fetch the object for `objref`, which must exist and be of `type`.
   * Throws EBADOBJREF naming the objref otherwise.
   */
  fetch<T>(objref: number, type: string): T {
    const entry = this.byRef.get(objref);
    if (!entry) {
      throw new CkptError(
        'EBADOBJREF',
        `objref ${objref} (${type}) is referenced but was never defined in the image`,
      );
    }
    if (entry.type !== type) {
      throw new CkptError(
        'EBADOBJREF',
        `objref ${objref} refers to a ${entry.type} object where a ${type} was expected`,
      );
    }
    return entry.obj as T;
  }

  /** All entries in objref order. */
  entries(): ObjEntry[] {
    return [...this.byRef.values()].sort((a, b) => a.objref - b.objref);
  }

  /** Discard everything (the end of a checkpoint or restart). */
  clear(): void {
    this.byKey.clear();
    this.byRef.clear();
    this.lastRef = 0;
  }
}
