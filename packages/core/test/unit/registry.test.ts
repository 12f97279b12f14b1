import { describe, expect, it } from 'vitest';
import {
  BufferSink,
  BufferSource,
  CheckpointCtx,
  type CheckpointTask,
  type CkptPlugin,
  corePlugin,
  definePlugin,
  defineRecord,
  type FileInfo,
  ImageReader,
  ImageWriter,
  makeHeader,
  Registry,
  RestartCtx,
  type RestartTask,
  readHeader,
  u32,
  writeHeader,
} from '../../src/index.js';
import { type EventCounter, eventCountPlugin, world } from '../fixtures/eventcount-plugin.js';

const noop = () => {};
// This plugin's phases only use pid and data; the kernel-facing parts of a
// task are exercised by the live tests.
const ckptTask = (pid: number) => ({ pid, data: new Map() }) as unknown as CheckpointTask;
const rstTask = (pid: number) =>
  ({ pid, savedPid: pid, data: new Map() }) as unknown as RestartTask;
const phase = (name: string, order: number) => ({ name, order, checkpoint: noop, restore: noop });
const vma = (kind: string, id: number) => ({
  kind,
  id,
  match: () => false,
  describe: () => ({
    start: 0n,
    end: 0n,
    prot: 0,
    flags: 0,
    pgoff: 0n,
    madv: 0,
    path: '',
    kind: id,
    nrPages: 0,
  }),
  pages: () => [],
  restore: () => undefined,
});

describe('Registry', () => {
  it('orders task phases by order, then registration', () => {
    const r = new Registry([
      definePlugin({ name: 'a', phases: [phase('mm', 300), phase('creds', 900)] }),
      definePlugin({ name: 'b', phases: [phase('files', 300), phase('cpu', 100)] }),
    ]);
    expect(r.phases().map((p) => p.name)).toEqual(['cpu', 'mm', 'files', 'creds']);
  });

  it('rejects duplicate plugins, record types, record names, object types, phases and handlers', () => {
    const rec = defineRecord(7200, 'dup', 'x', { n: u32() });
    const base = definePlugin({
      name: 'base',
      records: [rec],
      objects: [{ name: 'thing', id: 1, checkpoint: noop, restore: () => 0 }],
      phases: [phase('p', 1)],
      files: [{ kind: 'weird', id: 1, match: () => false, checkpoint: noop, restore: () => 0 }],
      vmas: [vma('odd', 1)],
    });
    const cases: [CkptPlugin, RegExp][] = [
      [base, /plugin base is registered twice/],
      [{ name: 'x1', records: [rec] }, /record type 7200 \(dup\), already registered by base/],
      [{ name: 'x2', records: [defineRecord(7201, 'dup', 'y', {})] }, /record name 'dup'/],
      [
        { name: 'x3', objects: [{ name: 'thing', id: 2, checkpoint: noop, restore: () => 0 }] },
        /object type 'thing'/,
      ],
      [
        { name: 'x4', objects: [{ name: 'other', id: 1, checkpoint: noop, restore: () => 0 }] },
        /object type id 1/,
      ],
      [{ name: 'x5', phases: [phase('p', 2)] }, /task phase 'p'/],
      [
        {
          name: 'x6',
          files: [{ kind: 'weird', id: 9, match: () => true, checkpoint: noop, restore: () => 0 }],
        },
        /file handler 'weird'/,
      ],
      [
        {
          name: 'x7',
          vmas: [vma('new', 1)],
        },
        /VMA handler 'new' \(id 1\)/,
      ],
      [{ name: 'x8', phases: [phase('q', 1), phase('q', 2)] }, /task phase 'q'/],
    ];
    for (const [plugin, message] of cases) {
      const r = new Registry([base]);
      expect(() => r.use(plugin), plugin.name).toThrow(message);
      // A rejected plugin leaves nothing behind.
      expect(r.plugins.map((p) => p.name)).toEqual(['base']);
    }
  });

  it('core registers its records through the plugin API', () => {
    const r = new Registry([corePlugin]);
    expect(r.recordName(1)).toBe('header');
    expect(r.recordName(9001)).toBe('tail');
    expect(r.recordKind(4)?.kind).toBe('raw');
  });

  it('picks the first matching file and VMA handler', () => {
    const r = new Registry([
      definePlugin({
        name: 'h',
        files: [
          {
            kind: 'pipe',
            id: 2,
            match: (f) => f.target.kind === 'pipe',
            checkpoint: noop,
            restore: () => 0,
          },
          { kind: 'any', id: 3, match: () => true, checkpoint: noop, restore: () => 0 },
        ],
      }),
    ]);
    const file = {
      pid: 1,
      fd: 3,
      target: { kind: 'pipe', text: 'pipe:[5]', inode: 5 },
    } as FileInfo;
    expect(r.fileHandlerFor(file)?.kind).toBe('pipe');
    expect(
      r.fileHandlerFor({ ...file, target: { kind: 'path', text: '/x', path: '/x' } })?.kind,
    ).toBe('any');
    expect(r.fileHandlerById(2)?.kind).toBe('pipe');
  });
});

describe('a third-party plugin, registered from outside core', () => {
  it('checkpoints a shared object once and restores it for every task through the objhash', () => {
    // Core's records only: its own phases need live tasks.
    const registry = new Registry([{ ...corePlugin, phases: [] }, eventCountPlugin]);
    const shared: EventCounter = { name: 'ticks', value: 41n };
    world.clear();
    world.set(100, shared);
    world.set(101, shared);
    world.set(102, { name: 'other', value: 7n });

    const sink = new BufferSink();
    const writer = new ImageWriter(sink);
    const ckpt = new CheckpointCtx(writer, { registry });
    writeHeader(writer, makeHeader({ archId: 1, nsig: 64 }));
    for (const pid of [100, 101, 102]) {
      for (const p of registry.phases()) p.checkpoint(ckpt, ckptTask(pid));
    }
    writer.finish();
    // Shared counter written once: 2 counters, 3 task references, 2 objref records.
    expect(ckpt.objhash.entries().map((e) => [e.objref, e.users])).toEqual([
      [1, 1],
      [2, 1],
    ]);
    expect(writer.records).toBe(1 + 2 * 2 + 3);

    world.clear();
    const reader = new ImageReader(new BufferSource(sink.contents()), (t) =>
      registry.recordName(t),
    );
    const rst = new RestartCtx(reader, { registry });
    readHeader(reader);
    for (const pid of [100, 101, 102]) {
      for (const p of registry.phases()) p.restore(rst, rstTask(pid));
    }
    expect(reader.next()).toBeNull();
    expect(world.get(100)).toEqual({ name: 'ticks', value: 41n });
    expect(world.get(100)).toBe(world.get(101)); // the same object, shared again
    expect(world.get(102)).toEqual({ name: 'other', value: 7n });
  });

  it('a reference to an objref never defined is an error', () => {
    // Core's records only: its own phases need live tasks.
    const registry = new Registry([{ ...corePlugin, phases: [] }, eventCountPlugin]);
    const sink = new BufferSink();
    const writer = new ImageWriter(sink);
    writeHeader(writer, makeHeader({ archId: 1, nsig: 64 }));
    writer.write(eventCountPlugin.records![1] as never, { objref: 9 } as never);
    writer.finish();
    const reader = new ImageReader(new BufferSource(sink.contents()));
    const rst = new RestartCtx(reader, { registry });
    readHeader(reader);
    expect(() => registry.phases()[0]!.restore(rst, rstTask(1))).toThrow(
      /objref 9 \(eventcount\) is referenced but was never defined/,
    );
  });
});
