/** `ckpt info`: print every record of an image. */
import {
  ARCH_RECORD_RANGE,
  buildTreeView,
  CkptError,
  FdSource,
  formatTreeView,
  ImageReader,
  RecordType,
  type RecordView,
  type Registry,
  type TreeViewEntry,
  type TreeViewNode,
  type TreeViewTask,
  walkImage,
} from '@ckpt/core';
import { printJson } from '../output.js';
import type { Command } from './command.js';

function printView(v: RecordView, regs: (v: RecordView) => string[] | undefined): void {
  process.stdout.write(`@${v.offset} ${v.name} (type ${v.type}, ${v.len} bytes)\n`);
  for (const line of regs(v) ?? v.lines ?? []) process.stdout.write(`    ${line}\n`);
  if (v.raw)
    process.stdout.write(
      `    data: ${v.raw.size} bytes${v.raw.head ? `: ${v.raw.head}${v.raw.size > 32 ? '…' : ''}` : ''}\n`,
    );
}

/**
 * The image's process tree. The whole image is still walked, so a damaged
 * one fails here as it does without --tree.
 */
function readTree(reader: ImageReader, registry: Registry, file: string): TreeViewNode[] {
  let entries: TreeViewEntry[] | undefined;
  const tasks: TreeViewTask[] = [];
  for (const v of walkImage(reader, registry)) {
    if (v.type === RecordType.TREE) entries = (v.decoded as { tasks: TreeViewEntry[] }).tasks;
    else if (v.type === RecordType.TASK) tasks.push(v.decoded as TreeViewTask);
  }
  if (!entries) {
    throw new CkptError(
      'EUNEXPECTED',
      `${file} has no process tree (no tree record, type ${RecordType.TREE})`,
      {
        recordType: RecordType.TREE,
      },
    );
  }
  return buildTreeView(entries, tasks);
}

export const infoCommand: Command = {
  name: 'info',
  summary: 'print an image: its header, then every record in order',
  usage: 'ckpt info [--json] [--regs | --tree] FILE|-',
  help: `Reads a checkpoint image (a file, or standard input with '-'), checks its
framing, checksum and tail, and prints each record with its offset, type and
decoded fields. With --json, prints one JSON document for scripts.

With --tree, prints only the checkpointed process tree, like 'ps --forest':
pid, parent, process group, session, state and command of each task, as
the host saw them; tasks whose parent is not in the image start at the left.
With --json, the tree is an array of nodes in the same order, each with its
depth and its pid at every pid-namespace level.

A defective image stops the listing with a one-line error that names the
byte offset and record type, and a non-zero exit status.`,
  options: {
    regs: { type: 'boolean', description: 'show CPU records as named registers' },
    tree: { type: 'boolean', description: 'print the process tree like ps --forest' },
  },
  run({ positionals, values, registry }) {
    const file = positionals[0];
    if (!file || positionals.length > 1) throw new Error('usage');
    const source = FdSource.open(file);
    try {
      const reader = new ImageReader(source, (t) => registry.recordName(t));
      if (values.tree) {
        const tree = readTree(reader, registry, file);
        if (values.json) printJson({ ok: true, file, tree });
        else process.stdout.write(`${formatTreeView(tree).join('\n')}\n`);
      } else if (values.json) {
        const records = [...walkImage(reader, registry)].map(
          ({ lines: _lines, decoded: _decoded, ...rest }) => rest,
        );
        printJson({ ok: true, file, bytes: reader.offset, records });
      } else {
        let n = 0;
        let archId = 0;
        // With --regs, the image's arch plugin renders its CPU records.
        const regs = (v: RecordView) => {
          if (v.type === RecordType.HEADER) archId = (v.value as { archId: number }).archId;
          if (!values.regs || v.type < ARCH_RECORD_RANGE.first || v.type > ARCH_RECORD_RANGE.last)
            return undefined;
          return registry.arch(archId)?.formatCpu?.(v.type, v.decoded);
        };
        for (const v of walkImage(reader, registry)) {
          printView(v, regs);
          n++;
        }
        process.stdout.write(`${n} records, ${reader.offset} bytes, checksum ok\n`);
      }
    } finally {
      source.close();
    }
    return 0;
  },
};
