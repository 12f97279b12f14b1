/**
 * Samples captured from this machine's /proc (Linux 6.18, x86-64). Most come
 * from one test program that renamed itself "a) (b c)", mapped an unlinked
 * file whose name has a space, made MAP_GROWSDOWN, MADV_DONTDUMP and shared
 * anonymous VMAs, blocked SIGUSR1, ignored SIGUSR2, and opened a pipe,
 * eventfd, inotify, timerfd, epoll and signalfd.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = join(import.meta.dirname, 'fixtures');

/** A captured sample as text. */
export function sample(name: string): string {
  return readFileSync(join(dir, name), 'utf8');
}

/** A captured sample as bytes. */
export function sampleBytes(name: string): Uint8Array {
  return readFileSync(join(dir, name));
}
