import { describe, expect, it } from 'vitest';
import { type Post, splitPost, takeFitting } from '../../src/engine/posted-groups.js';

/** An epoll-like post: call i adds fd i with its 12-byte struct, data part i. */
function epollPost(n: number, done?: Post['done']): Post {
  return {
    calls: Array.from({ length: n }, (_, i) => ({
      name: 'epoll_ctl' as const,
      args: [3, 1, i, { data: i }],
    })),
    data: Array.from({ length: n }, (_, i) => Buffer.alloc(12, i)),
    done,
  };
}

describe('posted calls in groups that fit the scratch room', () => {
  it('takes every post when all fit', () => {
    const posts = [epollPost(3), epollPost(2)];
    expect(takeFitting(posts, (_n, b) => b <= 1000)).toBe(2);
    expect(posts).toHaveLength(2);
  });

  it('splits a post too large for the room, data and results handed on whole', () => {
    const seen: { results: readonly bigint[]; data: readonly Buffer[] }[] = [];
    const posts = [epollPost(1000, (results, data) => seen.push({ results, data }))];
    // 16 bytes a part: 100 parts fit 1600 bytes.
    expect(takeFitting(posts, (_n, b) => b <= 1600)).toBe(1);
    expect(posts).toHaveLength(2);
    const [head, tail] = posts as [Post, Post];
    expect(head.calls).toHaveLength(100);
    expect(head.data).toHaveLength(100);
    expect(tail.calls).toHaveLength(900);
    // The tail's calls name its own parts, from 0.
    expect(tail.calls[0]!.args).toEqual([3, 1, 100, { data: 0 }]);
    expect(tail.data![0]![0]).toBe(100);
    head.done!(
      head.calls.map(() => 0n),
      [],
    );
    expect(seen).toHaveLength(0);
    tail.done!(
      tail.calls.map(() => 1n),
      [],
    );
    expect(seen).toHaveLength(1);
    expect(seen[0]!.results).toHaveLength(1000);
    expect(seen[0]!.results[99]).toBe(0n);
    expect(seen[0]!.results[100]).toBe(1n);
  });

  it('does not split between a call and one taking its result', () => {
    const post: Post = {
      calls: [
        { name: 'socket', args: [2, 1, 0] },
        { name: 'bind', args: [{ result: 0 }, { data: 0 }, 16] },
        { name: 'close', args: [{ result: 0 }] },
      ],
      data: [Buffer.alloc(16)],
    };
    const posts = [post];
    expect(takeFitting(posts, (n) => n <= 2)).toBe(0);
    expect(posts).toEqual([post]);
    expect(() => splitPost(post, 1)).toThrow(RangeError);
  });

  it('leaves a post whole after the posts that fit', () => {
    const posts = [epollPost(2), { calls: [{ name: 'close' as const, args: [5] }] }, epollPost(50)];
    expect(takeFitting(posts, (_n, b) => b <= 64)).toBe(3);
    expect(posts).toHaveLength(4);
    expect(posts[2]!.calls).toHaveLength(2);
  });
});
