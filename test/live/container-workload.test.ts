/**
 * The container scenario of the trees issue: a job-control shell as the
 * init of a container, running a pipeline with data in flight, a
 * background job in its own process group, a zombie whose parent waits for
 * it only when told, a double-forked orphan whose group leader has exited,
 * a daemon whose session leader has exited, and a custom hostname. After
 * checkpoint --kill and restart -d, everything is checked from inside the
 * container: pids, ppids, pgids and sids are the same, the zombie is
 * waitable with its status, the hostname is kept and the pipeline goes on
 * without losing or repeating a line.
 */
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ckptOk } from '../support/ckpt.js';
import { procState, sleepSync } from '../support/fixtures.js';
import { cleanupAfterEach } from '../support/live.js';
import { requireCommand, requireRoot } from '../support/prereq.js';
import { nsenter, waitFor } from '../support/procs.js';

const HOSTNAME = 'ckpt-workload';
const { leftovers, tmpDir, tmpImage } = cleanupAfterEach();

beforeAll(() => {
  requireRoot();
  for (const cmd of ['unshare', 'setsid', 'nsenter', 'ps', 'bash', 'python3']) {
    requireCommand(cmd);
  }
});

/** How long each wait here may take (longer than waitFor's default). */
const WAIT_MS = 10_000;

/** The workload: bash with job control (set -m) as the container's init. */
function script(dir: string): string {
  return `
hostname ${HOSTNAME}
set -m
# A pipeline job: the producer is faster than the consumer, so lines wait in the pipe.
(i=0; while :; do i=$((i+1)); echo "line $i"; sleep 0.05; done) | (while read l; do echo "$l" >> ${dir}/out; sleep 0.1; done) &
# A background job: its own process group.
sleep 1000 &
# A zombie: the child exits with status 7; the parent waits for it on SIGUSR1.
python3 -c '
import os, signal, time
p = os.fork()
if p == 0:
    os._exit(7)
open("${dir}/zombie", "w").write(str(p))
signal.signal(signal.SIGUSR1, lambda *a: None)
signal.pause()
_, st = os.waitpid(p, 0)
open("${dir}/zombie-status", "w").write("%d %d" % (p, st))
time.sleep(1000)
' &
# A double-forked orphan: adopted by init, its group's leader is gone.
(sleep 1001 &)
# A daemon: adopted by init, its session's (and group's) leader is gone.
setsid bash -c 'sleep 1002 & exit'
while :; do sleep 1; done
`;
}

interface Proc {
  pid: number;
  ppid: number;
  pgid: number;
  sid: number;
  state: string;
  args: string;
}

/** Processes as `ps` inside the container shows them, without ps and the loops' short sleeps. */
function psInside(init: number): Map<number, Proc> {
  const out = nsenter(init, ['-p', '-m'], ['ps', '-eo', 'pid=,ppid=,pgid=,sid=,stat=,args=']);
  const procs = new Map<number, Proc>();
  for (const line of out.trim().split('\n')) {
    const [pid, ppid, pgid, sid, stat, ...args] = line.trim().split(/\s+/);
    const cmd = args.join(' ');
    if (cmd.startsWith('ps ') || /^sleep (0\.\d+|1)$/.test(cmd)) continue;
    procs.set(Number(pid), {
      pid: Number(pid),
      ppid: Number(ppid),
      pgid: Number(pgid),
      sid: Number(sid),
      // R/S/D change from moment to moment; zombie or not is what counts.
      state: stat!.startsWith('Z') ? 'Z' : 'alive',
      args: cmd,
    });
  }
  return procs;
}

/**
 * The lasting processes: those in two snapshots 300 ms apart (a bash that
 * has just forked and not yet exec'd its sleep shows up in one at most).
 */
function stableInside(init: number): Map<number, Proc> {
  const first = psInside(init);
  sleepSync(300);
  const second = psInside(init);
  return new Map(
    [...second].filter(([pid, p]) => JSON.stringify(first.get(pid)) === JSON.stringify(p)),
  );
}

function outLines(dir: string): number[] {
  try {
    return fs
      .readFileSync(path.join(dir, 'out'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => Number(l.split(' ')[1]));
  } catch {
    return [];
  }
}

function byArgs(procs: Map<number, Proc>, args: string): Proc {
  const p = [...procs.values()].find((q) => q.args === args);
  if (!p) throw new Error(`no process '${args}' in the container`);
  return p;
}

/** Lines saved as in flight in the image's pipe buffers. */
function linesInFlight(img: string): number[] {
  const doc = JSON.parse(ckptOk(['info', img, '--json'])) as {
    records: { name: string; value: { data?: string } }[];
  };
  return doc.records
    .filter((r) => r.name === 'pipe_buf')
    .flatMap((r) =>
      Buffer.from(r.value.data ?? '', 'hex')
        .toString()
        .split('\n'),
    )
    .filter((l) => l.startsWith('line '))
    .map((l) => Number(l.slice(5)));
}

describe('a container workload (pipeline, jobs, zombie, orphans, hostname)', () => {
  it('comes back with the same pids, groups, sessions, zombie, hostname, and keeps running', () => {
    const dir = tmpDir('ckpt-workload-');
    const init = Number(ckptOk(['run', '--container', '--', 'bash', '-c', script(dir)]).trim());
    leftovers.push(init);
    const zombieFile = path.join(dir, 'zombie');
    waitFor(
      'the zombie',
      () => {
        const procs = psInside(init);
        return (
          [...procs.values()].some((p) => p.state === 'Z') &&
          /^\d+$/.test(fs.existsSync(zombieFile) ? fs.readFileSync(zombieFile, 'utf8') : '')
        );
      },
      WAIT_MS,
    );
    // Let lines pile up in the pipe (the producer writes twice as fast).
    waitFor('the pipeline to run', () => outLines(dir).length >= 10, WAIT_MS);
    const before = stableInside(init);

    // What the scenario is meant to contain, so the test cannot pass vacuously.
    const job = byArgs(before, 'sleep 1000');
    expect(job.pgid).toBe(job.pid);
    const orphan = byArgs(before, 'sleep 1001');
    expect(orphan.ppid).toBe(1);
    expect(before.has(orphan.pgid)).toBe(false); // its group's leader is gone
    const daemon = byArgs(before, 'sleep 1002');
    expect(daemon.ppid).toBe(1);
    expect(daemon.sid).not.toBe(1);
    expect(before.has(daemon.sid)).toBe(false); // its session's leader is gone
    const zombie = [...before.values()].find((p) => p.state === 'Z')!;
    expect(Number(fs.readFileSync(path.join(dir, 'zombie'), 'utf8'))).toBe(zombie.pid);
    const pipeline = [...before.values()].filter((p) => p.ppid === 1 && p.args.startsWith('bash'));
    expect(pipeline).toHaveLength(2);
    expect(pipeline[0]!.pgid).toBe(pipeline[1]!.pgid);
    expect(pipeline[0]!.pgid).not.toBe(1);

    const img = tmpImage();
    ckptOk(['checkpoint', String(init), '-o', img, '--kill', '--container']);
    waitFor('the container to die', () => procState(init) === undefined, WAIT_MS);
    const linesAtCheckpoint = outLines(dir);
    // Lines were waiting in the pipe, the very next ones the consumer reads.
    const inFlight = linesInFlight(img);
    expect(inFlight.length).toBeGreaterThan(0);
    expect(inFlight[0]).toBe(linesAtCheckpoint.length + 1);

    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(init);

    // Same processes, with the same pids, parents, groups, sessions and states.
    const after = stableInside(init);
    expect([...after.values()].sort((a, b) => a.pid - b.pid)).toEqual(
      [...before.values()].sort((a, b) => a.pid - b.pid),
    );

    // The hostname is the container's.
    const host = nsenter(init, ['-u'], ['hostname']);
    expect(host.trim()).toBe(HOSTNAME);

    // The pipeline goes on: every line once, in order, across the restart
    // (lines that were in the pipe at checkpoint come out after it).
    waitFor(
      'the pipeline to continue',
      () => outLines(dir).length >= linesAtCheckpoint.length + 10,
      WAIT_MS,
    );
    const lines = outLines(dir);
    expect(lines).toEqual(lines.map((_, i) => i + 1));

    // The zombie is waitable, with its status (exit 7).
    const parent = before.get(zombie.ppid)!;
    nsenter(init, ['-p'], ['kill', '-USR1', String(parent.pid)]);
    // The file may be seen created but not yet written: wait for its line.
    const statusFile = path.join(dir, 'zombie-status');
    waitFor(
      'the zombie to be waited for',
      () => /^\d+ \d+$/.test(fs.existsSync(statusFile) ? fs.readFileSync(statusFile, 'utf8') : ''),
      WAIT_MS,
    );
    const [pid, status] = fs
      .readFileSync(path.join(dir, 'zombie-status'), 'utf8')
      .split(' ')
      .map(Number);
    expect(pid).toBe(zombie.pid);
    expect(status).toBe(7 << 8);
  });
});
