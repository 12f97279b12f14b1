/**
 * Tasks stopped by job control (SIGSTOP/SIGTSTP) are checkpointed as they
 * are and restored stopped, without telling their parent again (no
 * SIGCHLD that was not pending at checkpoint); SIGCONT resumes them. A
 * checkpoint that leaves the tree running leaves a stopped task stopped.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ckptOk, imagePath } from '../support/ckpt.js';
import { procState, sleepSync } from '../support/fixtures.js';
import { cleanupAfterEach } from '../support/live.js';
import { requireCommand, requireRoot } from '../support/prereq.js';
import { childrenOf, waitFor } from '../support/procs.js';

const { leftovers, dirs } = cleanupAfterEach();

beforeAll(() => {
  requireRoot();
  requireCommand('python3');
});

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

  it('the parent hears of the stop once, before the checkpoint, and of SIGCONT after', () => {
    // A parent that logs every SIGCHLD it gets, with its si_code.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-jobctl-'));
    dirs.push(dir);
    const log = path.join(dir, 'log');
    const script = `
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
p = os.fork()
if p == 0:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    os.execvp("sleep", ["sleep", "1000"])
log = open(sys.argv[1], "a", buffering=1)
log.write("child %d\\n" % p)
while True:
    info = signal.sigwaitinfo({signal.SIGCHLD})
    log.write("code %d status %d\\n" % (info.si_code, info.si_status))
`;
    const parent = Number(ckptOk(['run', '--', 'python3', '-c', script, log]).trim());
    leftovers.push(parent);
    const read = () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '');
    waitFor('the child', () => /^child \d+\n/.test(read()));
    const child = Number(/^child (\d+)/.exec(read())![1]);
    leftovers.push(child);
    process.kill(child, 'SIGSTOP');
    const stopped = 'code 5 status 19\n'; // CLD_STOPPED by SIGSTOP
    waitFor('the parent to hear of the stop', () => read().endsWith(stopped));

    const img = imagePath();
    ckptOk(['checkpoint', String(parent), '-o', img, '--kill']);
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(parent);
    fs.rmSync(path.dirname(img), { recursive: true, force: true });
    expect(procState(child)).toBe('T');
    sleepSync(300);
    expect(read()).toBe(`child ${child}\n${stopped}`);

    process.kill(child, 'SIGCONT');
    waitFor('the parent to hear of SIGCONT', () => read().endsWith('code 6 status 18\n')); // CLD_CONTINUED
    expect(read()).toBe(`child ${child}\n${stopped}code 6 status 18\n`);
  });
});
