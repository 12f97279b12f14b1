import { it } from 'vitest';
import {
  freezeTask,
  getRegset,
  getSigmask,
  NT,
  reap,
  sendSignal,
  setRegset,
  singlestep,
  spawnProcess,
  unfreezeTask,
  waitForStop,
} from '../../../src/kernel/index.js';

it('latency', async () => {
  const pid = spawnProcess(['/bin/sleep', '1000']);
  await new Promise((r) => setTimeout(r, 100));
  freezeTask(pid);
  const n = 2000;
  let t0 = performance.now();
  for (let i = 0; i < n; i++) getRegset(pid, NT.PRSTATUS, 216);
  console.log('getregset us', ((performance.now() - t0) * 1000) / n);
  const r = getRegset(pid, NT.PRSTATUS, 216);
  t0 = performance.now();
  for (let i = 0; i < n; i++) setRegset(pid, NT.PRSTATUS, r);
  console.log('setregset us', ((performance.now() - t0) * 1000) / n);
  t0 = performance.now();
  for (let i = 0; i < n; i++) getSigmask(pid);
  console.log('getsigmask us', ((performance.now() - t0) * 1000) / n);
  t0 = performance.now();
  for (let i = 0; i < 200; i++) {
    singlestep(pid);
    waitForStop(pid);
  }
  console.log('step+wait us', ((performance.now() - t0) * 1000) / 200);
  sendSignal(pid, 9);
  reap(pid);
});
