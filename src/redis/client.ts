/**
 * The Redis seam of `mta-sts-sender/redis`: the one method of an `ioredis` client the stores use, and a deadline on
 * every command.
 *
 * A Redis that is down, paused or slow must never hold up mail: `ioredis` queues commands while it reconnects, so
 * without a deadline a lookup would wait as long as the outage lasts. Every command here is abandoned after
 * `timeoutMs` with `MTASTS_STORE_TIMEOUT` (the caller falls back to its in-memory copy). A command abandoned this
 * way may still run later, when the connection comes back.
 */
import { MtaStsError } from '../errors.js';

/**
 * What the stores need of a Redis client: `ioredis`'s `call(command, args)` (a `Redis`, a `Cluster` for the policy
 * store, or anything with the same method). Replies are `ioredis`'s: strings, numbers, arrays, `null`.
 */
export interface RedisClientLike {
  call(command: string, args: Array<string | number>): Promise<unknown>;
}

/** Runs one command with a deadline. Rejects with `MTASTS_STORE_TIMEOUT` or `MTASTS_STORE_FAILED`. */
export function redisCall(client: RedisClientLike, timeoutMs: number, command: string, args: Array<string | number>): Promise<unknown> {
  return new Promise<unknown>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new MtaStsError('MTASTS_STORE_TIMEOUT', `Redis ${command} did not answer within ${timeoutMs} ms`, { details: { command, timeoutMs } }));
    }, timeoutMs);
    let pending: Promise<unknown>;
    try {
      pending = Promise.resolve(client.call(command, args));
    } catch (error) {
      pending = Promise.reject(error);
    }
    pending.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(new MtaStsError('MTASTS_STORE_FAILED', `Redis ${command} failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error, details: { command } }));
      },
    );
  });
}

/** Checks the options shared by the Redis stores; throws `MTASTS_INVALID_OPTIONS`. */
export function checkRedisOptions(what: string, options: { redis?: unknown; prefix?: unknown; commandTimeoutMs?: unknown }): void {
  if (typeof options !== 'object' || options === null) throw new MtaStsError('MTASTS_INVALID_OPTIONS', `${what}() options must be an object`);
  const redis = options.redis as { call?: unknown } | undefined;
  if (typeof redis !== 'object' || redis === null || typeof redis.call !== 'function') {
    throw new MtaStsError('MTASTS_INVALID_OPTIONS', `option redis must be an ioredis client (new Redis(...)), got ${redis === null ? 'null' : typeof redis}`, { details: { option: 'redis' } });
  }
  if (options.prefix !== undefined && (typeof options.prefix !== 'string' || options.prefix.length > 200)) {
    throw new MtaStsError('MTASTS_INVALID_OPTIONS', 'option prefix must be a string of at most 200 characters', { details: { option: 'prefix' } });
  }
  const t = options.commandTimeoutMs;
  if (t !== undefined && (typeof t !== 'number' || !Number.isFinite(t) || t < 1 || t > 60_000)) {
    throw new MtaStsError('MTASTS_INVALID_OPTIONS', `option commandTimeoutMs must be a number from 1 to 60000, got ${JSON.stringify(t)}`, { details: { option: 'commandTimeoutMs' } });
  }
}

/** Escapes a key prefix for a SCAN `MATCH` glob. */
export function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}
