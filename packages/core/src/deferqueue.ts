/**
 * Work postponed to the end of a checkpoint or restart (the seed's
 * deferqueue): e.g. deleting an IPC segment that had to be created and
 * attached first. `run()` executes works in order and stops at the first
 * error; `destroy()` calls `dtor` only for works that never ran.
 */

/** A deferred work item. */
export interface DeferredWork<D> {
  data: D;
  fn: (data: D) => void;
  dtor?: (data: D) => void;
}

/** A queue of deferred works. */
export class DeferQueue {
  private queue: DeferredWork<any>[] = [];

  /** Number of works waiting. */
  get size(): number {
    return this.queue.length;
  }

  /** Enqueue `fn(data)`; `dtor(data)` runs instead if the work never runs. */
  add<D>(data: D, fn: (data: D) => void, dtor?: (data: D) => void): void {
    this.queue.push({ data, fn, dtor });
  }

  /**
   * Run pending works in order. Returns how many ran, or throws the first
   * error. A work is dequeued before it runs, so its dtor is never called
   * afterwards, whatever `fn` returned or threw.
   */
  run(): number {
    let count = 0;
    for (;;) {
      const work = this.queue.shift();
      if (!work) return count;
      count++;
      work.fn(work.data);
    }
  }

  /** Drop every pending work, calling its dtor. */
  destroy(): void {
    const left = this.queue;
    this.queue = [];
    for (const work of left) work.dtor?.(work.data);
  }
}
