import { describe, expect, it } from 'vitest';
import { capName, capsetArgs, capsIn, describeCaps, hasCap, knownCaps } from '../../src/caps.js';
import { capabilitiesRecord, credRecord } from '../../src/records.js';

describe('capability masks', () => {
  it('names capabilities, and numbers past the table', () => {
    expect(capName(7)).toBe('CAP_SETUID');
    expect(capName(40)).toBe('CAP_CHECKPOINT_RESTORE');
    expect(capName(41)).toBe('capability 41');
  });

  it('lists the bits of a mask, high ones included', () => {
    const mask = (1n << 0n) | (1n << 5n) | (1n << 40n);
    expect(capsIn(mask)).toEqual([0, 5, 40]);
    expect(capsIn(0n)).toEqual([]);
    expect(hasCap(mask, 40)).toBe(true);
    expect(hasCap(mask, 39)).toBe(false);
    expect(describeCaps(0x21n)).toBe('CAP_CHOWN, CAP_KILL');
  });

  it('knows at least the capabilities up to CAP_CHECKPOINT_RESTORE on this kernel', () => {
    expect(capsIn(knownCaps()).length).toBeGreaterThanOrEqual(41);
  });
});

describe('capset arguments', () => {
  it('puts version 3 and pid 0 in the header, the low then the high 32 bits in the data', () => {
    const [hdr, data] = capsetArgs({
      effective: (1n << 33n) | 1n,
      permitted: (1n << 40n) | 0xffn,
      inheritable: 1n << 32n,
    });
    expect(hdr.readUInt32LE(0)).toBe(0x20080522);
    expect(hdr.readInt32LE(4)).toBe(0);
    const words = [0, 1, 2, 3, 4, 5].map((i) => data.readUInt32LE(i * 4));
    // {effective, permitted, inheritable} for capabilities 0-31, then 32-63.
    expect(words).toEqual([1, 0xff, 0, 2, 1 << 8, 1]);
  });
});

describe('records', () => {
  it('round-trip a task credential set', () => {
    const cred = {
      uid: { real: 1000, effective: 1001, saved: 1002, fs: 1001 },
      gid: { real: 0, effective: 0, saved: 0, fs: 0 },
      groups: [2000, 2001],
      securebits: 0x10,
      noNewPrivs: true,
      dumpable: 1,
    };
    expect(credRecord.decode(credRecord.encode(cred))).toEqual(cred);
    const caps = {
      inheritable: 1n,
      permitted: 0x421n,
      effective: 0x20n,
      bounding: 0x1fff6feffffn,
      ambient: 1n,
    };
    expect(capabilitiesRecord.decode(capabilitiesRecord.encode(caps))).toEqual(caps);
  });
});
