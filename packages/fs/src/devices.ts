/**
 * Simple character devices that carry no state of their own: reopened by
 * their canonical path (whatever name the process used), with the saved
 * flags. Their position means nothing, so it is not restored.
 */
import type { FileHandler } from '@ckpt/core';
import { major, minor } from './flags.js';
import { reopenPathFile, savePathFile } from './path-file.js';
import { FileKind, PathType } from './records.js';

/** The memory devices ckpt reopens, by "major:minor". */
const SIMPLE_DEVICES: Record<string, string> = {
  '1:3': '/dev/null',
  '1:5': '/dev/zero',
  '1:8': '/dev/random',
  '1:9': '/dev/urandom',
};

function devicePath(rdev: number): string | undefined {
  return SIMPLE_DEVICES[`${major(rdev)}:${minor(rdev)}`];
}

/** /dev/null, /dev/zero, /dev/random, /dev/urandom. */
export const simpleDevice: FileHandler = {
  kind: 'chrdev',
  id: FileKind.CHRDEV,
  match: (f) => f.stat.type === 'chr' && devicePath(f.stat.rdev) !== undefined,
  checkpoint(ctx, _task, file) {
    savePathFile(ctx, file, devicePath(file.stat.rdev)!, PathType.CHR);
  },
  restore: (ctx, task) => reopenPathFile(ctx, task, false),
};
