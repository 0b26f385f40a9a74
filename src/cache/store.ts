/**
 * Policy stores: where fetched policies live between deliveries (RFC 8461 §3.3, §5.1).
 *
 * A policy is cached until `max_age` seconds after it was fetched. The store is a seam: the default keeps
 * entries in memory, bounded by an LRU; a fleet of MTAs plugs in a shared store (Redis, SQL, a file) by
 * implementing {@link PolicyStore}. Stores hold data only; expiry and refresh decisions are the engine's.
 */
import { LRUCache } from 'lru-cache';
import type { StsPolicy } from '../policy/policy-file.js';

/** A policy as the engine caches it. JSON-serialisable so shared stores can keep it as a string. */
export interface CachedPolicy {
  /** The policy domain (normalised). */
  domain: string;
  /** The TXT `id` the policy was fetched for. */
  id: string;
  policy: StsPolicy;
  /** The raw policy text, as served. */
  text: string;
  /** Epoch milliseconds of the successful fetch. */
  fetchedAt: number;
  /** Epoch milliseconds after which the policy must not be used: `fetchedAt + max_age * 1000` (§3.3). */
  expiresAt: number;
}

export type MaybePromise<T> = T | Promise<T>;

/** A failed policy fetch, shared by a fleet so the RFC 8461 §3.3 backoff holds across members. */
export interface StoredFetchFailure {
  /** Epoch milliseconds of the failure. */
  at: number;
  /** The TXT `id` the fetch was for. */
  id: string;
  /** The failure's `MtaStsError` code. */
  code: string;
  message: string;
}

/** The store interface. Methods may be synchronous or return promises. A throwing store never fails a lookup. */
export interface PolicyStore {
  get(domain: string): MaybePromise<CachedPolicy | undefined>;
  set(domain: string, entry: CachedPolicy): MaybePromise<void>;
  delete(domain: string): MaybePromise<void>;
  /** The domains currently held, for proactive refresh (§5.1). Optional: without it, only on-path refresh runs. */
  domains?(): MaybePromise<Iterable<string>>;
  /**
   * Optional fleet lease: resolves true when this caller now holds `name` for `ttlMs` (nobody else does). Names
   * used: `fetch:<domain>` (one fetch of a cold domain across the fleet), `refresh:<domain>` (one proactive refresh
   * per interval, RFC 8461 §5.1). A lease is never waited on for longer than a bounded time.
   */
  tryLock?(name: string, ttlMs: number): MaybePromise<boolean>;
  /** Releases a lease this caller holds (a lease held by another caller is left alone). */
  unlock?(name: string): MaybePromise<void>;
  /** Optional shared fetch-failure backoff (RFC 8461 §3.3): the last failure for a domain, if still remembered. */
  getFetchFailure?(domain: string): MaybePromise<StoredFetchFailure | undefined>;
  /** Remembers a fetch failure for `ttlMs` (the backoff). */
  setFetchFailure?(domain: string, failure: StoredFetchFailure, ttlMs: number): MaybePromise<void>;
}

export interface MemoryPolicyStoreOptions {
  /** Most policies held; the least recently used is evicted beyond it. Default 100000 (a few hundred MB worst case
   * with 64 KiB policies, typically a few MB). */
  max?: number;
}

/** The default store: in-memory, bounded with `lru-cache`. */
export class MemoryPolicyStore implements PolicyStore {
  readonly #max: number;
  // lru-cache preallocates `max` slots (about 14 ms for 100000), so the cache is built on the first write:
  // creating an engine stays cheap, and an engine that never fetches a policy never pays for it.
  #cache: LRUCache<string, CachedPolicy> | undefined;

  constructor(options: MemoryPolicyStoreOptions = {}) {
    this.#max = options.max ?? 100_000;
  }

  get(domain: string): CachedPolicy | undefined {
    return this.#cache?.get(domain);
  }

  set(domain: string, entry: CachedPolicy): void {
    (this.#cache ??= new LRUCache<string, CachedPolicy>({ max: this.#max })).set(domain, entry);
  }

  delete(domain: string): void {
    this.#cache?.delete(domain);
  }

  domains(): Iterable<string> {
    return this.#cache ? [...this.#cache.keys()] : [];
  }

  get size(): number {
    return this.#cache?.size ?? 0;
  }
}
