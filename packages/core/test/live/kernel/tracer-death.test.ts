/**
 * The key safety property: if ckpt dies at any point of a freeze, even by
 * SIGKILL, the target keeps running unharmed.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { requireRoot } from '../../../../../test/support/prereq.js';
import { spawnProcess } from '../../../src/kernel/index.js';
import { readStat, readStatus } from '../../../src/proc/index.js';
import {
  compileC,
  counterSource,
  freshPath,
  killStarted,
  sleep,
  track,
  transpileKernelForNode,
  waitUntil,
} from './support.js';

const COUNTER = counterSource(2);

// The tracer: freezes the target up to a stage with the real kernel layer,
// says so on stdout, and waits to be killed.
const TRACER = (kernel: string) => `
import * as k from ${JSON.stringify(kernel)};
const [pid, stage] = [Number(process.argv[1]), process.argv[2]]; // no script path with -e
if (stage === 'seized') k.seize(pid, 0);
else if (stage === 'interrupted') { k.seize(pid, 0); k.interrupt(pid); }
else k.freezeTask(pid);
process.stdout.write('ready\\n');
setInterval(() => {}, 1000);
`;

describe('tracer death', () => {
  let kernelJs: string;
  const tracers: ChildProcess[] = [];

  beforeAll(async () => {
    requireRoot();
    kernelJs = await transpileKernelForNode();
  });
  afterEach(() => {
    for (const t of tracers.splice(0)) t.kill('SIGKILL');
    killStarted();
  });

  for (const stage of ['seized', 'interrupted', 'frozen']) {
    it(`the target keeps running when the tracer is SIGKILLed (${stage})`, async () => {
      const out = freshPath('tracer-death');
      const counter = () => Number(readFileSync(out, 'utf8') || '-1');
      const pid = track(spawnProcess([compileC('counter2', COUNTER), out]));
      await waitUntil(() => {
        try {
          return counter() > 1;
        } catch {
          return false;
        }
      });

      const tracer = spawn(
        process.execPath,
        ['--input-type=module', '-e', TRACER(kernelJs), String(pid), stage],
        {
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
      tracers.push(tracer);
      await new Promise<void>((resolve, reject) => {
        tracer.stdout?.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
        tracer.on('exit', (code) => reject(new Error(`tracer exited with ${code}`)));
      });
      expect(readStatus(pid).tracerPid).toBe(tracer.pid);
      if (stage === 'frozen') {
        const at = counter();
        await sleep(100);
        expect(counter()).toBe(at);
        expect(readStat(pid).state).toBe('t');
      }

      tracer.kill('SIGKILL');
      await new Promise((resolve) => tracer.once('exit', resolve));
      expect(await waitUntil(() => readStatus(pid).tracerPid === 0)).toBe(true);
      const after = counter();
      expect(await waitUntil(() => counter() > after + 5)).toBe(true);
      expect(readStat(pid).state).not.toBe('Z');
    });
  }
});
