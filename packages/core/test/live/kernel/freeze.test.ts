import { readFileSync } from 'node:fs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { requireRoot } from '../../../../../test/support/prereq.js';
import { isCkptError } from '../../../src/errors.js';
import {
  freezeTask,
  getRegset,
  getSigmask,
  NT,
  reap,
  sendSignal,
  spawnDetached,
  spawnProcess,
  unfreezeTask,
} from '../../../src/kernel/index.js';
import { readStat, readStatus } from '../../../src/proc/index.js';
import {
  compileC,
  counterSource,
  freshPath,
  killStarted,
  sleep,
  track,
  waitUntil,
} from './support.js';

// A counter in a file tells whether the target is really running.
const COUNTER = counterSource(5);

describe('freeze', () => {
  beforeAll(() => requireRoot());
  afterEach(() => killStarted());

  it('freezes a running process, reads its registers, and lets it continue', async () => {
    const pid = track(spawnProcess(['/bin/sleep', '1000']));
    await waitUntil(() => readStat(pid).state === 'S');
    const frozen = freezeTask(pid);
    expect(frozen.stop.stop).toBe('interrupt');
    expect(readStat(pid).state).toBe('t');
    expect(readStatus(pid).tracerPid).toBe(process.pid);
    const regs = getRegset(pid, NT.PRSTATUS);
    expect(regs.length).toBe(27 * 8);
    // sleep is blocked in clock_nanosleep: interrupted with -ERESTART_RESTARTBLOCK.
    expect(regs.readBigInt64LE(10 * 8)).toBe(-516n); // rax
    expect(regs.readBigUInt64LE(15 * 8)).toBe(230n); // orig_rax = clock_nanosleep
    expect(getSigmask(pid)).toBe(0n);
    unfreezeTask(frozen, 'resume');
    expect(readStatus(pid).tracerPid).toBe(0);
    await sleep(50);
    expect(readStat(pid).state).toBe('S');
  });

  it('keeps counting after a freeze and resume', async () => {
    const out = freshPath('counter');
    const bin = compileC('counter', COUNTER);
    const pid = track(spawnProcess([bin, out]));
    const read = () => {
      try {
        return Number(readFileSync(out, 'utf8'));
      } catch {
        return -1;
      }
    };
    await waitUntil(() => read() > 2);
    const frozen = freezeTask(pid);
    const atFreeze = read();
    await sleep(100);
    expect(read()).toBe(atFreeze);
    unfreezeTask(frozen);
    expect(await waitUntil(() => read() > atFreeze + 3)).toBe(true);
  });

  it('leaves a job-control-stopped process stopped, and reports a group-stop', async () => {
    const pid = track(spawnProcess(['/bin/sleep', '1000']));
    sendSignal(pid, 19); // SIGSTOP
    expect(await waitUntil(() => readStat(pid).state === 'T')).toBe(true);
    const frozen = freezeTask(pid);
    expect(frozen.wasStopped).toBe(true);
    expect(frozen.stop.stop).toBe('group');
    expect(frozen.stop.signal).toBe(19);
    unfreezeTask(frozen, 'resume');
    await sleep(50);
    expect(readStat(pid).state).toBe('T');
    sendSignal(pid, 18); // SIGCONT
    expect(await waitUntil(() => readStat(pid).state === 'S')).toBe(true);
  });

  it('can leave a process stopped, or kill it', async () => {
    const a = track(spawnProcess(['/bin/sleep', '1000']));
    const b = track(spawnProcess(['/bin/sleep', '1000']));
    await sleep(20);
    unfreezeTask(freezeTask(a), 'stopped');
    expect(await waitUntil(() => readStat(a).state === 'T')).toBe(true);
    expect(readStatus(a).tracerPid).toBe(0);
    unfreezeTask(freezeTask(b), 'kill');
    // b is our child: it is a zombie or reaped now.
    const end = reap(b);
    expect(end === undefined || end.kind === 'signaled').toBe(true);
  });

  it('freezes a process that is not its child', async () => {
    const pid = track(spawnDetached('/bin/sleep 1000'));
    expect(readStat(pid).ppid).not.toBe(process.pid);
    const frozen = freezeTask(pid);
    expect(frozen.stop.stop).toBe('interrupt');
    unfreezeTask(frozen);
    await sleep(20);
    expect(readStat(pid).state).toBe('S');
  });

  it('reports a vanished process as ESRCH and a traced one as EBUSY', () => {
    const pid = track(spawnProcess(['/bin/sleep', '1000']));
    sendSignal(pid, 9);
    reap(pid);
    let err: unknown;
    try {
      freezeTask(pid);
    } catch (e) {
      err = e;
    }
    expect(isCkptError(err, 'ESRCH')).toBe(true);
    expect(String((err as Error).message)).toContain(`${pid}`);

    const other = track(spawnProcess(['/bin/sleep', '1000']));
    const frozen = freezeTask(other);
    try {
      freezeTask(other);
      expect.unreachable();
    } catch (e) {
      expect(isCkptError(e, 'EBUSY')).toBe(true);
    }
    unfreezeTask(frozen);
  });
});
