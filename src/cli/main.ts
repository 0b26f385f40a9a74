#!/usr/bin/env node
/**
 * The `mta-sts` executable: wires {@link runCli} to the process (argv, streams, environment, exit code).
 *
 * Output errors are handled here, where the streams are the process's:
 * - `EPIPE` on stdout (the reader went away, as in `mta-sts check … | head -1`): the reader asked for no more, so
 *   the process ends at once, quietly, with exit code 0;
 * - any other stdout error (`> /dev/full`: ENOSPC, EIO …): one line on stderr and exit code 2, since the results
 *   were not delivered;
 * - stderr errors are ignored (there is nowhere left to report them).
 */
import { EXIT_OK, EXIT_USAGE } from './io.js';
import { runCli } from './program.js';

process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(EXIT_OK);
  try {
    process.stderr.write(`mta-sts: cannot write the output: ${error.code ?? error.message}\n`);
  } finally {
    process.exit(EXIT_USAGE);
  }
});
process.stderr.on('error', () => {});

runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env, cwd: process.cwd() }).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`mta-sts: internal error: ${String(error)}\n`);
    process.exitCode = EXIT_USAGE;
  },
);
