#!/usr/bin/env node
// Writes a small, valid ckpt image with core's records, for `ckpt info`
// demos and tests of the CLI. Usage: node scripts/make-sample-image.mjs OUT
import {
  bufferRecord,
  FdSink,
  hostArchId,
  ImageWriter,
  makeHeader,
  objrefRecord,
  stringRecord,
  writeHeader,
} from '@ckpt/core';

const out = process.argv[2];
if (!out) {
  console.error('usage: make-sample-image.mjs OUT');
  process.exit(2);
}
const sink = FdSink.open(out);
const w = new ImageWriter(sink);
writeHeader(w, makeHeader({ archId: hostArchId() ?? 1, nsig: 64 }));
w.write(stringRecord, { value: 'a sample image written by scripts/make-sample-image.mjs' });
w.write(objrefRecord, { objType: 1, objref: 1 });
w.writeRaw(bufferRecord, Buffer.from('the bytes of a raw record, streamed by readers'));
w.finish();
sink.close();
console.log(`wrote ${out}: ${w.records + 1} records, ${w.offset} bytes`);
