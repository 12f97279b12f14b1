/**
 * `ckpt restart` (without -d) run in a terminal, as a user types it: the
 * restored program, a job of its own (its own process group, in a session
 * that cannot be joined, so restored in ckpt's) whose standard input led
 * outside and is reconnected to the terminal, gets the terminal's
 * foreground: it reads what is typed instead of stopping on SIGTTIN, and
 * Ctrl-C reaches it; ckpt exits with its status (130). The terminal is a
 * pty driven by python3's pty module. A program that had put the terminal
 * in non-canonical mode without echo gets those modes on the new terminal
 * (a key reaches it without Enter) and a SIGWINCH; ckpt's own modes are
 * back when it exits. A SIGTERM sent to a waiting `ckpt restart` is
 * passed on to the restored process.
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

/**
 * Start of the python drivers below: `ckpt restart IMG` on a new pty (fd
 * `fd` its master), and `drain()`, which reads what the terminal shows.
 */
const RESTART_ON_PTY = `
import json, os, pty, select, sys, termios, time
node, cli, img, out = sys.argv[1:5]
pid, fd = pty.fork()
if pid == 0:
    os.execv(node, [node, cli, 'restart', img])
def drain():
    r, _, _ = select.select([fd], [], [], 0.05)
    if r:
        try: os.read(fd, 4096)
        except OSError: pass
`;

/** Types "21" then Ctrl-C into `ckpt restart IMG` on a new pty; prints {"doubled", "status"}. */
const DRIVER = `${RESTART_ON_PTY}def seen(text):
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

/**
 * Presses "x" (no Enter) on `ckpt restart IMG` on a new pty, waits for the
 * program to see it, then "q"; prints the exit status and whether ckpt's
 * own modes (echo, line by line) are back on the terminal afterwards.
 */
const KEY_DRIVER = `${RESTART_ON_PTY}def lines():
    try: return open(out).read().splitlines()
    except FileNotFoundError: return []
def wait_for(pred):
    end = time.time() + 15
    while not pred() and time.time() < end: drain()
    return pred()
before = termios.tcgetattr(fd)[3]
os.write(fd, b'x')
got = wait_for(lambda: any(l.startswith('key x') for l in lines()))
os.write(fd, b'q')
status = None
end = time.time() + 15
while status is None and time.time() < end:
    drain()
    p, st = os.waitpid(pid, os.WNOHANG)
    if p == pid: status = os.waitstatus_to_exitcode(st)
if status is None: os.kill(pid, 9)
after = termios.tcgetattr(fd)[3]
flags = lambda l: {'echo': bool(l & termios.ECHO), 'icanon': bool(l & termios.ICANON)}
print(json.dumps({'got': got, 'status': status, 'before': flags(before), 'after': flags(after), 'lines': lines()}))
`;

/**
 * Runs `ckpt restart IMG` as a job of a job-control shell on a new pty;
 * presses "x", then Ctrl-Z, waits for the shell to report ckpt stopped and
 * to continue it with `fg`, then presses "q". Prints what the terminal
 * showed and the program's log.
 */
const STOP_DRIVER = `
import json, os, pty, select, sys, time
node, cli, img, out = sys.argv[1:5]
pid, fd = pty.fork()
if pid == 0:
    os.execv('/bin/bash', ['bash', '-c', 'set -m; "$0" "$1" restart "$2"; echo stopped-$?; fg; echo done-$?', node, cli, img])
shown = b''
def drain():
    global shown
    r, _, _ = select.select([fd], [], [], 0.05)
    if r:
        try: shown += os.read(fd, 4096)
        except OSError: pass
def lines():
    try: return open(out).read().splitlines()
    except FileNotFoundError: return []
def wait_for(pred, secs=15):
    end = time.time() + secs
    while not pred() and time.time() < end: drain()
    return pred()
# The SIGWINCH may be handled only after the next key: a signal that came
# as the program went back into read() (Python runs its handlers between
# calls). A key typed before the job has the terminal waits in its queue.
wait_for(lambda: 'winch' in lines(), 3)
os.write(fd, b'x')
wait_for(lambda: any(l.startswith('key x') for l in lines()))
os.write(fd, b'\x1a')
wait_for(lambda: b'stopped-' in shown)
wait_for(lambda: False, 1)
os.write(fd, b'q')
wait_for(lambda: b'done-' in shown)
os.kill(pid, 9)
print(json.dumps({'shown': shown.decode(errors='replace'), 'lines': lines()}))
`;

/** Non-canonical, no echo; logs each key with the modes it sees then, and SIGWINCH. */
const RAW_PROGRAM = [
  'import os, signal, sys, termios',
  'out = open(sys.argv[1], "a", buffering=1)',
  'signal.signal(signal.SIGWINCH, lambda *a: print("winch", file=out))',
  't = termios.tcgetattr(0)',
  't[3] &= ~(termios.ICANON | termios.ECHO)',
  't[6][termios.VMIN] = 1',
  'termios.tcsetattr(0, termios.TCSANOW, t)',
  'print("ready", file=out)',
  'while True:',
  '    c = os.read(0, 1).decode()',
  '    l = termios.tcgetattr(0)[3]',
  '    print("key", c, "echo" if l & termios.ECHO else "noecho", "icanon" if l & termios.ICANON else "raw", file=out)',
  '    if c == "q": sys.exit(0)',
].join('\n');

/**
 * `program` (python3, given the log path) as the foreground job of a
 * job-control shell on a pty, with `redirect` on its command line,
 * checkpointed with --kill once it has written its first line: the shell
 * stays, so its session cannot be joined at restart, and the job is a
 * process group of its own.
 */
function checkpointJob(
  prefix: string,
  program: string,
  opts: { redirect?: string; waitMs?: number } = {},
): { img: string; out: string; job: number } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.push(dir);
  const out = path.join(dir, 'out');
  const prog = path.join(dir, 'job.py');
  fs.writeFileSync(prog, program);
  const term = spawn(
    'python3',
    ['-c', TERMINAL, `set -m; python3 ${prog} ${out}${opts.redirect ?? ''}; sleep 1000`],
    { stdio: 'ignore', detached: true },
  );
  pids.push(term.pid!);
  waitFor(
    'the job to start',
    () => fs.existsSync(out) && fs.readFileSync(out, 'utf8') !== '',
    opts.waitMs,
  );
  const job = Number(
    execFileSync('pgrep', ['-f', `^python3 ${prog}`], { encoding: 'utf8' }).trim(),
  );
  pids.push(job);
  const img = imagePath();
  dirs.push(path.dirname(img));
  ckptOk(['checkpoint', String(job), '-o', img, '--kill']);
  waitFor('the job gone', () => !isAlive(job));
  return { img, out, job };
}

/** RAW_PROGRAM checkpointed as {@link checkpointJob} does, its log emptied. */
function checkpointRawJob(prefix: string): { img: string; out: string; job: number } {
  const checkpointed = checkpointJob(prefix, RAW_PROGRAM);
  fs.writeFileSync(checkpointed.out, '');
  return checkpointed;
}

describe('ckpt restart in a terminal', () => {
  it.each([
    ['its standard input', 'sys.stdin', ''],
    // As less reads keys: its own fd on /dev/tty, stdin elsewhere.
    [
      '/dev/tty, which it opened itself',
      'os.fdopen(os.open("/dev/tty", os.O_RDWR))',
      ' < /dev/null',
    ],
  ])(
    'gives the restored job the foreground: it reads what is typed on %s, and Ctrl-C ends it',
    (_what, input, redirect) => {
      const program = [
        'import os, sys',
        'out = open(sys.argv[1], "a", buffering=1)',
        `keys = ${input}`,
        'print("ready", file=out)',
        'for line in keys: print(int(line) * 2, file=out)',
      ].join('\n');
      const { img, out, job } = checkpointJob('ckpt-restart-tty-', program, {
        redirect,
        waitMs: 10_000,
      });
      const r = JSON.parse(
        execFileSync(
          'python3',
          ['-c', DRIVER, process.execPath, path.join(ROOT, 'apps/cli/dist/bin.js'), img, out],
          { encoding: 'utf8', timeout: 60_000 },
        ),
      ) as { doubled: boolean; status: number | null };
      expect(r).toEqual({ doubled: true, status: 130 });
      expect(isAlive(job)).toBe(false);
    },
  );

  it('gives the job its terminal modes (no echo, key by key) and a SIGWINCH; ckpt puts its own back', () => {
    const { img, out } = checkpointRawJob('ckpt-restart-modes-');
    const r = JSON.parse(
      execFileSync(
        'python3',
        ['-c', KEY_DRIVER, process.execPath, path.join(ROOT, 'apps/cli/dist/bin.js'), img, out],
        { encoding: 'utf8', timeout: 60_000 },
      ),
    ) as {
      got: boolean;
      status: number | null;
      before: { echo: boolean; icanon: boolean };
      after: { echo: boolean; icanon: boolean };
      lines: string[];
    };
    // "x" reached it without Enter: the terminal was non-canonical.
    expect(r.got).toBe(true);
    expect(r.lines).toContain('key x noecho raw');
    expect(r.lines).toContain('winch');
    expect(r.status).toBe(0);
    // The new terminal started in ckpt's modes and has them again.
    expect(r.before).toEqual({ echo: true, icanon: true });
    expect(r.after).toEqual({ echo: true, icanon: true });
  });

  it('stops with the job on Ctrl-Z, and fg continues both with the terminal', () => {
    const { img, out, job } = checkpointRawJob('ckpt-restart-stop-');
    const r = JSON.parse(
      execFileSync(
        'python3',
        ['-c', STOP_DRIVER, process.execPath, path.join(ROOT, 'apps/cli/dist/bin.js'), img, out],
        { encoding: 'utf8', timeout: 90_000 },
      ),
    ) as { shown: string; lines: string[] };
    // The shell saw ckpt stop (128 + SIGTSTP), continued it, and it ended
    // with the job's status once "q" reached the job.
    expect(r.shown).toContain('stopped-148');
    expect(r.lines).toContain('key x noecho raw');
    expect(r.lines).toContain('key q noecho raw');
    expect(r.shown).toContain('done-0');
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
