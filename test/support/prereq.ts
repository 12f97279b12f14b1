/**
 * Prerequisites of live tests. Under CI=true a missing prerequisite fails
 * the test; elsewhere it fails too, unless CKPT_ALLOW_SKIP=1 is set, in which
 * case the caller may skip with a visible reason.
 */
import { execFileSync } from 'node:child_process';

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** Throws with a clear message when not running as root. */
export function requireRoot(): void {
  if (!isRoot()) {
    throw new Error(
      'live tests must run as root (they ptrace and create processes with chosen pids)',
    );
  }
}

/** Throws unless `cmd` is on PATH. */
export function requireCommand(cmd: string): void {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
  } catch {
    throw new Error(`live tests need '${cmd}' on PATH (.ci/run installs it)`);
  }
}
