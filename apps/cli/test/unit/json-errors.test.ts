/**
 * `--json` on failure: one JSON document on stdout, `{ ok: false, error,
 * warnings }`, for usage mistakes too (code EUSAGE, exit 2), besides the
 * line on stderr.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = new URL('../../../../', import.meta.url).pathname;
const bin = join(root, 'apps/cli/dist/bin.js');

function ckpt(args: string[]) {
  return spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
}

describe('--json failures', () => {
  it.each([
    [['checkpoint', '--json'], /usage: ckpt checkpoint/],
    [['checkpoint', 'abc', '-o', 'x', '--json'], /'abc' is not a pid/],
    [['checkpoint', '1', '-o', 'x', '--bogus', '--json'], /Unknown option '--bogus'/],
    [['restart', '--json'], /usage: ckpt restart/],
    [['frobnicate', '--json'], /unknown command 'frobnicate'/],
  ])('a usage mistake (%j) is JSON with code EUSAGE and exit 2', (args, message) => {
    const r = ckpt(args);
    expect(r.status).toBe(2);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ ok: false, error: { code: 'EUSAGE' }, warnings: [] });
    expect(out.error.message).toMatch(message);
    expect(r.stderr).toContain("Run 'ckpt --help' for usage.");
  });

  it('a failed command is JSON with its error and the warnings list', () => {
    const r = ckpt(['info', '/nonexistent-ckpt-image', '--json']);
    expect(r.status).toBe(1);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ ok: false, error: { code: 'ENOENT' }, warnings: [] });
  });
});
