/**
 * The restore stub dies with the process that spawned it (ckpt): it sets
 * PR_SET_PDEATHSIG itself, and exits at once if its parent was already
 * gone (not the pid written into it), so a ckpt killed in the middle of a
 * restart leaves no stub behind.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cleanupAfterEach } from '../../../../test/support/live.js';
import { requireRoot } from '../../../../test/support/prereq.js';
import { x86_64Stub } from '../../src/index.js';

const { leftovers: pids, dirs } = cleanupAfterEach();

beforeAll(() => {
  requireRoot();
});

/** The stub's ELF with `parent` as the pid it expects for its parent, written to a fresh file. */
function stubFile(parent: number): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-stub-test-'));
  dirs.push(dir);
  const elf = Buffer.from(x86_64Stub.elf);
  elf.writeUInt32LE(parent, x86_64Stub.parentPidOffset!);
  const file = path.join(dir, 'stub');
  fs.writeFileSync(file, elf, { mode: 0o700 });
  return file;
}

const alive = (pid: number) => {
  try {
    return !fs.readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
  } catch {
    return false;
  }
};

async function until(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}

describe('the x86-64 restore stub', () => {
  it('exits at once when its parent is not the one written into it', async () => {
    const child = spawn(stubFile(1), [], { stdio: 'ignore' });
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    expect(code).toBe(1);
  });

  it('waits while its parent lives, and is killed when the parent dies', async () => {
    // A shell is the parent: it starts the stub once the file (which
    // names the shell's pid) is there, and then waits.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-stub-parent-'));
    dirs.push(dir);
    const ready = path.join(dir, 'path');
    const sh = spawn(
      'sh',
      [
        '-c',
        `while [ ! -s ${ready} ]; do sleep 0.01; done; "$(cat ${ready})" & echo $! > ${dir}/pid; wait`,
      ],
      { stdio: 'ignore', detached: true },
    );
    pids.push(sh.pid!);
    fs.writeFileSync(ready, stubFile(sh.pid!));
    expect(
      await until(
        () => fs.existsSync(`${dir}/pid`) && fs.readFileSync(`${dir}/pid`, 'utf8').endsWith('\n'),
      ),
    ).toBe(true);
    const stub = Number(fs.readFileSync(`${dir}/pid`, 'utf8'));
    pids.push(stub);
    await new Promise((r) => setTimeout(r, 200));
    expect(alive(stub)).toBe(true); // pausing, its parent alive
    process.kill(sh.pid!, 'SIGKILL');
    expect(await until(() => !alive(stub))).toBe(true);
  });
});
