/**
 * Tasks stopped by job control (SIGSTOP/SIGTSTP) are checkpointed as they
 * are and restored stopped; SIGCONT resumes them. A checkpoint that leaves
 * the tree running leaves a stopped task stopped.
 */
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ckptOk, imagePath } from '../support/ckpt.js';
import { procState, sleepSync } from '../support/fixtures.js';
import { cleanupAfterEach } from '../support/live.js';
import { requireRoot } from '../support/prereq.js';
import { childrenOf, waitFor } from '../support/procs.js';

const { leftovers } = cleanupAfterEach();

beforeAll(requireRoot);

/** A shell waiting for a sleep that is stopped by SIGSTOP. */
function startStopped(): { shell: number; stopped: number } {
  const shell = Number(ckptOk(['run', '--', 'sh', '-c', 'sleep 1000 & wait']).trim());
  leftovers.push(shell);
  let stopped: number | undefined;
  waitFor('the sleep', () => {
    stopped = childrenOf(shell)[0];
    return stopped !== undefined;
  });
  leftovers.push(stopped!);
  process.kill(stopped!, 'SIGSTOP');
  waitFor('the stop', () => procState(stopped!) === 'T');
  return { shell, stopped: stopped! };
}

describe('job control', () => {
  it('a stopped task is restored stopped, and SIGCONT resumes it', () => {
    const { shell, stopped } = startStopped();
    const img = imagePath();
    ckptOk(['checkpoint', String(shell), '-o', img, '--kill']);
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(shell);
    fs.rmSync(path.dirname(img), { recursive: true, force: true });
    expect(procState(stopped)).toBe('T');
    expect(procState(shell)).toBe('S');
    process.kill(stopped, 'SIGCONT');
    waitFor('the sleep to run again', () => procState(stopped) === 'S');
  });

  it('a checkpoint that leaves the tree running leaves a stopped task stopped', () => {
    const { shell, stopped } = startStopped();
    const img = imagePath();
    ckptOk(['checkpoint', String(shell), '-o', img, '--leave-running']);
    fs.rmSync(path.dirname(img), { recursive: true, force: true });
    sleepSync(200);
    expect(procState(stopped)).toBe('T');
    expect(procState(shell)).toBe('S');
    process.kill(stopped, 'SIGCONT');
    waitFor('the sleep to run again', () => procState(stopped) === 'S');
  });
});
