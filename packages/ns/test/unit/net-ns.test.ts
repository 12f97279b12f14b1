import { describe, expect, it } from 'vitest';
import { interfaceNames, localIpv4Addresses, netNsRecord } from '../../src/index.js';

// Texts as a loopback-only namespace shows them, with an address and an interface added.
const DEV = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
dummy0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
`;

const FIB_TRIE = `Local:
  +-- 0.0.0.0/1 2 0 2
     +-- 10.1.1.0/24 2 0 2
        +-- 10.1.1.0/31 1 0 0
           |-- 10.1.1.0
              /24 host LOCAL
           |-- 10.1.1.1
              /32 host LOCAL
        |-- 10.1.1.255
           /32 link BROADCAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
`;

describe('network namespace parsing', () => {
  it('names every interface of /proc/PID/net/dev', () => {
    expect(interfaceNames(DEV)).toEqual(['lo', 'dummy0']);
  });

  it('finds the local /32 addresses of fib_trie, not networks or broadcasts', () => {
    expect(localIpv4Addresses(FIB_TRIE).sort()).toEqual(['10.1.1.1', '127.0.0.1']);
  });

  it('round-trips the net_ns record', () => {
    const rec = { host: false, loopbackUp: true };
    expect(netNsRecord.decode(netNsRecord.encode(rec))).toEqual(rec);
  });
});
