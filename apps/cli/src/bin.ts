import { main } from './main.js';

// `ckpt info img | head` closes our stdout early: that is the reader's
// choice, not an error worth a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
}

// Exit at once: everything is done and written (stdout and stderr are
// synchronous on Linux), and waiting for the event loop to wind down
// (the checksum worker, koffi's handles) costs 15-20 ms per command.
process.exit(await main(process.argv.slice(2)));
