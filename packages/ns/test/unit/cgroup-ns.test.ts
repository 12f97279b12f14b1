/** The root of a cgroup namespace from a task's cgroup seen from outside and inside it. */
import { describe, expect, it } from 'vitest';
import { cgroupNsRecord, namespaceRoot } from '../../src/index.js';

describe('namespaceRoot', () => {
  it('is what the inner path leaves of the full one', () => {
    expect(namespaceRoot('/a/b/sub', '/sub')).toBe('/a/b');
    expect(namespaceRoot('/a/b', '/')).toBe('/a/b');
    expect(namespaceRoot('/sub', '/sub')).toBe('/');
  });

  it('is unknown for a task outside its root, or paths that do not fit', () => {
    expect(namespaceRoot('/x', '/../x')).toBeUndefined();
    expect(namespaceRoot('/a/b', '/c')).toBeUndefined();
  });

  it('round-trips its record', () => {
    const ns = { host: false, roots: [{ hierarchy: 0, controllers: '', path: '/a' }] };
    expect(cgroupNsRecord.decode(cgroupNsRecord.encode(ns))).toEqual(ns);
  });
});
