/** Helpers for the arch-x86 live tests: programs with known register state. */
import { type FrozenTask, freezeTask, getRegset, NT, readStat, unfreezeTask } from '@ckpt/core';
import { decodeRegs, type UserRegs } from '../../src/index.js';

export {
  compileC,
  counterSource,
  killStarted,
  sleep,
  startSleeper,
  stateAfterRelease,
  track,
  waitUntil,
} from '../../../core/test/live/kernel/support.js';

/**
 * Freeze `pid` once `ready(regs)` holds (the program has set its registers
 * up), retrying for a while.
 */
export async function freezeWhen(
  pid: number,
  ready: (r: UserRegs) => boolean,
): Promise<{ frozen: FrozenTask; regs: UserRegs }> {
  for (let i = 0; i < 100; i++) {
    if (readStat(pid).state !== 'Z') {
      const frozen = freezeTask(pid);
      const regs = decodeRegs(getRegset(pid, NT.PRSTATUS));
      if (ready(regs)) return { frozen, regs };
      unfreezeTask(frozen);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`pid ${pid} never reached the expected register state`);
}
