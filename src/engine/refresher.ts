/**
 * Proactive refresh of cached policies, off the delivery path (RFC 8461 §3.3, §5.1, §10.2).
 *
 * Like a careful MTA: every `refreshIntervalMs` the refresher walks the local tier. A domain unused for
 * `purgeUnusedAfterMs` is dropped from it (last use is the delivery path's; refresh never renews it). Every other
 * domain is re-checked at a random moment within the interval (jitter), at most `concurrency` at a time: the TXT id
 * is queried first and the policy refetched only when the id changed or the policy nears expiry. With a shared
 * store, each domain is refreshed by the one fleet member that gets the `refresh:<domain>` lease for the interval;
 * the others only adopt the newer entry from tier 2. The timer never keeps the process alive.
 */
import type { Logger } from '../logger.js';

export interface RefresherOptions {
  intervalMs: number;
  concurrency: number;
  purgeUnusedAfterMs: number;
  now: () => number;
  logger: Logger;
  /** The local tier's domains with their last use. */
  candidates: () => Array<{ domain: string; lastUsedAt: number }>;
  /** Drops an unused domain from the local tier. */
  purge: (domain: string) => void;
  /** Refreshes one domain; true when a policy was fetched. Never rejects. */
  refreshOne: (domain: string) => Promise<boolean>;
  /** Random source in [0, 1) for the jitter. Default `Math.random`. */
  random?: () => number;
}

/** Share of the interval over which a timed pass spreads its work (the rest is slack before the next pass). */
const SPREAD_FRACTION = 0.8;

export class Refresher {
  readonly #o: RefresherOptions;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #closed = false;
  readonly #sleeps = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();

  constructor(options: RefresherOptions) {
    this.#o = options;
  }

  /** Starts the periodic passes (idempotent; no-op when the interval is 0 or after `close()`). */
  start(): void {
    if (this.#timer || this.#closed || this.#o.intervalMs <= 0) return;
    this.#timer = setInterval(() => {
      if (this.#running) return;
      void this.run(this.#o.intervalMs * SPREAD_FRACTION).catch((error: unknown) => this.#o.logger.warn?.('mta-sts: proactive refresh failed', { error: String(error) }));
    }, this.#o.intervalMs);
    this.#timer.unref();
  }

  /**
   * One pass: purge unused domains, then refresh the others spread over `spreadMs` (0: as fast as the concurrency
   * allows). Resolves with the number of policies fetched.
   */
  async run(spreadMs = 0): Promise<number> {
    this.#running = true;
    try {
      const now = this.#o.now();
      const random = this.#o.random ?? Math.random;
      const jobs: Array<{ domain: string; at: number }> = [];
      for (const { domain, lastUsedAt } of this.#o.candidates()) {
        if (now - lastUsedAt > this.#o.purgeUnusedAfterMs) {
          this.#o.purge(domain);
          this.#o.logger.debug?.('mta-sts: dropped a policy unused for too long', { domain, lastUsedAt });
        } else {
          jobs.push({ domain, at: spreadMs > 0 ? random() * spreadMs : 0 });
        }
      }
      jobs.sort((a, b) => a.at - b.at);
      const started = Date.now();
      let next = 0;
      let fetched = 0;
      const worker = async () => {
        while (!this.#closed && next < jobs.length) {
          const job = jobs[next++]!;
          await this.#sleep(started + job.at - Date.now());
          if (this.#closed) return;
          if (await this.#o.refreshOne(job.domain)) fetched++;
        }
      };
      await Promise.all(Array.from({ length: Math.min(this.#o.concurrency, jobs.length) }, worker));
      return fetched;
    } finally {
      this.#running = false;
    }
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    for (const sleep of this.#sleeps) {
      clearTimeout(sleep.timer);
      sleep.resolve();
    }
    this.#sleeps.clear();
  }

  #sleep(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const sleep = { timer: setTimeout(() => (this.#sleeps.delete(sleep), resolve()), ms), resolve };
      sleep.timer.unref();
      this.#sleeps.add(sleep);
    });
  }
}
