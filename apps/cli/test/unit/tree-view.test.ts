/**
 * The forest `ckpt info --tree` prints, built from constructed tree and
 * task records: nesting, image order, orphans, and damaged input.
 */
import {
  buildTreeView,
  formatTreeView,
  TaskState,
  type TreeViewEntry,
  type TreeViewTask,
} from '@ckpt/core';
import { describe, expect, it } from 'vitest';

function entry(pid: number, ppid: number, pgid = pid, sid = pid): TreeViewEntry {
  return { pid, tgid: pid, ppid, pgid, sid, nsPids: [pid] };
}

function task(pid: number, comm: string, state: number = TaskState.RUNNING): TreeViewTask {
  return { pid, comm, state };
}

const rows = (entries: TreeViewEntry[], tasks: TreeViewTask[]) =>
  buildTreeView(entries, tasks).map((n) => [n.pid, n.depth, n.comm, n.state]);

describe('buildTreeView', () => {
  it('nests several levels depth-first, children in image order', () => {
    const entries = [
      entry(10, 1),
      entry(11, 10, 10, 10),
      entry(12, 11, 10, 10),
      entry(13, 12, 13, 10),
      entry(14, 10, 14, 10),
    ];
    const tasks = [
      task(10, 'init'),
      task(11, 'sh'),
      task(12, 'cat', TaskState.STOPPED),
      task(13, 'sleep'),
      task(14, 'defunct', TaskState.ZOMBIE),
    ];
    expect(rows(entries, tasks)).toEqual([
      [10, 0, 'init', 'running'],
      [11, 1, 'sh', 'running'],
      [12, 2, 'cat', 'stopped'],
      [13, 3, 'sleep', 'running'],
      [14, 1, 'defunct', 'zombie'],
    ]);
  });

  it('keeps the order the image gives siblings (the restore order), not pid order', () => {
    const entries = [entry(10, 1), entry(30, 10), entry(20, 10)];
    expect(buildTreeView(entries, []).map((n) => n.pid)).toEqual([10, 30, 20]);
  });

  it('shows entries whose parent is not in the image at top level', () => {
    // 21 was reparented to a subreaper outside the image; 40's parent exited.
    const entries = [entry(10, 1), entry(11, 10), entry(21, 5), entry(40, 999), entry(41, 40)];
    expect(rows(entries, []).map(([pid, depth]) => [pid, depth])).toEqual([
      [10, 0],
      [11, 1],
      [21, 0],
      [40, 0],
      [41, 1],
    ]);
  });

  it('copies the ids of the tree entry and marks what the image does not say', () => {
    const e: TreeViewEntry = { pid: 500, tgid: 500, ppid: 499, pgid: 7, sid: 6, nsPids: [500, 1] };
    expect(buildTreeView([e], [])).toEqual([
      {
        pid: 500,
        tgid: 500,
        ppid: 499,
        pgid: 7,
        sid: 6,
        nsPids: [500, 1],
        state: '?',
        comm: '?',
        threads: [],
        depth: 0,
      },
    ]);
  });

  it('shows each entry of a damaged image once: parent cycles, self-parents, repeated pids', () => {
    const entries = [entry(1, 0), entry(5, 6), entry(6, 5), entry(7, 7), entry(1, 0)];
    const view = buildTreeView(entries, []);
    expect(view.map((n) => n.pid).sort()).toEqual([1, 1, 5, 6, 7]);
    expect(view.find((n) => n.pid === 7)!.depth).toBe(0);
  });

  it('handles a chain deeper than the JS stack would allow recursion for', () => {
    const entries = Array.from({ length: 20_000 }, (_, i) => entry(i + 2, i + 1));
    const view = buildTreeView(entries, []);
    expect(view).toHaveLength(20_000);
    expect(view.at(-1)!.depth).toBe(19_999);
  });
  it('takes comm and state from the tree entry when it has them (a zombie has no task record)', () => {
    const entries = [entry(10, 1), { ...entry(11, 10), comm: 'defunct', state: TaskState.ZOMBIE }];
    expect(rows(entries, [task(10, 'sh'), task(11, 'stale', TaskState.RUNNING)])).toEqual([
      [10, 0, 'sh', 'running'],
      [11, 1, 'defunct', 'zombie'],
    ]);
  });
});

describe('formatTreeView', () => {
  it('prints ps-like columns and indents children with \\_', () => {
    const threads = [{ nsTids: [14] }, { nsTids: [15] }];
    const entries = [
      entry(10, 1),
      entry(11, 10, 10, 10),
      { ...entry(12, 11, 12, 10), threads },
      entry(13, 10),
    ];
    const tasks = [task(10, 'init'), task(11, 'sh'), task(12, 'sleep'), task(13, 'cat')];
    expect(formatTreeView(buildTreeView(entries, tasks))).toEqual([
      '    PID    PPID    PGID     SID NLWP STATE    COMMAND',
      '     10       1      10      10    1 running  init',
      '     11      10      10      10    1 running   \\_ sh',
      '     12      11      12      10    3 running       \\_ sleep',
      '     13      10      13      13    1 running   \\_ cat',
    ]);
  });

  it('shows control characters in a command name as ?', () => {
    const lines = formatTreeView(buildTreeView([entry(10, 1)], [task(10, 'a\nb\x1b')]));
    expect(lines[1]).toMatch(/ a\?b\?$/);
  });
});
