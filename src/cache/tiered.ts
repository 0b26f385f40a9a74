/**
 * The engine's two-tier policy cache (RFC 8461 §3.3: a cached policy applies until it expires).
 *
 * Tier 1 is local memory (a bounded {@link MemoryPolicyStore}); tier 2 is the optional configured store (SQLite,
 * Redis). Every policy this process has seen stays in tier 1, so it keeps applying when tier 2 is down, slow or
 * wiped. Every tier-2 call is bounded by `storeTimeoutMs`; a failure or timeout becomes a `store-error` report and a
 * logger warning, never an exception or a missing policy. Writes that failed are replayed when tier 2 answers again,
 * and a tier-2 read that misses (or finds an older entry) while tier 1 holds an unexpired one writes it back.
 * The fleet helpers (leases, the shared fetch-failure backoff) degrade to "no coordination" when tier 2 lacks them
 * or fails.
 */
import { LRUCache } from 'lru-cache';
import type { Logger } from '../logger.js';
import { entryProblem, frozenEntry, isStoredFetchFailure, isUnexpired } from './entry.js';
import type { PolicyStoreEntry, MemoryPolicyStore, PolicyStore, StoredFetchFailure } from './store.js';

/** The tier-2 operations, as named in `store-error` reports. */
export type StoreOperation = 'get' | 'set' | 'delete' | 'tryLock' | 'unlock' | 'getFetchFailure' | 'setFetchFailure';

/** A tier-2 store call that failed or timed out. The engine kept working from its local tier. */
export interface StoreErrorEvent {
  operation: StoreOperation;
  /** The policy domain, or the lease name for `tryLock` / `unlock`. */
  key: string;
  /** What the store threw or rejected with (an `Error` saying so for a timeout). */
  error: unknown;
  timedOut: boolean;
}

/** The result of asking the fleet for a lease. `unsupported`: no coordination (store lacks leases or failed). */
export type LeaseResult = 'held' | 'busy' | 'unsupported';

export interface TieredPolicyCacheOptions {
  local: MemoryPolicyStore;
  shared: PolicyStore | undefined;
  storeTimeoutMs: number;
  maxPolicyBytes: number;
  now: () => number;
  logger: Logger;
  onStoreError: (event: StoreErrorEvent) => void;
}

type Outcome<T> = { ok: true; value: T } | { ok: false };

/** Domains whose tier-2 write failed, replayed when tier 2 answers again (bounded). */
const MAX_UNSYNCED = 10_000;

export class TieredPolicyCache {
  readonly local: MemoryPolicyStore;
  readonly shared: PolicyStore | undefined;
  readonly #o: TieredPolicyCacheOptions;
  readonly #unsynced = new LRUCache<string, true>({ max: MAX_UNSYNCED });
  #healthy = true;
  #resyncing = false;
  #probing = false;
  /** While unhealthy: epoch ms (real time) before which tier-2 calls are skipped. */
  #retryAt = 0;

  constructor(options: TieredPolicyCacheOptions) {
    this.#o = options;
    this.local = options.local;
    this.shared = options.shared;
  }

  /** Tier 1's entry (expired or not), without renewing anything. */
  peek(domain: string): PolicyStoreEntry | undefined {
    return this.local.peek(domain);
  }

  /** Records a delivery-path use of the domain. */
  touch(domain: string): void {
    this.local.touch(domain, this.#o.now());
  }

  /**
   * Tier 2's entry, validated; undefined on a miss, a malformed entry or a failure. A miss or an older entry while
   * tier 1 holds an unexpired one writes tier 1's back (repopulation after a wipe or an outage).
   */
  async readShared(domain: string, writeBack = true): Promise<PolicyStoreEntry | undefined> {
    const store = this.shared;
    if (!store) return undefined;
    const got = await this.#call('get', domain, () => store.get(domain));
    if (!got.ok) return undefined;
    let entry: PolicyStoreEntry | undefined;
    if (got.value !== undefined && got.value !== null) {
      const problem = entryProblem(got.value, domain, this.#o.now(), this.#o.maxPolicyBytes);
      if (problem) this.#o.logger.warn?.('mta-sts: policy store returned a malformed entry; ignoring it', { domain, problem });
      else entry = frozenEntry(got.value);
    }
    const local = this.local.peek(domain);
    if (writeBack && isUnexpired(local, this.#o.now()) && (!entry || entry.fetchedAt < local.fetchedAt)) void this.#writeShared(domain, local);
    return entry;
  }

  /** The best unexpired policy known for the domain: tier 1's, else tier 2's (then adopted into tier 1). */
  async known(domain: string, used: boolean): Promise<PolicyStoreEntry | undefined> {
    const local = this.local.peek(domain);
    if (isUnexpired(local, this.#o.now())) return local;
    const shared = await this.readShared(domain, false);
    if (!isUnexpired(shared, this.#o.now())) return undefined;
    this.adopt(domain, shared, used);
    return shared;
  }

  /** Puts an entry (read from tier 2) into tier 1 only. `used`: a delivery-path use (renews recency). */
  adopt(domain: string, entry: PolicyStoreEntry, used: boolean): void {
    const frozen = frozenEntry(entry);
    if (used || !this.local.replace(domain, frozen)) this.local.set(domain, frozen);
    if (used) this.touch(domain);
  }

  /** Saves a fetched policy in both tiers. A tier-2 failure is reported and replayed later, never thrown. */
  async save(domain: string, entry: PolicyStoreEntry, used: boolean): Promise<void> {
    const frozen = frozenEntry(entry);
    this.adopt(domain, frozen, used);
    await this.#writeShared(domain, frozen);
  }

  /** Drops the domain from both tiers. */
  async delete(domain: string): Promise<void> {
    this.local.delete(domain);
    this.#unsynced.delete(domain);
    const store = this.shared;
    if (store) await this.#call('delete', domain, () => store.delete(domain));
  }

  /** Asks the fleet for the lease `name` (RFC-neutral coordination; see {@link PolicyStore.tryLock}). */
  async tryLock(name: string, ttlMs: number): Promise<LeaseResult> {
    const store = this.shared;
    if (!store?.tryLock) return 'unsupported';
    const got = await this.#call('tryLock', name, () => store.tryLock!(name, Math.max(1, Math.ceil(ttlMs))));
    if (!got.ok) return 'unsupported';
    return got.value === true ? 'held' : 'busy';
  }

  async unlock(name: string): Promise<void> {
    const store = this.shared;
    if (store?.unlock) await this.#call('unlock', name, () => store.unlock!(name));
  }

  /** The fleet's last fetch failure for the domain, when the store shares one. */
  async sharedFailure(domain: string): Promise<StoredFetchFailure | undefined> {
    const store = this.shared;
    if (!store?.getFetchFailure) return undefined;
    const got = await this.#call('getFetchFailure', domain, () => store.getFetchFailure!(domain));
    return got.ok && isStoredFetchFailure(got.value) ? got.value : undefined;
  }

  async shareFailure(domain: string, failure: StoredFetchFailure, ttlMs: number): Promise<void> {
    const store = this.shared;
    if (store?.setFetchFailure) await this.#call('setFetchFailure', domain, () => store.setFetchFailure!(domain, failure, Math.max(1, Math.ceil(ttlMs))));
  }

  async #writeShared(domain: string, entry: PolicyStoreEntry): Promise<void> {
    const store = this.shared;
    if (!store) return;
    const done = await this.#call('set', domain, () => store.set(domain, entry));
    if (!done.ok) this.#unsynced.set(domain, true);
    else this.#unsynced.delete(domain);
  }

  /**
   * One tier-2 call: bounded by `storeTimeoutMs`, failures reported, never thrown. After a failure, tier 2 is given a
   * rest (a circuit breaker): for `5 × storeTimeoutMs` (at most 5 s) calls are skipped, then one call at a time probes
   * it, so a hanging store costs one timeout per rest period instead of one per call on the delivery path.
   */
  async #call<T>(operation: StoreOperation, key: string, fn: () => T | Promise<T>): Promise<Outcome<T>> {
    const probe = !this.#healthy;
    if (probe && (this.#probing || Date.now() < this.#retryAt)) return { ok: false };
    if (probe) this.#probing = true;
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    try {
      const value = await Promise.race([
        Promise.resolve().then(fn),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            timedOut = true;
            reject(new Error(`policy store ${operation} did not answer within ${this.#o.storeTimeoutMs} ms`));
          }, this.#o.storeTimeoutMs);
          timer.unref?.();
        }),
      ]);
      this.#recovered();
      return { ok: true, value };
    } catch (error) {
      this.#healthy = false;
      this.#retryAt = Date.now() + Math.min(5_000, 5 * this.#o.storeTimeoutMs);
      this.#o.logger.warn?.(`mta-sts: policy store ${operation} failed; continuing from the local cache`, { key, error: String(error), timedOut });
      try {
        this.#o.onStoreError({ operation, key, error, timedOut });
      } catch (listenerError) {
        this.#o.logger.warn?.('mta-sts: a store-error listener threw', { error: String(listenerError) });
      }
      return { ok: false };
    } finally {
      clearTimeout(timer);
      if (probe) this.#probing = false;
    }
  }

  /** Tier 2 answered again: replay the writes that failed meanwhile (unexpired entries only). */
  #recovered(): void {
    if (this.#healthy || this.#resyncing) return;
    this.#healthy = true;
    if (this.#unsynced.size === 0) return;
    this.#resyncing = true;
    void (async () => {
      for (const domain of [...this.#unsynced.keys()]) {
        this.#unsynced.delete(domain);
        const local = this.local.peek(domain);
        if (isUnexpired(local, this.#o.now())) await this.#writeShared(domain, local);
        if (!this.#healthy) break;
      }
    })().finally(() => (this.#resyncing = false));
  }
}
