/**
 * A policy store shared by a fleet of MTAs through Redis (RFC 8461 §3.3, §5.1).
 *
 * Every member of a fleet caches the same policies; sharing them means one fetch per domain for the whole fleet
 * and one backoff after a failed fetch (§3.3). Redis is a cache here, never the authority: entries are validated on
 * every read (the policy text is parsed again and the times are checked against `max_age`, so a malformed,
 * foreign or tampered entry is ignored with a warning), every command has a deadline, and a failure rejects with a
 * typed error that the engine turns into an event while it keeps using its own in-memory copy.
 *
 * Keys (all under `prefix`, default `mta-sts:`):
 * - `<prefix>policy:<domain>`: the policy, JSON (see `encodeStoredPolicy`), set with `PXAT expiresAt`, so Redis
 *   drops it when its `max_age` runs out (§3.3). A withdrawn policy (`max_age` 0) deletes the key.
 * - `<prefix>lock:<name>`: a fleet lease (`fetch:<domain>`, `refresh:<domain>`), a random token set with
 *   `NX PX ttl`; released only by its holder (a Lua script compares the token).
 * - `<prefix>fail:<domain>`: the last failed fetch, JSON `{at,id,code,message}`, `PX` the backoff (§3.3).
 *
 * Every key is touched by single-key commands only, so the store also works with a Redis Cluster client.
 */
import { randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { PolicyStoreEntry, PolicyStore, StoredFetchFailure } from '../cache/store.js';
import { decodeFetchFailure, encodeStoredPolicy, parseStoredPolicy } from '../cache/stored-entry.js';
import { MtaStsError } from '../errors.js';
import { silentLogger, type Logger } from '../logger.js';
import { checkRedisOptions, globEscape, redisCall, type RedisClientLike } from './client.js';

/** Options of {@link createRedisPolicyStore}. */
export interface RedisPolicyStoreOptions {
  /** An `ioredis` client (`new Redis(url)`), owned by the caller (the store never closes it). */
  redis: RedisClientLike;
  /** Prefix of every key. Default `mta-sts:`. Give each independent fleet its own. */
  prefix?: string;
  /** Deadline of one Redis command, in ms. Default 500. */
  commandTimeoutMs?: number;
  /** Most domains `domains()` returns (SCAN is bounded by it). Default 100000. */
  maxDomains?: number;
  /** Clock, epoch ms: decides whether a policy is already expired when written. Default `Date.now`. */
  now?: () => number;
  logger?: Logger;
  /** Gets every {@link RedisPolicyStoreEvent}. Must not throw. */
  onEvent?: (event: RedisPolicyStoreEvent) => void;
}

/** A stored value that did not validate and was ignored (`MTASTS_STORE_CORRUPT`, `details.key`). */
export interface RedisPolicyStoreEvent {
  type: 'malformed';
  key: string;
  error: MtaStsError;
}

// Deletes a lease only while it still holds the caller's token (a lease that expired and was taken over is not ours).
const UNLOCK_SCRIPT = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/** The store returned by {@link createRedisPolicyStore}. */
export class RedisPolicyStore implements PolicyStore {
  readonly prefix: string;
  readonly #redis: RedisClientLike;
  readonly #timeoutMs: number;
  readonly #maxDomains: number;
  readonly #now: () => number;
  readonly #logger: Logger;
  readonly #onEvent: ((event: RedisPolicyStoreEvent) => void) | undefined;
  /** Tokens of the leases this instance took (bounded; a lease outlives its entry only by expiring in Redis). */
  readonly #tokens = new LRUCache<string, string>({ max: 10_000 });

  constructor(options: RedisPolicyStoreOptions) {
    checkRedisOptions('createRedisPolicyStore', options);
    const maxDomains = options.maxDomains ?? 100_000;
    if (!Number.isInteger(maxDomains) || maxDomains < 1 || maxDomains > 10_000_000) throw new MtaStsError('MTASTS_INVALID_OPTIONS', `option maxDomains must be an integer from 1 to 10000000, got ${JSON.stringify(maxDomains)}`, { details: { option: 'maxDomains' } });
    this.#redis = options.redis;
    this.prefix = options.prefix ?? 'mta-sts:';
    this.#timeoutMs = options.commandTimeoutMs ?? 500;
    this.#maxDomains = maxDomains;
    this.#now = options.now ?? Date.now;
    this.#logger = options.logger ?? silentLogger;
    this.#onEvent = options.onEvent;
  }

  #call(command: string, args: Array<string | number>): Promise<unknown> {
    return redisCall(this.#redis, this.#timeoutMs, command, args);
  }

  /** The key of a domain's policy. */
  policyKey(domain: string): string {
    return `${this.prefix}policy:${domain}`;
  }

  /** One GET. A value that does not validate is ignored (a warning and an event), never trusted. */
  async get(domain: string): Promise<PolicyStoreEntry | undefined> {
    const key = this.policyKey(domain);
    const raw = await this.#call('GET', [key]);
    if (raw === null || raw === undefined) return undefined;
    try {
      if (typeof raw !== 'string') throw new TypeError('not a string');
      return parseStoredPolicy(raw, domain);
    } catch (error) {
      this.#malformed(key, error);
      return undefined;
    }
  }

  /** One SET with `PXAT expiresAt` (§3.3: the key lives as long as the policy may be used), or DEL when expired. */
  async set(domain: string, entry: PolicyStoreEntry): Promise<void> {
    const key = this.policyKey(domain);
    if (entry.expiresAt <= this.#now()) {
      await this.#call('DEL', [key]); // §10.2: a withdrawn (max_age 0) policy replaces the cached one
      return;
    }
    await this.#call('SET', [key, encodeStoredPolicy(entry), 'PXAT', entry.expiresAt]);
  }

  async delete(domain: string): Promise<void> {
    await this.#call('DEL', [this.policyKey(domain)]);
  }

  /** The domains with a policy key, by SCAN (one command per 1000 keys looked at), at most `maxDomains`. */
  async domains(): Promise<string[]> {
    const head = `${this.prefix}policy:`;
    const match = `${globEscape(head)}*`;
    const out: string[] = [];
    let cursor = '0';
    // Bounded in rounds too: SCAN may return few keys per round on a large keyspace.
    for (let round = 0; round < 100_000; round++) {
      const reply = (await this.#call('SCAN', [cursor, 'MATCH', match, 'COUNT', 1000])) as [string, string[]];
      if (!Array.isArray(reply) || !Array.isArray(reply[1])) throw new MtaStsError('MTASTS_STORE_FAILED', 'Redis SCAN returned an unexpected reply');
      for (const key of reply[1]) {
        if (typeof key === 'string' && key.startsWith(head)) out.push(key.slice(head.length));
        if (out.length >= this.#maxDomains) return out;
      }
      cursor = String(reply[0]);
      if (cursor === '0') break;
    }
    return out;
  }

  /** One `SET <prefix>lock:<name> <random token> NX PX ttlMs`: true when this caller now holds the lease. */
  async tryLock(name: string, ttlMs: number): Promise<boolean> {
    const token = randomBytes(16).toString('hex');
    const ttl = Math.max(1, Math.ceil(ttlMs));
    const reply = await this.#call('SET', [`${this.prefix}lock:${name}`, token, 'NX', 'PX', ttl]);
    if (reply !== 'OK') return false;
    this.#tokens.set(name, token, { ttl });
    return true;
  }

  /** Releases a lease this instance holds (a Lua script deletes the key only while it holds our token). */
  async unlock(name: string): Promise<void> {
    const token = this.#tokens.get(name);
    if (token === undefined) return;
    this.#tokens.delete(name);
    await this.#call('EVAL', [UNLOCK_SCRIPT, 1, `${this.prefix}lock:${name}`, token]);
  }

  /** One GET of `<prefix>fail:<domain>` (the shared §3.3 backoff). */
  async getFetchFailure(domain: string): Promise<StoredFetchFailure | undefined> {
    const key = `${this.prefix}fail:${domain}`;
    const raw = await this.#call('GET', [key]);
    if (raw === null || raw === undefined) return undefined;
    try {
      if (typeof raw !== 'string') throw new TypeError('not a string');
      return decodeFetchFailure(JSON.parse(raw));
    } catch (error) {
      this.#malformed(key, error);
      return undefined;
    }
  }

  /** One `SET <prefix>fail:<domain> <json> PX ttlMs`. */
  async setFetchFailure(domain: string, failure: StoredFetchFailure, ttlMs: number): Promise<void> {
    const value = JSON.stringify({ at: failure.at, id: failure.id, code: failure.code, message: failure.message.slice(0, 1000) });
    await this.#call('SET', [`${this.prefix}fail:${domain}`, value, 'PX', Math.max(1, Math.ceil(ttlMs))]);
  }

  #malformed(key: string, cause: unknown): void {
    const error = new MtaStsError('MTASTS_STORE_CORRUPT', `ignoring malformed value of Redis key ${key}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause, details: { key } });
    this.#logger.warn?.(`mta-sts: ${error.message}`, { key });
    try {
      this.#onEvent?.({ type: 'malformed', key, error });
    } catch {
      // a throwing listener must not break the store
    }
  }
}

/**
 * Creates a policy store shared through Redis (see the module comment for the keys). Throws
 * `MTASTS_INVALID_OPTIONS` for a bad option. The engine keeps its own in-memory copy in front of it.
 *
 * @example
 * ```ts
 * import { Redis } from 'ioredis';
 * import { createRedisPolicyStore } from 'mta-sts-sender/redis';
 * const store = createRedisPolicyStore({ redis: new Redis('redis://redis.internal:6379'), prefix: 'mta-sts:' });
 * const mtaSts = createMtaSts({ store });
 * ```
 */
export function createRedisPolicyStore(options: RedisPolicyStoreOptions): RedisPolicyStore {
  return new RedisPolicyStore(options);
}
