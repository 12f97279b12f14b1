/**
 * `ckpt check` on this machine (root, kernel 6.18): every feature ckpt
 * relies on is probed for real and found, each with what it is used for.
 */
import { describe, expect, it } from 'vitest';
import { ckpt } from '../../../../test/support/ckpt.js';
import { requireCommand, requireRoot } from '../../../../test/support/prereq.js';

describe('ckpt check', () => {
  it('finds every feature, required or not, and says so', () => {
    requireRoot();
    requireCommand('nft');
    const r = ckpt(['check', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as {
      ok: boolean;
      checks: { name: string; required: boolean; ok: boolean; detail: string }[];
    };
    expect(doc.ok).toBe(true);
    const byName = new Map(doc.checks.map((c) => [c.name, c]));
    for (const name of [
      'PR_SET_MM_MAP',
      'kcmp',
      'pidfd_open / pidfd_getfd',
      'ptrace (PTRACE_SEIZE, PTRACE_INTERRUPT)',
      'syscall injection',
      'clone3 with set_tid',
      'memfd_create and seals',
      'open_by_handle_at',
      'PTRACE_GET_RSEQ_CONFIGURATION',
      'userfaultfd',
      'PR_TIMER_CREATE_RESTORE_IDS',
      'seccomp (PTRACE_O_SUSPEND_SECCOMP, PTRACE_SECCOMP_GET_FILTER)',
      'SysV IPC ids and MSG_COPY',
      'TCP repair mode (TCP_REPAIR)',
      'TCP network lock (nftables)',
    ]) {
      expect(byName.get(name), name).toMatchObject({ ok: true });
    }
    for (const c of doc.checks.filter((c) => c.required)) expect(c.ok, c.name).toBe(true);
    // Without --json: one line per feature and a verdict.
    const text = ckpt(['check']);
    expect(text.stdout).toMatch(/^ok\s+open_by_handle_at\s+available/m);
    expect(text.stdout.trim().split('\n').at(-1)).toBe('ckpt can checkpoint and restart here.');
  });
});
