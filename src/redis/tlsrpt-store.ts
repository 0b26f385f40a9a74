/**
 * A TLS-RPT store shared by a fleet through Redis (RFC 8460 §4.1, §5).
 *
 * RFC 8460 asks for one report per policy domain per UTC day from the sending organisation; a fleet whose members
 * each keep their own spool sends one per member. With this store every member's counts go to one Redis record
 * per (day, policy domain), incremented atomically by a Lua script (`HINCRBY` inside it), so the report carries the
 * exact sum; and a per-report lock lets one member at a time build and send a closed day's report, which is then
 * deleted: sent once. It implements the same {@link TlsRptStore} interface as the other stores, so
 * `createTlsRptReporter({ store })` needs nothing else.
 *
 * How "sent once" works through that interface: `get()` of a record of a closed UTC day claims the report (a lock
 * key with this member's token, `reportLockMs`); while another member holds it, `get()` answers `undefined` and
 * the reporter skips the record. `setDelivery()` and `delete()` only act for the holder. A member that dies while
 * sending leaves the lock to expire; another member then retries with the same report id (RFC 8460 §5.1
 * `report-id` is kept in the record), so a receiver can discard a duplicate. Counts merged after a report was read
 * are kept and make a later, separate report.
 *
 * Keys (under `prefix`, default `mta-sts:`):
 * - `<prefix>tlsrpt:<day>:<policy-domain>`: the record, a hash (fields in `tlsrpt-scripts.ts`), expiring
 *   `retentionMs` after the day ends (an absolute time, judged by Redis's clock);
 * - `<prefix>tlsrpt:index`: sorted set of `<day>|<policy-domain>`, scored by expiry (`list()` reads it);
 * - `<prefix>tlsrpt:sums`: hash of `<day>|<policy-domain>` -> sessions in that record, the checksum that reveals
 *   counts Redis evicted;
 * - `<prefix>tlsrpt:seq:<member token>:<day>`: hash of policy domain -> number of this member's last merge, which
 *   makes each merge apply at most once; one per member process and day, expiring a day after its last merge;
 * - `<prefix>tlsrpt:lock:<day>:<policy-domain>`: the report lock;
 * - `<prefix>tlsrpt:corrupt:<day>:<policy-domain>`: a record that did not validate, kept 7 days for inspection.
 * The scripts touch several keys: on a Redis Cluster, use a prefix with a hash tag (`{tlsrpt}:`).
 *
 * Eviction: counts must not vanish, so Redis should run with `maxmemory-policy noeviction` (a full Redis then
 * refuses writes: the merge fails, the recorder keeps its counts and `close()` rejects). The store reads the policy
 * when it is created and warns (`warning` event, `TLSRPT_STORE_EVICTION`, and the logger) unless it is
 * `noeviction`. Under an evicting policy, the checksums reveal what vanished: a record gone before its expiry, or
 * re-created with fewer sessions than its checksum, is reported (`lost` event, `TLSRPT_COUNTS_LOST`, with the
 * number of sessions) by the next merge of that record or the next `list()`, never silently.
 *
 * Durability is Redis's: with `appendonly yes` (fsync every second) counts survive a Redis restart; without
 * persistence they survive a member's crash but not Redis's. A merge that times out may still be applied by Redis
 * later; before the next merge of that record the store fences it (so it is applied at most once) and learns
 * whether it was applied, so an outage neither loses nor doubles a count.
 */
import { randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { MtaStsError } from '../errors.js';
import type { AggregationLimits, DomainDayCounts, DomainDayKey } from '../tlsrpt/aggregate.js';
import { TlsRptError } from '../tlsrpt/errors.js';
import { utcDayKey, utcDayStart } from '../tlsrpt/report.js';
import type { DeliveryState, StoredDomainDay, TlsRptStore, TlsRptStoreEvent } from '../tlsrpt/store.js';
import type { TlsRptLogger } from '../tlsrpt/types.js';
import { IdleDeadline, scriptSha } from './batch.js';
import { checkRedisOptions, redisCall, type RedisClientLike } from './client.js';
import { evictionWarning, readEvictionPolicy } from './eviction-policy.js';
import { decodeRecord, encodeDelta, subtractCounts } from './tlsrpt-record.js';
import { AUDIT_SCRIPT, DELETE_SCRIPT, FENCE_SCRIPT, GET_SCRIPT, MERGE_SCRIPT, SET_DELIVERY_SCRIPT } from './tlsrpt-scripts.js';

const DAY_MS = 86_400_000;
/** How long a member's merge numbers are kept after its last merge: longer than any reconnect after which ioredis could replay a merge. */
const SEQUENCE_MS = DAY_MS;

/** Options of {@link createRedisTlsRptStore}. */
export interface RedisTlsRptStoreOptions {
  /** An `ioredis` client, owned by the caller. */
  redis: RedisClientLike;
  /** Prefix of every key. Default `mta-sts:`. */
  prefix?: string;
  /** Deadline of one Redis command, in ms; the merges of one flush fail together once Redis gave no reply for this long. Default 2000. */
  commandTimeoutMs?: number;
  /** How long a member holds a report it is sending, in ms. Default 900000 (15 minutes); must exceed one attempt. */
  reportLockMs?: number;
  /** How long a record is kept after its UTC day ends, in ms. Default 259200000 (3 days: delay, jitter, §5.5 retries). */
  retentionMs?: number;
  /** Clock, epoch ms: decides which days are closed (record expiries are judged by Redis's clock). Default `Date.now`. */
  now?: () => number;
  logger?: TlsRptLogger;
}

interface Seen {
  rev: string;
  counts: Record<string, string>;
}

/** Sessions that vanished from one record (-1: an unknown number). */
interface Lost {
  day: string;
  policyDomain: string;
  sessions: number;
}

/** The store returned by {@link createRedisTlsRptStore}. */
export class RedisTlsRptStore implements TlsRptStore {
  readonly prefix: string;
  readonly #redis: RedisClientLike;
  readonly #timeoutMs: number;
  readonly #lockMs: number;
  readonly #retentionMs: number;
  readonly #now: () => number;
  readonly #logger: TlsRptLogger | undefined;
  /** This member's token for report locks and merge numbers. */
  readonly #token = randomBytes(16).toString('hex');
  /** Number of this member's last merge. */
  #seq = 0;
  /** A merge of this member saw (or created) the checksums hash. */
  #sumsSeen = false;
  /** What `get()` read per record (revision and counts), for `delete()`; bounded. */
  readonly #seen = new LRUCache<string, Seen>({ max: 10_000 });
  readonly #listeners = new Set<(event: TlsRptStoreEvent) => void>();
  /** The eviction warning found at start, replayed to later subscribers. */
  #warning: TlsRptStoreEvent | undefined;
  /** Per record: merges that failed (applied or not: fenced before the next merge) and those known applied. */
  readonly #pending = new LRUCache<string, { uncertain: Array<{ seq: number; sent: DomainDayCounts }>; applied: DomainDayCounts[] }>({ max: 10_000 });
  /** Per script SHA1: whether `SCRIPT LOAD` gave it to Redis. */
  readonly #scripts = new Map<string, Promise<boolean>>();
  /** Resolves once the `maxmemory-policy` was read (and warned about). */
  readonly evictionChecked: Promise<void>;

  constructor(options: RedisTlsRptStoreOptions) {
    checkRedisOptions('createRedisTlsRptStore', options);
    const positive = (name: 'reportLockMs' | 'retentionMs', value: number, max: number): number => {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 1000 || value > max) throw new MtaStsError('MTASTS_INVALID_OPTIONS', `option ${name} must be an integer from 1000 to ${max} ms, got ${JSON.stringify(value)}`, { details: { option: name } });
      return value;
    };
    this.#redis = options.redis;
    this.prefix = options.prefix ?? 'mta-sts:';
    this.#timeoutMs = options.commandTimeoutMs ?? 2000;
    this.#lockMs = positive('reportLockMs', options.reportLockMs ?? 15 * 60_000, DAY_MS);
    this.#retentionMs = positive('retentionMs', options.retentionMs ?? 3 * DAY_MS, 30 * DAY_MS);
    this.#now = options.now ?? Date.now;
    this.#logger = options.logger;
    this.evictionChecked = this.#checkEvictionPolicy();
  }

  /**
   * One command with the command deadline, or, in a `batch`, with the batch's (see `batch.ts`). Rejects with
   * `TLSRPT_STORE_FAILED`.
   */
  #call(command: string, args: Array<string | number>, batch?: IdleDeadline): Promise<unknown> {
    const call = batch ? batch.run(this.#redis, command, args) : redisCall(this.#redis, this.#timeoutMs, command, args);
    return call.catch((error: unknown) => {
      throw new TlsRptError('TLSRPT_STORE_FAILED', `TLS-RPT Redis store: ${(error as Error).message}`, { cause: error });
    });
  }

  /**
   * Runs a Lua script by its SHA1 once Redis has it (`SCRIPT LOAD` the first time), so thousands of merges do not
   * send the script text each; falls back to `EVAL` when Redis does not have it (restarted, another cluster node).
   */
  async #eval(script: string, keys: string[], args: Array<string | number>, batch?: IdleDeadline): Promise<unknown> {
    const sha = scriptSha(script);
    let loaded = this.#scripts.get(sha);
    if (!loaded) {
      loaded = this.#call('SCRIPT', ['LOAD', script], batch).then(
        (reply) => reply === sha,
        (error: unknown) => {
          // SCRIPT refused (ACL, renamed): EVAL from now on; any other failure (Redis down): try again next time.
          if (!/NOPERM|unknown command/i.test((error as Error).message)) this.#scripts.delete(sha);
          return false;
        },
      );
      this.#scripts.set(sha, loaded);
    }
    if (await loaded) {
      try {
        return await this.#call('EVALSHA', [sha, keys.length, ...keys, ...args], batch);
      } catch (error) {
        if (!/NOSCRIPT/.test((error as Error).message)) throw error;
        this.#scripts.delete(sha);
      }
    }
    return this.#call('EVAL', [script, keys.length, ...keys, ...args], batch);
  }

  #keys(key: DomainDayKey): { record: string; lock: string; index: string; sums: string; seq: string; member: string; id: string } {
    if (!/^\d{4}-\d{2}-\d{2}$/.test(key.day) || typeof key.policyDomain !== 'string' || key.policyDomain === '' || key.policyDomain.includes('|')) {
      throw new TlsRptError('TLSRPT_STORE_FAILED', `invalid record key ${JSON.stringify(key)}`);
    }
    const id = `${key.day}:${key.policyDomain}`;
    const t = `${this.prefix}tlsrpt:`;
    return { record: `${t}${id}`, lock: `${t}lock:${id}`, index: `${t}index`, sums: `${t}sums`, seq: `${t}seq:${this.#token}:${key.day}`, member: `${key.day}|${key.policyDomain}`, id };
  }

  /** `maxmemory-policy` other than `noeviction` (or unreadable): a warning event and a log line. Never rejects. */
  async #checkEvictionPolicy(): Promise<void> {
    const warning = evictionWarning(await readEvictionPolicy((command, args) => this.#call(command, args)), 'TLS-RPT counts');
    if (warning === undefined) return;
    this.#logger?.warn?.(`tlsrpt: ${warning}`);
    this.#warning = { type: 'warning', error: new TlsRptError('TLSRPT_STORE_EVICTION', warning) };
    this.#emit(this.#warning);
  }

  /**
   * One EVAL: adds `delta` to the record atomically (the caps of `mergeDomainDayCounts` applied in the script), at
   * most once (see the module comment). Counts found vanished are reported as a `lost` event.
   */
  async merge(delta: DomainDayCounts, limits: AggregationLimits): Promise<void> {
    const lost = await this.#mergeOne(delta, limits);
    if (lost) this.#reportLost([lost]);
  }

  /**
   * The merges of one flush, all at once (ioredis pipelines them) under one deadline that follows progress (see
   * `batch.ts`): a Redis that is down fails the whole flush within `commandTimeoutMs`, whatever the number of records.
   */
  async mergeMany(deltas: readonly DomainDayCounts[], limits: AggregationLimits): Promise<Array<{ delta: DomainDayCounts; error: unknown }>> {
    const batch = new IdleDeadline(this.#timeoutMs);
    const failed: Array<{ delta: DomainDayCounts; error: unknown }> = [];
    const lost: Lost[] = [];
    try {
      await Promise.all(
        deltas.map((delta) =>
          this.#mergeOne(delta, limits, batch).then(
            (l) => void (l && lost.push(l)),
            (error: unknown) => void failed.push({ delta, error }),
          ),
        ),
      );
    } finally {
      batch.end();
    }
    if (lost.length > 0) this.#reportLost(lost);
    return failed;
  }

  /**
   * Fences the record's merges whose outcome is unknown (learning which were applied: their counts are taken out of
   * `delta`, which the recorder folded them back into), then merges. Returns what vanished, if anything.
   */
  async #mergeOne(delta: DomainDayCounts, limits: AggregationLimits, batch?: IdleDeadline): Promise<Lost | undefined> {
    const k = this.#keys(delta);
    const state = this.#pending.get(k.id) ?? { uncertain: [], applied: [] };
    for (const u of [...state.uncertain]) {
      const applied = await this.#eval(FENCE_SCRIPT, [k.seq], [delta.policyDomain, u.seq, SEQUENCE_MS], batch);
      state.uncertain.splice(state.uncertain.indexOf(u), 1);
      if (applied === 1) state.applied.push(u.sent);
    }
    const toSend = state.applied.reduce((d, applied) => subtractCounts(d, applied), delta);
    const seq = ++this.#seq;
    // An absolute time from the day: every member sets the same expiry, and Redis judges it by its own clock.
    const expireAt = utcDayStart(delta.day) + DAY_MS + this.#retentionMs;
    const maxRecords = limits.maxDomainsPerDay * Math.ceil(1 + this.#retentionMs / DAY_MS);
    let reply: unknown;
    try {
      reply = await this.#eval(MERGE_SCRIPT, [k.record, k.index, k.sums, k.seq], [JSON.stringify(encodeDelta(toSend)), limits.maxPoliciesPerDomain, limits.maxFailureDetailsPerPolicy, expireAt, k.member, maxRecords, SEQUENCE_MS, delta.policyDomain, seq], batch);
    } catch (error) {
      if (state.uncertain.length < 100) state.uncertain.push({ seq, sent: toSend });
      this.#pending.set(k.id, state);
      throw error;
    }
    this.#pending.delete(k.id); // the recorder passed everything it held for this record: nothing left to subtract
    const [dropped, lostInRecord, sumsExisted] = Array.isArray(reply) ? reply.map(Number) : [Number.NaN, 0, 1];
    // The checksums hash never disappears by itself once created: gone after this member saw it, Redis evicted it.
    const lost = lostInRecord || (sumsExisted === 0 && this.#sumsSeen ? -1 : 0);
    this.#sumsSeen = true;
    if (dropped === -2 || !Number.isFinite(dropped)) throw new TlsRptError('TLSRPT_STORE_FAILED', `TLS-RPT Redis store: merge ${seq} for ${delta.policyDomain} ${delta.day} was refused (${JSON.stringify(reply)})`);
    if (dropped! > 0 || dropped === -1) this.#logger?.warn?.(`tlsrpt: Redis store dropped ${dropped! < 0 ? 'every' : dropped} session(s) for ${delta.policyDomain} ${delta.day} (cap reached)`);
    return lost ? { day: delta.day, policyDomain: delta.policyDomain, sessions: lost } : undefined;
  }

  /**
   * One EVAL, judged by Redis's clock: forgets expired records, checks every record against its checksum (counts
   * that vanished are reported as a `lost` event), then answers the index.
   */
  async list(): Promise<DomainDayKey[]> {
    const reply = await this.#eval(AUDIT_SCRIPT, [`${this.prefix}tlsrpt:index`, `${this.prefix}tlsrpt:sums`], [`${this.prefix}tlsrpt:`]);
    if (!Array.isArray(reply) || !Array.isArray(reply[0]) || !Array.isArray(reply[1])) throw new TlsRptError('TLSRPT_STORE_FAILED', 'TLS-RPT Redis store: unexpected reply to the index audit');
    const keyOf = (member: unknown): DomainDayKey | undefined => {
      const bar = typeof member === 'string' ? member.indexOf('|') : -1;
      return bar === 10 ? { day: (member as string).slice(0, bar), policyDomain: (member as string).slice(bar + 1) } : undefined;
    };
    const lost: Lost[] = [];
    for (let i = 0; i + 1 < reply[1].length; i += 2) {
      const key = keyOf(reply[1][i]);
      if (key) lost.push({ ...key, sessions: Number(reply[1][i + 1]) });
    }
    if (lost.length > 0) this.#reportLost(lost);
    return reply[0].map(keyOf).filter((k): k is DomainDayKey => k !== undefined);
  }

  /** One `lost` event (`TLSRPT_COUNTS_LOST`) and one error log line for what vanished. */
  #reportLost(lost: Lost[]): void {
    const known = lost.reduce((n, l) => n + Math.max(0, l.sessions), 0);
    const unknown = lost.some((l) => l.sessions < 0);
    const first = lost[0]!;
    const named = lost.slice(0, 5).map((l) => `${l.policyDomain} ${l.day}${l.sessions >= 0 ? `: ${l.sessions}` : ''}`);
    const where = lost.length === 1 ? named[0] : `${lost.length} records (${named.join(', ')}${lost.length > 5 ? ', ...' : ''})`;
    const message = `TLS-RPT counts vanished from Redis (evicted: set maxmemory-policy noeviction): ${known} session(s)${unknown ? ' and an unknown number more' : ''} of ${where} will not be reported`;
    const error = new TlsRptError('TLSRPT_COUNTS_LOST', message, {
      ...(lost.length === 1 ? { domain: first.policyDomain } : {}),
      details: { sessions: known, unknown, records: lost.length, day: first.day, policyDomain: first.policyDomain },
    });
    this.#logger?.error?.(`tlsrpt: ${message}`);
    this.#emit({ type: 'lost', error });
  }

  /**
   * One EVAL. For a closed UTC day, claims the report for this member (see the module comment): `undefined` while
   * another member holds it. A record that does not validate is moved aside, reported, and read as missing.
   */
  async get(key: DomainDayKey): Promise<StoredDomainDay | undefined> {
    const k = this.#keys(key);
    const claim = key.day < utcDayKey(this.#now()) ? '1' : '0';
    const reply = await this.#eval(GET_SCRIPT, [k.record, k.lock], [this.#token, this.#lockMs, claim]);
    if (reply === 0 || !Array.isArray(reply) || reply.length === 0) return undefined;
    const fields = new Map<string, string>();
    for (let i = 0; i + 1 < reply.length; i += 2) fields.set(String(reply[i]), String(reply[i + 1]));
    try {
      const record = decodeRecord(key, fields);
      const counts: Record<string, string> = {};
      for (const [field, value] of fields) if (/^[sfc]:/.test(field)) counts[field] = value;
      this.#seen.set(k.id, { rev: fields.get('rev') ?? '', counts });
      return record;
    } catch (error) {
      await this.#quarantine(key, error);
      return undefined;
    }
  }

  /** One EVAL; only the member holding the report changes its delivery state. */
  async setDelivery(key: DomainDayKey, state: DeliveryState): Promise<void> {
    const k = this.#keys(key);
    const reply = await this.#eval(SET_DELIVERY_SCRIPT, [k.record, k.lock], [this.#token, JSON.stringify(state)]);
    if (reply === -1) this.#logger?.warn?.(`tlsrpt: report for ${key.policyDomain} ${key.day} is held by another member; delivery state not changed`);
  }

  /** One EVAL: removes the record (what was read is reported; later counts stay for a later report), frees the lock. */
  async delete(key: DomainDayKey): Promise<void> {
    const k = this.#keys(key);
    const seen = this.#seen.get(k.id);
    this.#seen.delete(k.id);
    const reply = await this.#eval(DELETE_SCRIPT, [k.record, k.lock, k.index, k.sums], [this.#token, seen?.rev ?? '', k.member, JSON.stringify(seen?.counts ?? {})]);
    if (reply === -1) this.#logger?.warn?.(`tlsrpt: report for ${key.policyDomain} ${key.day} is held by another member; not deleted`);
  }

  /** Subscribes to the store's events; a warning found at start is delivered to late subscribers too. */
  subscribe(listener: (event: TlsRptStoreEvent) => void): () => void {
    this.#listeners.add(listener);
    const warning = this.#warning;
    if (warning) queueMicrotask(() => this.#listeners.has(listener) && safely(listener, warning));
    return () => this.#listeners.delete(listener);
  }

  #emit(event: TlsRptStoreEvent): void {
    for (const listener of [...this.#listeners]) safely(listener, event);
  }

  async #quarantine(key: DomainDayKey, cause: unknown): Promise<void> {
    const k = this.#keys(key);
    const movedTo = `${this.prefix}tlsrpt:corrupt:${key.day}:${key.policyDomain}`;
    let moved: string | undefined;
    try {
      await this.#call('RENAME', [k.record, movedTo]);
      await this.#call('PEXPIRE', [movedTo, 7 * DAY_MS]);
      await this.#call('HDEL', [k.sums, k.member]); // reported here as corrupt, not again as vanished
      moved = movedTo;
    } catch {
      // reported below either way
    }
    const error = new TlsRptError('TLSRPT_SPOOL_CORRUPT', `corrupt TLS-RPT Redis record ${k.record} skipped: ${cause instanceof Error ? cause.message : String(cause)}`, { cause, domain: key.policyDomain, details: { path: k.record, movedTo: moved, day: key.day } });
    this.#logger?.error?.(error.message, { key: k.record, movedTo: moved });
    this.#emit({ type: 'corrupt', error });
  }
}

function safely(listener: (event: TlsRptStoreEvent) => void, event: TlsRptStoreEvent): void {
  try {
    listener(event);
  } catch {
    // a throwing listener must not break the store
  }
}

/**
 * Creates a TLS-RPT store shared through Redis (see the module comment): pass it as `store` to
 * `createTlsRptReporter` on every member of the fleet. Run that Redis with `maxmemory-policy noeviction`.
 *
 * @example
 * ```ts
 * const reporter = createTlsRptReporter({ ...options, store: createRedisTlsRptStore({ redis, prefix: 'mta-sts:' }) });
 * ```
 */
export function createRedisTlsRptStore(options: RedisTlsRptStoreOptions): RedisTlsRptStore {
  return new RedisTlsRptStore(options);
}
