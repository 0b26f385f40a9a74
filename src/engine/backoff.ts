/**
 * The fetch-failure backoff (RFC 8461 §3.3): after a failed policy fetch for a TXT id, no new fetch for the same
 * domain and id until the backoff (default five minutes) has passed. Kept per process (bounded) and, when the
 * second-tier store offers `getFetchFailure` / `setFetchFailure`, shared by the fleet.
 */
import { LRUCache } from 'lru-cache';
import { MtaStsError, type MtaStsErrorCode } from '../errors.js';
import type { TieredPolicyCache } from '../cache/tiered.js';

interface Failure {
  at: number;
  id: string;
  error: MtaStsError;
}

/** Bounded: attacker-chosen domains cannot grow the failure table without limit. */
const MAX_FAILURES = 10_000;
const CODE = /^MTASTS_[A-Z_]{1,40}$/;

export class FetchBackoff {
  readonly #local = new LRUCache<string, Failure>({ max: MAX_FAILURES });

  constructor(
    private readonly cache: TieredPolicyCache,
    private readonly backoffMs: number,
    private readonly now: () => number,
  ) {}

  /** The `MTASTS_FETCH_BACKOFF` error when a fetch for (domain, id) must wait, else undefined. */
  async check(domain: string, id: string): Promise<MtaStsError | undefined> {
    if (this.backoffMs <= 0) return undefined;
    let failure = this.#local.get(domain);
    if (!this.#applies(failure, id)) {
      const shared = await this.cache.sharedFailure(domain);
      failure = shared && { at: shared.at, id: shared.id, error: new MtaStsError((CODE.test(shared.code) ? shared.code : 'MTASTS_FETCH_FAILED') as MtaStsErrorCode, `fleet member: ${shared.message.slice(0, 500)}`, { domain }) };
    }
    if (!this.#applies(failure, id)) return undefined;
    const agoS = Math.round((this.now() - failure.at) / 1000);
    return new MtaStsError('MTASTS_FETCH_BACKOFF', `policy fetch for ${domain} failed ${agoS} s ago; next attempt after ${Math.round(this.backoffMs / 1000)} s (RFC 8461 §3.3)`, {
      domain,
      cause: failure.error,
      resultType: failure.error.resultType ?? 'sts-policy-fetch-error',
      details: { lastCode: failure.error.code },
    });
  }

  async record(domain: string, id: string, error: MtaStsError): Promise<void> {
    const at = this.now();
    this.#local.set(domain, { at, id, error });
    if (this.backoffMs > 0) await this.cache.shareFailure(domain, { at, id, code: error.code, message: error.message }, this.backoffMs);
  }

  clear(domain: string): void {
    this.#local.delete(domain);
  }

  #applies(failure: Failure | undefined, id: string): failure is Failure {
    return failure !== undefined && failure.id === id && this.now() - failure.at < this.backoffMs && this.now() >= failure.at - 300_000;
  }
}
