/**
 * Editing images in tests, as a corrupted or tampered image would be: a
 * record rewritten in place, with the tail's checksum made right again so
 * that only the edited value is wrong.
 */
import fs from 'node:fs';
import { type RecordSchema, RecordType, StreamCrc } from '@ckpt/core';

/**
 * Rewrite every record of `schema` in image `img` with `edit(value)`; the
 * edited value must fit the record as padded (to 8 bytes). Returns how many
 * were edited.
 */
export function patchRecords<T>(
  img: string,
  schema: RecordSchema<T>,
  edit: (value: T) => T,
): number {
  const buf = fs.readFileSync(img);
  let edited = 0;
  for (let off = 0; off < buf.length; ) {
    const type = buf.readUInt32LE(off);
    const len = buf.readUInt32LE(off + 4);
    if (type === schema.type) {
      const payload = buf.subarray(off + 8, off + len);
      const encoded = schema.encode(edit(schema.decode(payload)));
      if (((encoded.length + 8 + 7) & ~7) !== len) {
        throw new Error(`${schema.name} at offset ${off}: the edit changes its size`);
      }
      payload.fill(0);
      encoded.copy(payload);
      edited++;
    } else if (type === RecordType.TAIL) {
      const crc = new StreamCrc();
      crc.update(buf.subarray(0, off));
      buf.writeUInt32LE(crc.current, off + 16); // after the header and `records: u64`
    }
    off += len;
  }
  fs.writeFileSync(img, buf);
  return edited;
}
