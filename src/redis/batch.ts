/**
 * Many Redis commands in flight together (the merges of one flush, pipelined by ioredis) under one deadline that
 * follows progress: they fail together once nothing was sent and no reply came for `timeoutMs`. A Redis that is down or
 * paused fails the whole batch within one command timeout, whatever its size; a Redis that answers steadily is
 * given the time a large batch needs.
 */
import { createHash } from 'node:crypto';
import { MtaStsError } from '../errors.js';
import type { RedisClientLike } from './client.js';

export class IdleDeadline {
  /** Rejects (`MTASTS_STORE_TIMEOUT`) when no reply came for `timeoutMs`; never resolves. */
  readonly expired: Promise<never>;
  #last = performance.now();
  readonly #timer: NodeJS.Timeout;

  constructor(timeoutMs: number) {
    let reject!: (error: Error) => void;
    this.expired = new Promise<never>((_, r) => (reject = r));
    this.expired.catch(() => undefined);
    this.#timer = setInterval(() => {
      if (performance.now() - this.#last < timeoutMs) return;
      clearInterval(this.#timer);
      reject(new MtaStsError('MTASTS_STORE_TIMEOUT', `Redis gave no reply to a batch of commands within ${timeoutMs} ms`, { details: { timeoutMs } }));
    }, Math.max(5, Math.floor(timeoutMs / 8)));
    this.#timer.unref?.();
  }

  /** Runs one command of the batch (no timer of its own): a reply counts as progress. */
  run(client: RedisClientLike, command: string, args: Array<string | number>): Promise<unknown> {
    this.#last = performance.now(); // sending counts too: a long burst of sends must not look like a silent Redis
    const reply = new Promise<unknown>((resolve) => resolve(client.call(command, args))).then(
      (value) => {
        this.#last = performance.now();
        return value;
      },
      (error: unknown) => {
        this.#last = performance.now();
        throw new MtaStsError('MTASTS_STORE_FAILED', `Redis ${command} failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error, details: { command } });
      },
    );
    return Promise.race([reply, this.expired]);
  }

  /** Stops the timer (the batch is over). */
  end(): void {
    clearInterval(this.#timer);
  }
}

/** The SHA1 of a Lua script, as `EVALSHA` names it. */
export function scriptSha(script: string): string {
  return createHash('sha1').update(script).digest('hex');
}
