/**
 * Round trips into many tasks at once. A round trip into a stopped task
 * (resume it into ckpt's code, wait until it stops again) costs mostly the
 * wake-ups between ckpt and the task; started together, the tasks run
 * while ckpt starts and collects the others, so a tree costs about one
 * round trip's latency plus the work, not the sum of the latencies.
 */
import type { Finish } from '../kernel/inject.js';

/**
 * Call `start(item)` for every item (it resumes the item's task and
 * returns the step that waits for it), then every returned step, in order.
 * Every started task is waited for even after a failure, so that none is
 * left running ckpt's code; then the first failure is thrown, or, with
 * `onError`, each is handed to it instead.
 */
export function allAtOnce<T>(
  items: readonly T[],
  start: (item: T) => Finish<unknown> | undefined,
  onError?: (item: T, error: unknown) => void,
): void {
  let failure: { error: unknown } | undefined;
  const fail = (item: T, error: unknown) => {
    if (onError) onError(item, error);
    else failure ??= { error };
  };
  const started: [T, Finish<unknown>][] = [];
  for (const item of items) {
    try {
      const finish = start(item);
      if (finish) started.push([item, finish]);
    } catch (e) {
      fail(item, e);
      if (!onError) break;
    }
  }
  for (const [item, finish] of started) {
    try {
      finish();
    } catch (e) {
      fail(item, e);
    }
  }
  if (failure) throw failure.error;
}
