/**
 * The process seams of the CLI. `runCli` never touches `process` directly: streams, environment and the working
 * directory are handed in, and it resolves with the exit code instead of exiting.
 */

/** A stream the CLI writes to (`process.stdout` fits). */
export interface OutputStream {
  write(chunk: string): unknown;
  /** True on a terminal: enables colour (stdout) and the progress bar (stderr). */
  isTTY?: boolean;
  columns?: number;
}

/** A stream the CLI reads from (`process.stdin` fits). */
export type InputStream = AsyncIterable<string | Buffer> & { isTTY?: boolean };

export interface CliIo {
  stdout: OutputStream;
  stderr: OutputStream;
  stdin: InputStream;
  /** Environment (`NO_COLOR`, `FORCE_COLOR`, option defaults such as `MTA_STS_DNS_SERVER`). */
  env: Readonly<Record<string, string | undefined>>;
  /** Resolves relative paths. Default `process.cwd()`. */
  cwd?: string;
}

/** Exit codes of `mta-sts`. */
export const EXIT_OK = 0;
/** A checked domain has a problem, or a report could not be sent. */
export const EXIT_PROBLEM = 1;
/** Usage error (bad arguments, unreadable files) or internal error. */
export const EXIT_USAGE = 2;

/** An error caused by how the CLI was called; printed without a stack, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Reads a whole stream as UTF-8, refusing more than `maxBytes`. */
export async function readAll(stream: InputStream, maxBytes: number, what: string): Promise<string> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of stream) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    bytes += buf.length;
    if (bytes > maxBytes) throw new UsageError(`${what} is larger than ${maxBytes} bytes`);
    chunks.push(buf);
  }
  return Buffer.concat(chunks, bytes).toString('utf8');
}

/**
 * Colour on a terminal only (and not with `TERM=dumb`); `NO_COLOR` (any non-empty value), `--no-color` and
 * `FORCE_COLOR=0` turn it off, another `FORCE_COLOR` value turns it on.
 */
export function colorEnabled(stream: OutputStream, env: CliIo['env'], flag: boolean | undefined): boolean {
  if (flag === false) return false;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  const force = env.FORCE_COLOR;
  if (force === '0' || force === 'false') return false;
  if (force !== undefined && force !== '') return true;
  return stream.isTTY === true && env.TERM !== 'dumb';
}
