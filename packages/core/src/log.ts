/**
 * Logging and progress reporting. The engine never prints directly; it
 * talks to a {@link Logger} and a {@link Progress} supplied by the caller
 * (the CLI renders a bar on a terminal; library users pass their own).
 */

/** Log levels, most verbose first. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3, silent: 4 };

/** Where the engine's messages go. */
export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** A logger writing `ckpt: level: message` lines to a stream. */
export function createLogger(
  level: LogLevel = 'warn',
  write: (line: string) => void = (line) => process.stderr.write(line),
): Logger {
  const at = (l: Exclude<LogLevel, 'silent'>) => (message: string) => {
    if (RANK[l] >= RANK[level]) write(`ckpt: ${l}: ${message}\n`);
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** A logger that discards everything. */
export const silentLogger: Logger = createLogger('silent');

/** Progress of a long piece of work (bytes of memory, tasks of a tree). */
export interface Progress {
  /** A new piece of work of `total` units begins. */
  start(label: string, total: number): void;
  /** `done` units are complete so far. */
  update(done: number): void;
  /** The piece of work is over. */
  end(): void;
}

/** Progress that shows nothing. */
export const silentProgress: Progress = { start() {}, update() {}, end() {} };
