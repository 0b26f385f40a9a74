/**
 * The logger the test world reports to. `console` fits; so does most structured loggers' `child()` output.
 *
 * `debug` gets events tests provoke on purpose (failed TLS handshakes, clients going away); `warn` gets conditions that
 * point at a problem in the test itself (a request handler that threw, a socket error).
 */
export interface TestWorldLogger {
  debug(message: string, ...details: unknown[]): void;
  warn(message: string, ...details: unknown[]): void;
}

/** Drops everything: the default, so a test run stays quiet. */
export const silentLogger: TestWorldLogger = {
  debug: () => undefined,
  warn: () => undefined,
};
