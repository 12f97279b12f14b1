import { describe, expect, it } from 'vitest';
import { parseProcTimers } from '../../src/taskstate/timers.js';

describe('parseProcTimers', () => {
  it('reads every timer of /proc/PID/timers with how it notifies', () => {
    const text = [
      'ID: 77',
      'signal: 10/0000000000001234',
      'notify: signal/pid.25529',
      'ClockID: 1',
      'ID: 0',
      'signal: 14/0000000000000000',
      'notify: none/pid.25529',
      'ClockID: 0',
      'ID: 3',
      'signal: 34/00007f0000000010',
      'notify: signal/tid.25531',
      'ClockID: 2',
      '',
    ].join('\n');
    expect(parseProcTimers(text)).toEqual([
      { id: 77, signo: 10, value: 0x1234n, notify: 0, tid: 0, clockid: 1 },
      { id: 0, signo: 14, value: 0n, notify: 1, tid: 0, clockid: 0 },
      { id: 3, signo: 34, value: 0x7f0000000010n, notify: 4, tid: 25531, clockid: 2 },
    ]);
  });

  it('gives nothing for a process without timers', () => {
    expect(parseProcTimers('')).toEqual([]);
  });
});
