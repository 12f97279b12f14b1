import { describe, expect, it } from 'vitest';
import { pressureFileKind } from '../../src/pressure.js';

describe('PSI files that take triggers', () => {
  it('are /proc/pressure/RESOURCE and a cgroup’s RESOURCE.pressure', () => {
    expect(pressureFileKind('/proc/pressure/cpu')).toBe('proc');
    expect(pressureFileKind('/proc/pressure/memory')).toBe('proc');
    expect(pressureFileKind('/proc/pressure/io')).toBe('proc');
    expect(pressureFileKind('/proc/pressure/irq')).toBe('proc');
    expect(pressureFileKind('/sys/fs/cgroup/system.slice/memory.pressure')).toBe('cgroup');
    expect(pressureFileKind('/sys/fs/cgroup/cpu.pressure')).toBe('cgroup');
  });

  it('leave out cgroup.pressure and other files', () => {
    expect(pressureFileKind('/sys/fs/cgroup/a/cgroup.pressure')).toBeUndefined();
    expect(pressureFileKind('/proc/pressure')).toBeUndefined();
    expect(pressureFileKind('/proc/loadavg')).toBeUndefined();
    expect(pressureFileKind('/tmp/pressure/log')).toBeUndefined();
    expect(pressureFileKind('/sys/fs/cgroup/a/memory.current')).toBeUndefined();
  });
});
