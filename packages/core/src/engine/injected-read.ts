/**
 * Values a checkpoint phase reads with injected calls. The phase's
 * `prepare` posts the calls, so they run with every other phase's in one
 * round trip per task, all tasks at once; `get` gives the value, running
 * the calls on the spot when nothing posted them (a phase called on its
 * own, in a test or by a plugin).
 */
import { CkptError } from '../errors.js';
import type { CheckpointTask } from '../task.js';

/** Marks a read that is posted and has not run yet. */
const PENDING = Symbol('posted read pending');

/**
 * One value read in a task by posted injected calls, kept in `task.data`
 * under `key`.
 * @example
 * const dumpable = new InjectedRead<number>('creds:dumpable', (task, done) =>
 *   task.sys.postChecked([{ name: 'prctl', args: [3, 0, 0, 0, 0], what: 'reading dumpable' }], {
 *     done: ([r]) => done(Number(r)),
 *   }),
 * );
 * // prepare(ctx, task) { dumpable.post(task) }   checkpoint(ctx, task) { dumpable.get(task) }
 */
export class InjectedRead<T> {
  /**
   * @param key where the value is kept in `task.data`
   * @param postCalls posts the calls and has their `done` hand the value to `done`
   */
  constructor(
    readonly key: string,
    private readonly postCalls: (task: CheckpointTask, done: (value: T) => void) => void,
  ) {}

  /** Post the calls (once per task). */
  post(task: CheckpointTask): void {
    if (task.data.has(this.key)) return;
    task.data.set(this.key, PENDING);
    this.postCalls(task, (value) => task.data.set(this.key, value));
  }

  /** The value, running the posted calls now if they have not run. */
  get(task: CheckpointTask): T {
    this.post(task);
    if (task.data.get(this.key) === PENDING) task.sys.batch([]);
    const value = task.data.get(this.key);
    if (value === PENDING) {
      throw new CkptError(
        'EINVAL',
        `pid ${task.pid}: the calls posted for ${this.key} never gave it`,
        {
          pid: task.pid,
        },
      );
    }
    return value as T;
  }
}
