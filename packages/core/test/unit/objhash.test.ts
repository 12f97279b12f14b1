import { describe, expect, it } from 'vitest';
import { CkptError, ObjHash } from '../../src/index.js';

describe('ObjHash', () => {
  it('assigns objrefs in order of first appearance and counts users', () => {
    const h = new ObjHash();
    const a = h.track('file', 'dev1:ino10', { name: 'a' });
    const b = h.track('pipe', 'pipe:[99]', { name: 'b' });
    const a2 = h.track('file', 'dev1:ino10', { name: 'ignored' });
    const c = h.track('file', 'dev1:ino11', { name: 'c' });
    expect([a.entry.objref, b.entry.objref, c.entry.objref]).toEqual([1, 2, 3]);
    expect(a.isNew && b.isNew && c.isNew).toBe(true);
    expect(a2.isNew).toBe(false);
    expect(a2.entry).toBe(a.entry);
    expect(a.entry.obj).toEqual({ name: 'a' });
    expect(a.entry.users).toBe(2);
    expect(b.entry.users).toBe(1);
    expect(h.entries().map((e) => e.objref)).toEqual([1, 2, 3]);
  });

  it('keys are per type: the same key under two types is two objects', () => {
    const h = new ObjHash();
    expect(h.track('uts_ns', '4026531838', 1).entry.objref).toBe(1);
    expect(h.track('ipc_ns', '4026531838', 2).entry.objref).toBe(2);
  });

  it('new objects start not checkpointed (leak detection pre-step)', () => {
    const h = new ObjHash();
    const { entry } = h.track('file', 'k', {});
    expect(entry.checkpointed).toBe(false);
    entry.checkpointed = true;
    expect(h.lookup('file', 'k')!.checkpointed).toBe(true);
  });

  it('restart side: insert by objref, fetch checks existence and type', () => {
    const h = new ObjHash();
    h.insert(5, 'pipe', 'P');
    expect(h.fetch(5, 'pipe')).toBe('P');
    expect(() => h.fetch(6, 'pipe')).toThrow(
      /objref 6 \(pipe\) is referenced but was never defined/,
    );
    expect(() => h.fetch(5, 'file')).toThrow(/refers to a pipe object where a file was expected/);
    expect(() => h.insert(5, 'pipe', 'Q')).toThrow(CkptError);
    expect(() => h.insert(0, 'pipe', 'Q')).toThrow(/invalid objref 0/);
  });

  it('is one-way until cleared', () => {
    const h = new ObjHash();
    h.track('file', 'k', 1);
    expect(h.size).toBe(1);
    h.clear();
    expect(h.size).toBe(0);
    expect(h.track('file', 'k', 1).entry.objref).toBe(1);
  });
});
