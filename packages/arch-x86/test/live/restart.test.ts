import {
  getRegset,
  NT,
  readStat,
  reap,
  sendSignal,
  setRegset,
  spawnProcess,
  unfreezeTask,
} from '@ckpt/core';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { requireRoot } from '../../../../test/support/prereq.js';
import {
  decodeRegs,
  ERESTART_RESTARTBLOCK,
  ERESTARTNOHAND,
  encodeRegs,
  NR,
  resumeRegs,
  syscallRestartState,
} from '../../src/index.js';
import { compileC, freezeWhen, killStarted, sleep, track } from './support.js';

// p: pause() until SIGUSR1, whose handler exits 3 (exit 9 if pause returns).
// n: nanosleep(1 s) with rem == req. z: nanosleep(1 s) with rem == NULL.
// Exit 0 when the sleep completed, 4 on EINTR.
const SLEEPER = `
#include <errno.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
static void on_usr1(int s) { (void)s; _exit(3); }
int main(int argc, char **argv) {
  struct timespec ts = {1, 0};
  long r;
  switch (argv[1][0]) {
  case 'p': signal(SIGUSR1, on_usr1); pause(); _exit(9);
  case 'n': r = syscall(SYS_nanosleep, &ts, &ts); break;
  default: r = syscall(SYS_nanosleep, &ts, NULL); break;
  }
  _exit(r == 0 ? 0 : errno == EINTR ? 4 : 5);
}
`;

const inSyscall = (nr: number) => (r: { orig_rax: bigint }) => r.orig_rax === BigInt(nr);

/** Freeze the task in its syscall, rewrite its registers by the restart rules, release it. */
async function freezeAndRewrite(pid: number, nr: number, code: number) {
  const { frozen, regs } = await freezeWhen(pid, inSyscall(nr));
  expect(syscallRestartState(regs)).toEqual({ kind: 'restart', code, nr });
  const resumed = resumeRegs(decodeRegs(getRegset(pid, NT.PRSTATUS)));
  setRegset(pid, NT.PRSTATUS, encodeRegs(resumed.regs));
  await sleep(200); // stay frozen a while
  unfreezeTask(frozen);
  return resumed.action;
}

describe('syscall restart on a live task', () => {
  let bin: string;
  beforeAll(() => {
    requireRoot();
    bin = compileC('sleeper', SLEEPER);
  });
  afterEach(() => killStarted());

  it('re-executes pause() (-ERESTARTNOHAND) after the registers are rewritten', async () => {
    const pid = track(spawnProcess([bin, 'p']));
    expect(await freezeAndRewrite(pid, NR.pause, ERESTARTNOHAND)).toBe('reexecute');
    await sleep(100);
    expect(readStat(pid).state).toBe('S'); // back in pause, not exited with 9
    sendSignal(pid, 10);
    expect(reap(pid)).toEqual({ kind: 'exited', pid, code: 3 });
  });

  it('resumes nanosleep(req, req) for exactly the remaining time', async () => {
    const t0 = Date.now();
    const pid = track(spawnProcess([bin, 'n']));
    await sleep(300);
    expect(await freezeAndRewrite(pid, NR.nanosleep, ERESTART_RESTARTBLOCK)).toBe('reexecute');
    expect(reap(pid)).toEqual({ kind: 'exited', pid, code: 0 });
    // 1 s of sleep plus ~200 ms frozen; a restart from scratch would take ~1.5 s.
    const elapsed = Date.now() - t0;
    expect(elapsed).toBeGreaterThan(1100);
    expect(elapsed).toBeLessThan(1450);
  });

  it('makes nanosleep(req, NULL) fail with EINTR in another task', async () => {
    const pid = track(spawnProcess([bin, 'z']));
    await sleep(100);
    expect(await freezeAndRewrite(pid, NR.nanosleep, ERESTART_RESTARTBLOCK)).toBe('eintr');
    expect(reap(pid)).toEqual({ kind: 'exited', pid, code: 4 });
  });
});
