/**
 * `ckpt info` as a user runs it: the built CLI on generated images, good
 * and damaged. (`pnpm test` builds before testing.)
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

const root = new URL('../../../../', import.meta.url).pathname;
const bin = join(root, 'apps/cli/dist/bin.js');
let dir: string;
let image: string;

function ckpt(args: string[], input?: Buffer) {
  const r = spawnSync(process.execPath, [bin, ...args], { input, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ckpt-info-'));
  image = join(dir, 'sample.img');
  const r = spawnSync(process.execPath, [join(root, 'scripts/make-sample-image.mjs'), image], {
    encoding: 'utf8',
  });
  expect(r.status, r.stderr).toBe(0);
});

function damaged(name: string, fn: (b: Buffer) => Buffer): string {
  const p = join(dir, name);
  writeFileSync(p, fn(readFileSync(image)));
  return p;
}

describe('ckpt info', () => {
  it('prints the header and every record, then the tail', () => {
    const r = ckpt(['info', image]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^@0 header \(type 1, \d+ bytes\)/);
    expect(r.stdout).toContain('archId: x86_64 (1)');
    expect(r.stdout).toContain('pageSize: 4096');
    expect(r.stdout).toMatch(/@\d+ string \(type 5/);
    expect(r.stdout).toMatch(/@\d+ buffer \(type 4/);
    expect(r.stdout).toMatch(/@\d+ tail \(type 9001/);
    expect(r.stdout).toMatch(/checksum ok/);
  });

  it('reads standard input with -', () => {
    const r = ckpt(['info', '-'], readFileSync(image));
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('checksum ok');
  });

  it('--json gives one parseable document', () => {
    const r = ckpt(['info', '--json', image]);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.ok).toBe(true);
    expect(doc.records.map((x: { name: string }) => x.name)).toEqual([
      'header',
      'string',
      'objref',
      'buffer',
      'tail',
    ]);
    expect(doc.records[0].value.release).toBeTypeOf('string');
  });

  // The second record (a string) starts where the header record ends.
  const second = () => readFileSync(image).readUInt32LE(4);
  const bad: [string, (b: Buffer) => Buffer, RegExp | (() => RegExp)][] = [
    ['truncated', (b) => b.subarray(0, b.length - 20), /offset \d+/],
    [
      'bit-flipped',
      (b) => {
        const c = Buffer.from(b);
        c[150]! ^= 4;
        return c;
      },
      /checksum mismatch at tail \(offset \d+\)/,
    ],
    [
      'over-long',
      (b) => Buffer.concat([b, Buffer.from('garbage!')]),
      /after the tail record at offset \d+/,
    ],
    ['empty', () => Buffer.alloc(0), /offset 0/],
    [
      'bad length',
      (b) => {
        const c = Buffer.from(b);
        c.writeUInt32LE(13, second() + 4); // the string record's len
        return c;
      },
      () =>
        new RegExp(
          `offset ${second()}.*not a multiple of 8|not a multiple of 8.*offset ${second()}`,
        ),
    ],
  ];
  for (const [name, fn, message] of bad) {
    it(`a ${name} image: non-zero exit, one line naming the offset, no stack trace`, () => {
      const r = ckpt(['info', damaged(`${name}.img`, fn)]);
      expect(r.code).toBe(1);
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^ckpt: error: /);
      expect(lines[0]).toMatch(typeof message === 'function' ? message() : message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    });
  }

  it('--json errors are JSON too', () => {
    const r = ckpt(['info', '--json', damaged('t2.img', (b) => b.subarray(0, 100))]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).error.code).toBe('ETRUNC');
  });

  it('a missing file is a clear error', () => {
    const r = ckpt(['info', join(dir, 'nope.img')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot open image '.*nope.img'/);
  });
});

describe('ckpt', () => {
  it('--help lists the commands; --version prints the version', () => {
    const help = ckpt(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Usage: ckpt \[options\] COMMAND/);
    expect(help.stdout).toMatch(/info\s+print an image/);
    const v = ckpt(['--version']);
    expect(v.stdout.trim()).toBe(
      JSON.parse(readFileSync(join(root, 'apps/cli/package.json'), 'utf8')).version,
    );
    expect(ckpt(['info', '--help']).stdout).toMatch(/Usage: ckpt info/);
  });

  it('unknown commands and options are usage errors (exit 2)', () => {
    expect(ckpt(['frobnicate']).code).toBe(2);
    const r = ckpt(['info', '--nope', image]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Run 'ckpt --help'/);
  });

  it('--plugin loads a plugin module; a bad one is a clear error', () => {
    const plugin = join(dir, 'p.mjs');
    writeFileSync(plugin, "export default { name: 'test-plugin', records: [] };\n");
    expect(ckpt(['info', '--plugin', plugin, image]).code).toBe(0);
    const notPlugin = join(dir, 'np.mjs');
    writeFileSync(notPlugin, 'export const x = 1;\n');
    const r = ckpt(['info', '--plugin', notPlugin, image]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/does not export a plugin object/);
    const dup = join(dir, 'dup.mjs');
    writeFileSync(dup, "export default { name: '@ckpt/mm' };\n");
    expect(ckpt(['info', '--plugin', dup, image]).stderr).toMatch(/registered twice/);
  });
});
