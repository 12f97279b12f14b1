/**
 * The process tree of an image as `ps --forest` shows it: built from the
 * `tree` record (parent links, groups, sessions) and each task's `task`
 * record (comm, state). Pure, so a hostile image can only make it print
 * odd rows, never loop or throw.
 */
import { TaskState } from './records.js';

/**
 * What the view needs of a `tree` record entry. Structural, so it takes the
 * decoded entry as it is; `comm` and `state`, when the entry carries them,
 * win over the task record's (a zombie may have no task record).
 */
export interface TreeViewEntry {
  pid: number;
  tgid: number;
  ppid: number;
  pgid: number;
  sid: number;
  nsPids: readonly number[];
  comm?: string;
  state?: number;
  /** The process's other threads (ids at every level, outermost first). */
  threads?: readonly { nsTids: readonly number[] }[];
}

/** What the view needs of a `task` record. */
export interface TreeViewTask {
  pid: number;
  comm: string;
  state: number;
}

/** One row of the forest, in display order. */
export interface TreeViewNode {
  pid: number;
  tgid: number;
  ppid: number;
  pgid: number;
  sid: number;
  /** The pid at every pid-namespace level, outermost first. */
  nsPids: number[];
  /** `running`, `stopped` or `zombie`; `?` when the image does not say. */
  state: string;
  /** Command name; `?` when the image does not say. */
  comm: string;
  /** Ids of its other threads, as the checkpoint saw them. */
  threads: number[];
  /** 0 for a root (its parent is not in the image), 1 for its children, … */
  depth: number;
}

const stateNames = new Map<number, string>(
  Object.entries(TaskState).map(([name, n]) => [n, name.toLowerCase()]),
);

/**
 * Arrange the image's tasks as a forest, depth-first. Roots are the tasks
 * whose parent is not in the image (the checkpointed root, and any task
 * whose ppid points outside), in image order; children follow their parent
 * in image order, which is the restore order. Entries that only reach each
 * other through a parent cycle (possible in a damaged image) are shown as
 * roots rather than dropped.
 */
export function buildTreeView(
  entries: readonly TreeViewEntry[],
  tasks: readonly TreeViewTask[],
): TreeViewNode[] {
  const taskByPid = new Map<number, TreeViewTask>();
  for (const t of tasks) if (!taskByPid.has(t.pid)) taskByPid.set(t.pid, t);
  // Indexes, not pids: a damaged image may repeat a pid, and every entry
  // must still be shown exactly once.
  const indexByPid = new Map<number, number>();
  entries.forEach((e, i) => {
    if (!indexByPid.has(e.pid)) indexByPid.set(e.pid, i);
  });
  const children = entries.map((): number[] => []);
  const roots: number[] = [];
  entries.forEach((e, i) => {
    const parent = indexByPid.get(e.ppid);
    if (parent === undefined || parent === i) roots.push(i);
    else children[parent]!.push(i);
  });

  const out: TreeViewNode[] = [];
  const seen = new Set<number>();
  const visit = (root: number) => {
    // Explicit stack: a long chain of processes must not overflow the JS stack.
    const stack: [number, number][] = [[root, 0]];
    for (let item = stack.pop(); item; item = stack.pop()) {
      const [i, depth] = item;
      if (seen.has(i)) continue;
      seen.add(i);
      const e = entries[i]!;
      const task = taskByPid.get(e.pid);
      const state = e.state ?? task?.state;
      out.push({
        pid: e.pid,
        tgid: e.tgid,
        ppid: e.ppid,
        pgid: e.pgid,
        sid: e.sid,
        nsPids: [...e.nsPids],
        state: state === undefined ? '?' : (stateNames.get(state) ?? `state ${state}`),
        comm: e.comm ?? task?.comm ?? '?',
        threads: (e.threads ?? []).map((t) => t.nsTids[0] ?? 0),
        depth,
      });
      const kids = children[i]!;
      for (let k = kids.length - 1; k >= 0; k--) stack.push([kids[k]!, depth + 1]);
    }
  };
  for (const r of roots) visit(r);
  entries.forEach((_e, i) => {
    visit(i);
  });
  return out;
}

/** Non-printable characters as `?`, as ps shows them: comm comes from the image. */
function printable(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: replacing them is the point
  return s.replace(/[\x00-\x1f\x7f]/g, '?');
}

/**
 * The forest as text lines like `ps -o pid,ppid,pgid,sid,nlwp,stat,comm
 * --forest`: a header, then one row per node (NLWP: its number of threads)
 * with the command indented under its parent (`\_`).
 */
export function formatTreeView(nodes: readonly TreeViewNode[]): string[] {
  const num = (n: number | string) => String(n).padStart(7);
  const row = (cells: (number | string)[], nlwp: number | string, state: string, command: string) =>
    `${cells.map(num).join(' ')} ${String(nlwp).padStart(4)} ${state.padEnd(8)} ${command}`;
  const lines = [row(['PID', 'PPID', 'PGID', 'SID'], 'NLWP', 'STATE', 'COMMAND')];
  for (const n of nodes) {
    const indent = n.depth === 0 ? '' : `${'    '.repeat(n.depth - 1)} \\_ `;
    const nlwp = n.state === 'zombie' ? 0 : n.threads.length + 1;
    lines.push(row([n.pid, n.ppid, n.pgid, n.sid], nlwp, n.state, indent + printable(n.comm)));
  }
  return lines;
}
