/**
 * `ckpt restart` (without -d) run in a terminal, as a user types it: the
 * restored program, a job of its own (its own process group, in a session
 * that cannot be joined, so restored in ckpt's) whose standard input led
 * outside and is reconnected to the terminal, gets the terminal's
 * foreground: it reads what is typed instead of stopping on SIGTTIN, and
 * Ctrl-C reaches it; ckpt exits with its status (130). The terminal is a
 * pty driven by python3's pty module. A SIGTERM sent to a waiting
 * `ckpt restart` is passed on to the restored process.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ckptOk, imagePath, ROOT } from '../../../../test/support/ckpt.js';
import { isAlive } from '../../../../test/support/fixtures.js';
import { cleanupAfterEach } from '../../../../test/support/live.js';
import { requireCommand, requireRoot } from '../../../../test/support/prereq.js';
import { tracerPid, waitFor } from '../../../../test/support/procs.js';

const { leftovers: pids, dirs } = cleanupAfterEach();

beforeAll(() => {
  requireRoot();
  requireCommand('python3');
  requireCommand('bash');
});

/** Types "21" then Ctrl-C into `ckpt restart IMG` on a new pty; prints {"doubled", "status"}. */
const DRIVER = `
import json, os, pty, select, sys, time
node, cli, img, out = sys.argv[1:5]
pid, fd = pty.fork()
if pid == 0:
    os.execv(node, [node, cli, 'restart', img])
def drain():
    r, _, _ = select.select([fd], [], [], 0.05)
    if r:
        try: os.read(fd, 4096)
        except OSError: pass
def seen(text):
    try: return text in open(out).read().split()
    except FileNotFoundError: return False
os.write(fd, b'21\\n')
end = time.time() + 15
while not seen('42') and time.time() < end: drain()
doubled = seen('42')
os.write(fd, b'\\x03')
end = time.time() + 15
status = None
while status is None and time.time() < end:
    drain()
    p, st = os.waitpid(pid, os.WNOHANG)
    if p == pid: status = os.waitstatus_to_exitcode(st)
if status is None: os.kill(pid, 9)
print(json.dumps({'doubled': doubled, 'status': status}))
`;

/** Runs `bash -c SCRIPT` on a new pty, as a terminal would, and keeps the pty open. */
const TERMINAL = `
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv('/bin/bash', ['bash', '-c', sys.argv[1]])
while True:
    try: os.read(fd, 4096)
    except OSError: time.sleep(0.1)
`;

describe('ckpt restart in a terminal', () => {
  it('gives the restored job the foreground: it reads what is typed, and Ctrl-C ends it', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-restart-tty-'));
    dirs.push(dir);
    const out = path.join(dir, 'out');
    const prog = path.join(dir, 'double.py');
    fs.writeFileSync(
      prog,
      [
        'import sys',
        'out = open(sys.argv[1], "a", buffering=1)',
        'print("ready", file=out)',
        'for line in sys.stdin: print(int(line) * 2, file=out)',
      ].join('\n'),
    );
    // A job-control shell on a terminal runs it as its foreground job,
    // reading the terminal; the shell stays, so its session cannot be
    // joined at restart, and the job is a process group of its own.
    const term = spawn('python3', ['-c', TERMINAL, `set -m; python3 ${prog} ${out}; sleep 1000`], {
      stdio: 'ignore',
      detached: true,
    });
    pids.push(term.pid!);
    waitFor(
      'the job to start',
      () => fs.existsSync(out) && fs.readFileSync(out, 'utf8') !== '',
      10_000,
    );
    const job = Number(
      execFileSync('pgrep', ['-f', `^python3 ${prog}`], { encoding: 'utf8' }).trim(),
    );
    pids.push(job);
    const img = imagePath();
    dirs.push(path.dirname(img));
    ckptOk(['checkpoint', String(job), '-o', img, '--kill']);
    waitFor('the job gone', () => !isAlive(job));
    const r = JSON.parse(
      execFileSync(
        'python3',
        ['-c', DRIVER, process.execPath, path.join(ROOT, 'apps/cli/dist/bin.js'), img, out],
        { encoding: 'utf8', timeout: 60_000 },
      ),
    ) as { doubled: boolean; status: number | null };
    expect(r).toEqual({ doubled: true, status: 130 });
    expect(isAlive(job)).toBe(false);
  });

  it('passes a SIGTERM sent to the waiting ckpt restart on to the restored process', async () => {
    const pid = Number(ckptOk(['run', '--', 'sleep', '1000']).trim());
    pids.push(pid);
    const img = imagePath();
    dirs.push(path.dirname(img));
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the original gone', () => !isAlive(pid));
    const waiting = spawn(
      process.execPath,
      [path.join(ROOT, 'apps/cli/dist/bin.js'), 'restart', img],
      {
        stdio: 'ignore',
      },
    );
    const exit = new Promise<number | null>((resolve) =>
      waiting.on('exit', (code) => resolve(code)),
    );
    // Released: no longer traced by ckpt, asleep in its nanosleep.
    waitFor('the restored process to run', () => isAlive(pid) && tracerPid(pid) === 0, 20_000);
    waiting.kill('SIGTERM');
    expect(await exit).toBe(128 + 15);
    expect(isAlive(pid)).toBe(false);
  });
});
