/**
 * Posted calls (`TaskSyscalls.post`) whose data does not fit the scratch
 * room at once: they run in consecutive groups that each fit, a post split
 * between two groups where its calls allow it. One post may carry a part
 * for each of thousands of fds (an epoll's targets: 12 bytes each), more
 * than the restorer's three pages of scratch hold.
 */
import type { PostOptions, SyscallRequest } from '../task.js';

/** Posted calls, as the engine keeps them until they run. */
export type Post = PostOptions & { readonly calls: readonly SyscallRequest[] };

/** Bytes a part of `n` bytes takes in the scratch area (8-byte aligned). */
export const aligned = (n: number) => Math.ceil(n / 8) * 8;

/** Bytes the data parts of a post take in the scratch area. */
export function dataSize(data: readonly Buffer[] | undefined): number {
  return (data ?? []).reduce((b, d) => b + aligned(d.length), 0);
}

/** Whether a group of `calls` calls with `bytes` bytes of data fits. */
export type Fits = (calls: number, bytes: number) => boolean;

/**
 * How many of `posts`, from the first, make the next group: as many as
 * `fits` takes. A post that does not fit whole is split in place (into
 * two posts, the first of which is in the group) where it can be; 0 when
 * not even the first post's first part fits.
 */
export function takeFitting(posts: Post[], fits: Fits): number {
  let calls = 0;
  let bytes = 0;
  for (let i = 0; i < posts.length; i++) {
    const p = posts[i]!;
    const n = p.calls.length;
    const b = dataSize(p.data);
    if (fits(calls + n, bytes + b)) {
      calls += n;
      bytes += b;
      continue;
    }
    const k = largestSplit(p, (c, d) => fits(calls + c, bytes + d));
    if (k === undefined) return i;
    posts.splice(i, 1, ...splitPost(p, k));
    return i + 1;
  }
  return posts.length;
}

/** The data part an argument names, or the call whose result it takes. */
function refs(call: SyscallRequest): { data: number[]; results: number[] } {
  const data: number[] = [];
  const results: number[] = [];
  for (const a of call.args) {
    if (typeof a !== 'object') continue;
    if ('data' in a) data.push(a.data);
    else results.push(a.result);
  }
  return { data, results };
}

/**
 * Where the tail of `post` starts when split before call `k`: the first
 * data part it uses (or the end of the data). Undefined when the post
 * cannot be split there: a later call takes an earlier call's result, or
 * a data part both halves use or one out of order.
 */
function splitPoints(post: Post): ({ part: number; bytes: number } | undefined)[] {
  const n = post.calls.length;
  const parts = post.data?.length ?? 0;
  const all = post.calls.map(refs);
  // From the end: the lowest data part and result the calls from k on use.
  const minData: number[] = new Array(n + 1).fill(parts);
  const minResult: number[] = new Array(n + 1).fill(n);
  for (let k = n - 1; k >= 0; k--) {
    minData[k] = Math.min(minData[k + 1]!, ...all[k]!.data);
    minResult[k] = Math.min(minResult[k + 1]!, ...all[k]!.results);
  }
  // Bytes of the data parts before part i.
  const before = [0];
  for (const d of post.data ?? []) before.push(before[before.length - 1]! + aligned(d.length));
  const points: ({ part: number; bytes: number } | undefined)[] = [undefined];
  let maxData = -1;
  for (let k = 1; k < n; k++) {
    maxData = Math.max(maxData, ...all[k - 1]!.data);
    const part = minData[k]!;
    const ok = minResult[k]! >= k && maxData < part;
    points.push(ok ? { part, bytes: before[part]! } : undefined);
  }
  return points;
}

/** The largest k (1 ≤ k < calls) where `post` splits into a first part that `fits`. */
function largestSplit(post: Post, fits: Fits): number | undefined {
  let best: number | undefined;
  const points = splitPoints(post);
  for (let k = 1; k < points.length; k++) {
    const at = points[k];
    if (!at) continue;
    // Both grow with k: past the first that does not fit, none does.
    if (!fits(k, at.bytes)) break;
    best = k;
  }
  return best;
}

/**
 * `post` as two posts, calls before `k` and from `k` on (see
 * {@link splitPoints}). The first keeps its results; the second hands them
 * all, with every data part, to the post's `done`: it runs once, when
 * every call ran, as for the post whole.
 */
export function splitPost(post: Post, k: number): [Post, Post] {
  const at = splitPoints(post)[k];
  if (!at) throw new RangeError(`a post of ${post.calls.length} calls cannot be split at ${k}`);
  const data = post.data ?? [];
  let first: { results: readonly bigint[]; data: readonly Buffer[] } | undefined;
  const head: Post = {
    calls: post.calls.slice(0, k),
    data: data.slice(0, at.part),
    readBack: post.readBack,
    done: (results, back) => {
      first = { results, data: back };
    },
  };
  const tail: Post = {
    calls: post.calls.slice(k).map((c) => ({
      ...c,
      args: c.args.map((a) =>
        typeof a !== 'object'
          ? a
          : 'data' in a
            ? { ...a, data: a.data - at.part }
            : { result: a.result - k },
      ),
    })),
    data: data.slice(at.part),
    readBack: post.readBack,
    done: (results, back) => {
      post.done?.([...(first?.results ?? []), ...results], [...(first?.data ?? []), ...back]);
    },
  };
  return [head, tail];
}
