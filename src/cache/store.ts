/**
 * Policy stores: where fetched policies live between deliveries (RFC 8461 §3.3, §5.1).
 *
 * A policy is cached until `max_age` seconds after it was fetched. The engine always keeps a local, in-memory copy
 * (a {@link MemoryPolicyStore}, bounded by entries and bytes) and can sit in front of one more store (SQLite, Redis,
 * your own) implementing {@link PolicyStore}: the second tier survives restarts and is shared by a fleet. Stores hold
 * data only; expiry, refresh and trust decisions are the engine's (entries read back are validated, never trusted).
 */
import { LRUCache } from 'lru-cache';
import { MtaStsError } from '../errors.js';
import type { PolicyFile } from '../policy/policy-file.js';

/**
 * One entry of a {@link PolicyStore}: a domain's policy as the engine caches it (the parsed {@link PolicyFile},
 * its text, the TXT `id` and the times). JSON-serialisable so shared stores can keep it as a string.
 */
export interface PolicyStoreEntry {
  /** The policy domain (normalised). */
  domain: string;
  /** The TXT `id` the policy was fetched for. */
  id: string;
  policy: PolicyFile;
  /** The raw policy text, as served. */
  text: string;
  /** Epoch milliseconds of the successful fetch. */
  fetchedAt: number;
  /** Epoch milliseconds after which the policy must not be used: `fetchedAt + max_age * 1000` (§3.3). */
  expiresAt: number;
}

/** A failed policy fetch, shared by a fleet so that no member retries before the backoff ends (RFC 8461 §3.3). */
export interface StoredFetchFailure {
  /** Epoch ms of the failure. */
  at: number;
  /** The TXT id the fetch was for (a new id ends the backoff). */
  id: string;
  /** The `MtaStsError` code of the failure. */
  code: string;
  message: string;
}

/**
 * The second-tier store interface. Methods may be synchronous or return promises. A store that throws, rejects or
 * hangs (past `storeTimeoutMs`) never fails a lookup: the engine reports a `store-error` event and keeps working from
 * its local copy. The optional methods let a fleet coordinate; a store without them just does not coordinate.
 */
export interface PolicyStore {
  get(domain: string): PolicyStoreEntry | undefined | Promise<PolicyStoreEntry | undefined>;
  set(domain: string, entry: PolicyStoreEntry): void | Promise<void>;
  delete(domain: string): void | Promise<void>;
  /** The domains currently held (operator tools; the engine's refresher walks its local tier instead). */
  domains?(): Iterable<string> | Promise<Iterable<string>>;
  /** Fleet lease: true when this caller now holds `name` for ttlMs. Names used: `fetch:<domain>`, `refresh:<domain>`. */
  tryLock?(name: string, ttlMs: number): boolean | Promise<boolean>;
  /** Releases a lease taken with `tryLock` (the engine releases `fetch:` leases; `refresh:` leases run out). */
  unlock?(name: string): void | Promise<void>;
  /** Shared fetch-failure backoff (RFC 8461 §3.3). */
  getFetchFailure?(domain: string): StoredFetchFailure | undefined | Promise<StoredFetchFailure | undefined>;
  setFetchFailure?(domain: string, failure: StoredFetchFailure, ttlMs: number): void | Promise<void>;
}

export interface MemoryPolicyStoreOptions {
  /** Most policies held; the least recently used is evicted beyond it. Default 100000. */
  max?: number;
  /**
   * Most memory held, in bytes, as estimated by `policySizeBytes` (about twice the policy text plus a fixed
   * overhead per entry). Default 64 MiB: about 80,000 typical policies, or 500 of the largest (64 KiB) ones.
   */
  maxSizeBytes?: number;
}

/** Fixed per-entry overhead in the size estimate: objects, the parsed policy's strings, LRU bookkeeping. */
const ENTRY_OVERHEAD_BYTES = 512;

/** The estimated memory of one cached policy: the text and its parsed patterns (about as long again) plus overhead. */
export function policySizeBytes(entry: PolicyStoreEntry): number {
  return 2 * (entry.text.length + entry.domain.length + entry.id.length) + ENTRY_OVERHEAD_BYTES;
}

/** Checked at construction: lru-cache would otherwise throw at the first write, on the delivery path. */
function positiveInteger(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new MtaStsError('MTASTS_INVALID_OPTIONS', `MemoryPolicyStore option ${name} must be a positive integer, got ${JSON.stringify(value)}`, { details: { option: name } });
  }
  return value;
}

interface Slot {
  entry: PolicyStoreEntry;
  /** Epoch ms of the last delivery-path use (refresh does not count). */
  lastUsedAt: number;
  /** The size charged for this slot. */
  size: number;
}

export const DEFAULT_MEMORY_STORE_MAX = 100_000;
export const DEFAULT_MEMORY_STORE_MAX_BYTES = 64 * 1024 * 1024;

/**
 * The in-memory store, bounded with `lru-cache` by entries and by bytes. It is the engine's local tier; given as the
 * engine's `store`, it is the local tier itself (no second tier). Besides {@link PolicyStore} it records when each
 * domain was last used, so the engine can refresh what is in use and let go of what is not.
 */
export class MemoryPolicyStore implements PolicyStore {
  readonly #max: number;
  readonly #maxSizeBytes: number;
  // Built on the first write, and bounded by bytes in lru-cache but by entries here (`#evictOverMax`): given `max`,
  // lru-cache preallocates that many slots (about 15 ms of CPU and 3 MB for 100000) before the first policy is cached,
  // a fixed cost that weighed 0.15 ms per policy on a 100-domain cold run. Without it its arrays grow with use.
  #cache: LRUCache<string, Slot> | undefined;

  constructor(options: MemoryPolicyStoreOptions = {}) {
    this.#max = positiveInteger('max', options.max ?? DEFAULT_MEMORY_STORE_MAX);
    this.#maxSizeBytes = positiveInteger('maxSizeBytes', options.maxSizeBytes ?? DEFAULT_MEMORY_STORE_MAX_BYTES);
  }

  #lru(): LRUCache<string, Slot> {
    return (this.#cache ??= new LRUCache<string, Slot>({ maxSize: this.#maxSizeBytes, sizeCalculation: (slot) => slot.size }));
  }

  /** The entry bound: the least recently used entries go beyond `max`. */
  #evictOverMax(cache: LRUCache<string, Slot>): void {
    while (cache.size > this.#max) cache.pop();
  }

  /** The entry, renewing its LRU recency (not its last use). */
  get(domain: string): PolicyStoreEntry | undefined {
    return this.#cache?.get(domain)?.entry;
  }

  /** The entry, without renewing anything. */
  peek(domain: string): PolicyStoreEntry | undefined {
    return this.#cache?.peek(domain)?.entry;
  }

  set(domain: string, entry: PolicyStoreEntry): void {
    const lastUsedAt = this.#cache?.peek(domain)?.lastUsedAt ?? entry.fetchedAt;
    const cache = this.#lru();
    cache.set(domain, { entry, lastUsedAt, size: policySizeBytes(entry) });
    this.#evictOverMax(cache);
  }

  /**
   * Replaces a held entry without renewing its recency or last use (proactive refresh). Only a policy that grew
   * beyond the size charged is re-inserted (and so counted as recent), to keep the byte bound exact. Returns false
   * when the domain is not held (evicted meanwhile): nothing is added then.
   */
  replace(domain: string, entry: PolicyStoreEntry): boolean {
    const slot = this.#cache?.peek(domain);
    if (!slot) return false;
    const size = policySizeBytes(entry);
    if (size <= slot.size) slot.entry = entry;
    else this.#lru().set(domain, { entry, lastUsedAt: slot.lastUsedAt, size }); // same key: the entry count is unchanged
    return true;
  }

  /** Records a delivery-path use at `at` (epoch ms): renews LRU recency and the last use. */
  touch(domain: string, at: number): void {
    const slot = this.#cache?.get(domain);
    if (slot) slot.lastUsedAt = Math.max(slot.lastUsedAt, at);
  }

  /** Epoch ms of the last recorded use, or undefined when the domain is not held. */
  lastUsedAt(domain: string): number | undefined {
    return this.#cache?.peek(domain)?.lastUsedAt;
  }

  delete(domain: string): void {
    this.#cache?.delete(domain);
  }

  domains(): Iterable<string> {
    return this.#cache ? [...this.#cache.keys()] : [];
  }

  /** Every held domain with its last use, without renewing anything. */
  usage(): Array<{ domain: string; lastUsedAt: number }> {
    const out: Array<{ domain: string; lastUsedAt: number }> = [];
    this.#cache?.forEach((slot, domain) => out.push({ domain, lastUsedAt: slot.lastUsedAt }));
    return out;
  }

  get size(): number {
    return this.#cache?.size ?? 0;
  }

  /** The estimated bytes held (see `policySizeBytes`). */
  get sizeBytes(): number {
    return this.#cache?.calculatedSize ?? 0;
  }
}
