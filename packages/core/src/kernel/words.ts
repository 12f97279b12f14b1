/** Machine words in buffers shared with a task. */

/**
 * Write `v` as a 64-bit two's complement word at `at` (little-endian): a
 * safe integer as two 32-bit halves, without a BigInt (batches write
 * thousands of words, often in code not yet optimized), anything else
 * through BigInt.
 */
export function put64(buf: Buffer, at: number, v: bigint | number): void {
  if (typeof v === 'number' && Number.isSafeInteger(v)) {
    buf.writeUInt32LE(v >>> 0, at);
    buf.writeUInt32LE(Math.floor(v / 2 ** 32) >>> 0, at + 4);
  } else {
    buf.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v)), at);
  }
}
