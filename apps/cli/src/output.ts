/** How the CLI talks to people and scripts. */
import { asCkptError, createLogger, type Logger } from '@ckpt/core';

/** Exit codes of the `ckpt` command. */
export const ExitCode = {
  OK: 0,
  /** The operation failed (bad image, process gone, kernel refused…). */
  FAILURE: 1,
  /** The command line was wrong. */
  USAGE: 2,
} as const;

/** A usage mistake: printed with a hint to run --help. */
export class UsageError extends Error {}

/** Print `value` as one JSON document (bigints as strings). */
export function printJson(value: unknown): void {
  process.stdout.write(
    `${JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`,
  );
}

/** Every warning any command's logger gave in this process, for a failure's JSON. */
const warningsGiven: string[] = [];

/**
 * Report a failure on one line, no stack trace (set CKPT_DEBUG=1 for it),
 * and return the exit code. With `json`, stdout also gets one JSON
 * document, `{ ok: false, error, warnings }`, usage mistakes included
 * (error code `EUSAGE`).
 */
export function reportError(e: unknown, json: boolean): number {
  if (process.env.CKPT_DEBUG) console.error(e);
  if (e instanceof UsageError) {
    process.stderr.write(`ckpt: ${e.message}\nRun 'ckpt --help' for usage.\n`);
    if (json) {
      printJson({ ok: false, error: { code: 'EUSAGE', message: e.message }, warnings: [] });
    }
    return ExitCode.USAGE;
  }
  const err = asCkptError(e, 'ckpt');
  if (json) printJson({ ok: false, error: err.toJSON(), warnings: warningsGiven });
  else process.stderr.write(`ckpt: error: ${err.oneLine()}\n`);
  return ExitCode.FAILURE;
}

/**
 * The logger commands give the engine: warnings (and errors) go to stderr
 * as `ckpt: warn: …` lines and are kept in `warnings`, for `--json`.
 */
export function cliLogger(warnings: string[]): Logger {
  const stderr = createLogger('warn');
  return {
    ...stderr,
    warn(message) {
      warnings.push(message);
      warningsGiven.push(message);
      stderr.warn(message);
    },
  };
}
