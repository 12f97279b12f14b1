import { main } from './main.js';

// `ckpt info img | head` closes our stdout early: that is the reader's
// choice, not an error worth a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
}

// Exit at once when all output is written: waiting for the event loop to
// wind down (the checksum worker, koffi's handles) costs 15-20 ms per
// command. Output still queued (a pipe that was full: `ckpt info --json`
// of a large image) must drain first, through the event loop.
const code = await main(process.argv.slice(2));
if (process.stdout.writableLength === 0 && process.stderr.writableLength === 0) process.exit(code);
process.exitCode = code;
