/**
 * Signals sent to a task while it is being checkpointed and left running:
 * those that arrive while ckpt runs its own calls in the task are held
 * back and queued again with their siginfo, every real-time instance of
 * them. A sender floods the sigflood fixture with 20000 sigqueue'd values
 * while four checkpoints run; every value must arrive exactly once, as
 * sent (ckpt used to keep one instance of each signal, as tgkill).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ckptOk, imagePath } from '../support/ckpt.js';
import { compileFixture } from '../support/fixtures.js';
import { liveFixtures } from '../support/live.js';
import { waitFor } from '../support/procs.js';

const fixtures = liveFixtures();

describe('signals during a checkpoint', () => {
  it('none is lost, merged or changed when the task is left running', async () => {
    const f = fixtures.start('sigflood');
    const sentTmp = path.join(f.dir, 'sent.tmp');
    const sender = spawn(
      compileFixture('sigsend'),
      [String(f.pid), f.layout.signal!, '20000', sentTmp],
      { stdio: 'ignore' },
    );
    const done = new Promise<number | null>((resolve) => sender.on('exit', resolve));
    const img = imagePath();
    for (let i = 0; i < 4; i++) ckptOk(['checkpoint', String(f.pid), '-o', img]);
    fs.rmSync(path.dirname(img), { recursive: true, force: true });
    expect(await done).toBe(0);
    waitFor('the sender done', () => fs.existsSync(sentTmp));
    fs.renameSync(sentTmp, path.join(f.dir, 'sent'));
    f.go();
    expect(f.waitResult(30_000)).toBe('PASS signals=20000');
  });
});
