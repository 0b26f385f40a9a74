#!/usr/bin/env node
/**
 * The `mta-sts` executable: wires {@link runCli} to the process (argv, streams, environment, exit code).
 */
import { runCli } from './program.js';

runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env, cwd: process.cwd() }).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`mta-sts: internal error: ${String(error)}\n`);
    process.exitCode = 2;
  },
);
