import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { asCkptError, CkptError } from '../../src/errors.js';

describe('asCkptError', () => {
  it('keeps a CkptError, adding the pid it lacked', () => {
    const e = new CkptError('EBUSY', 'busy');
    expect(asCkptError(e, 'here', 7)).toBe(e);
    expect(e.context.pid).toBe(7);
  });

  it('turns a failed system call of Node into ESYS naming the call, path and errno', () => {
    let thrown: unknown;
    try {
      fs.openSync('/nonexistent-ckpt-dir/file', 'r');
    } catch (e) {
      thrown = e;
    }
    const e = asCkptError(thrown, 'restoring files', 42);
    expect(e.code).toBe('ESYS');
    expect(e.message).toBe(
      'restoring files for pid 42: open /nonexistent-ckpt-dir/file failed: ENOENT (no such file or directory)',
    );
    expect(e.context).toMatchObject({
      pid: 42,
      path: '/nonexistent-ckpt-dir/file',
      syscall: 'open',
      errno: 2,
    });
  });

  it('calls anything else an internal error', () => {
    const e = asCkptError(new TypeError('x is undefined'), 'phase mm', 3);
    expect(e.code).toBe('EINVAL');
    expect(e.message).toBe('internal error in phase mm for pid 3: x is undefined');
  });
});
