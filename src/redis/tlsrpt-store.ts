/**
 * A TLS-RPT store shared by a fleet through Redis (RFC 8460 §4.1, §5).
 *
 * RFC 8460 asks for one report per policy domain per UTC day from the sending organisation; a fleet whose members
 * each keep their own spool sends one per member. With this store every member's counts go to one Redis record
 * per (day, policy domain), incremented atomically by a Lua script (`HINCRBY` inside it), so the report carries the
 * exact sum; and a per-report lock lets one member at a time build and send a closed day's report, which is then
 * deleted: sent once. It implements the same {@link TlsRptStore} interface as the file spool, so
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
 *   `retentionMs` after the day ends;
 * - `<prefix>tlsrpt:index`: sorted set of `<day>|<policy-domain>`, scored by expiry (`list()` reads it);
 * - `<prefix>tlsrpt:lock:<day>:<policy-domain>`: the report lock;
 * - `<prefix>tlsrpt:corrupt:<day>:<policy-domain>`: a record that did not validate, kept 7 days for inspection.
 * The scripts touch several keys: on a Redis Cluster, use a prefix with a hash tag (`{tlsrpt}:`).
 *
 * Durability is Redis's: with `appendonly yes` (fsync every second) counts survive a Redis restart; without
 * persistence they survive a member's crash but not Redis's. A merge that times out may still be applied by Redis
 * later, while the recorder keeps the counts for its next flush: after a Redis stall longer than the command
 * timeout, counts may be over-counted by what one flush held.
 */
import { createHash, randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { MtaStsError } from '../errors.js';
import { failureKey, parseDomainDayCounts, policyKey, TRUNCATED_FAILURE_REASON, type AggregationLimits, type DomainDayCounts, type DomainDayKey } from '../tlsrpt/aggregate.js';
import { TlsRptError } from '../tlsrpt/errors.js';
import { utcDayKey, utcDayStart } from '../tlsrpt/report.js';
import type { DeliveryState, StoredDomainDay, TlsRptStore, TlsRptStoreEvent } from '../tlsrpt/store.js';
import type { AggregatedPolicy, TlsRptLogger } from '../tlsrpt/types.js';
import { checkRedisOptions, redisCall, type RedisClientLike } from './client.js';
import { DELETE_SCRIPT, GET_SCRIPT, MERGE_SCRIPT, SET_DELIVERY_SCRIPT } from './tlsrpt-scripts.js';

const DAY_MS = 86_400_000;
/** How long a merge marker lives: longer than any reconnect after which ioredis could replay the merge. */
const MARKER_MS = DAY_MS;

/** Options of {@link createRedisTlsRptStore}. */
export interface RedisTlsRptStoreOptions {
  /** An `ioredis` client, owned by the caller. */
  redis: RedisClientLike;
  /** Prefix of every key. Default `mta-sts:`. */
  prefix?: string;
  /** Deadline of one Redis command, in ms. Default 2000. */
  commandTimeoutMs?: number;
  /** How long a member holds a report it is sending, in ms. Default 900000 (15 minutes); must exceed one attempt. */
  reportLockMs?: number;
  /** How long a record is kept after its UTC day ends, in ms. Default 259200000 (3 days: delay, jitter, §5.5 retries). */
  retentionMs?: number;
  /** Clock, epoch ms (decides which days are closed). Default `Date.now`. */
  now?: () => number;
  logger?: TlsRptLogger;
}

interface Seen {
  rev: string;
  counts: Record<string, string>;
}

const hashOf = (text: string): string => createHash('sha256').update(text).digest('hex').slice(0, 24);

/** The store returned by {@link createRedisTlsRptStore}. */
export class RedisTlsRptStore implements TlsRptStore {
  readonly prefix: string;
  readonly #redis: RedisClientLike;
  readonly #timeoutMs: number;
  readonly #lockMs: number;
  readonly #retentionMs: number;
  readonly #now: () => number;
  readonly #logger: TlsRptLogger | undefined;
  /** This member's token for report locks. */
  readonly #token = randomBytes(16).toString('hex');
  /** What `get()` read per record (revision and counts), for `delete()`; bounded. */
  readonly #seen = new LRUCache<string, Seen>({ max: 10_000 });
  readonly #listeners = new Set<(event: TlsRptStoreEvent) => void>();
  /** Per record: merges that failed (applied or not: fenced before the next merge) and those known applied. */
  readonly #pending = new LRUCache<string, { uncertain: Array<{ id: string; sent: DomainDayCounts }>; applied: DomainDayCounts[] }>({ max: 10_000 });

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
  }

  #call(command: string, args: Array<string | number>): Promise<unknown> {
    return redisCall(this.#redis, this.#timeoutMs, command, args).catch((error: unknown) => {
      throw new TlsRptError('TLSRPT_STORE_FAILED', `TLS-RPT Redis store: ${(error as Error).message}`, { cause: error });
    });
  }

  #keys(key: DomainDayKey): { record: string; lock: string; index: string; member: string; id: string } {
    if (!/^\d{4}-\d{2}-\d{2}$/.test(key.day) || typeof key.policyDomain !== 'string' || key.policyDomain === '' || key.policyDomain.includes('|')) {
      throw new TlsRptError('TLSRPT_STORE_FAILED', `invalid record key ${JSON.stringify(key)}`);
    }
    const id = `${key.day}:${key.policyDomain}`;
    return { record: `${this.prefix}tlsrpt:${id}`, lock: `${this.prefix}tlsrpt:lock:${id}`, index: `${this.prefix}tlsrpt:index`, member: `${key.day}|${key.policyDomain}`, id };
  }

  /**
   * One EVAL: adds `delta` to the record atomically (the caps of `mergeDomainDayCounts` applied in the script), at
   * most once. A merge that failed or timed out may still be applied by Redis later (ioredis replays queued
   * commands after a reconnect) while the recorder keeps its counts and passes them again: before the next merge of
   * that record, a fence on the failed merge's marker tells whether it was applied, and if so its counts are taken
   * out of the new delta. So an outage neither loses nor doubles a count.
   */
  async merge(delta: DomainDayCounts, limits: AggregationLimits): Promise<void> {
    const k = this.#keys(delta);
    const state = this.#pending.get(k.id) ?? { uncertain: [], applied: [] };
    for (const u of [...state.uncertain]) {
      // Fenced (OK): the abandoned merge can never apply. Taken (null): it was applied.
      const fenced = await this.#call('SET', [this.#markerKey(u.id), 'fenced', 'NX', 'PX', MARKER_MS]);
      state.uncertain.splice(state.uncertain.indexOf(u), 1);
      if (fenced !== 'OK') state.applied.push(u.sent);
    }
    const toSend = state.applied.reduce((d, applied) => subtractCounts(d, applied), delta);
    const id = randomBytes(12).toString('hex');
    const expireAt = utcDayStart(delta.day) + DAY_MS + this.#retentionMs;
    const maxRecords = limits.maxDomainsPerDay * Math.ceil(1 + this.#retentionMs / DAY_MS);
    let dropped: number;
    try {
      dropped = Number(await this.#call('EVAL', [MERGE_SCRIPT, 3, k.record, k.index, this.#markerKey(id), JSON.stringify(encodeDelta(toSend)), limits.maxPoliciesPerDomain, limits.maxFailureDetailsPerPolicy, expireAt, k.member, maxRecords, MARKER_MS]));
    } catch (error) {
      if (state.uncertain.length < 100) state.uncertain.push({ id, sent: toSend });
      this.#pending.set(k.id, state);
      throw error;
    }
    this.#pending.delete(k.id); // the recorder passed everything it held for this record: nothing left to subtract
    if (dropped > 0 || dropped === -1) this.#logger?.warn?.(`tlsrpt: Redis store dropped ${dropped < 0 ? 'every' : dropped} session(s) for ${delta.policyDomain} ${delta.day} (cap reached)`);
  }

  #markerKey(id: string): string {
    return `${this.prefix}tlsrpt:merge:${id}`;
  }

  /** Two commands: drops index entries of expired records, then reads the index. */
  async list(): Promise<DomainDayKey[]> {
    const index = `${this.prefix}tlsrpt:index`;
    await this.#call('ZREMRANGEBYSCORE', [index, '-inf', this.#now()]);
    const members = (await this.#call('ZRANGE', [index, 0, -1])) as unknown;
    if (!Array.isArray(members)) throw new TlsRptError('TLSRPT_STORE_FAILED', 'Redis ZRANGE returned an unexpected reply');
    const keys: DomainDayKey[] = [];
    for (const member of members) {
      if (typeof member !== 'string') continue;
      const bar = member.indexOf('|');
      if (bar === 10) keys.push({ day: member.slice(0, bar), policyDomain: member.slice(bar + 1) });
    }
    return keys;
  }

  /**
   * One EVAL. For a closed UTC day, claims the report for this member (see the module comment): `undefined` while
   * another member holds it. A record that does not validate is moved aside, reported, and read as missing.
   */
  async get(key: DomainDayKey): Promise<StoredDomainDay | undefined> {
    const k = this.#keys(key);
    const claim = key.day < utcDayKey(this.#now()) ? '1' : '0';
    const reply = await this.#call('EVAL', [GET_SCRIPT, 2, k.record, k.lock, this.#token, this.#lockMs, claim]);
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
      await this.#quarantine(key, k.record, error);
      return undefined;
    }
  }

  /** One EVAL; only the member holding the report changes its delivery state. */
  async setDelivery(key: DomainDayKey, state: DeliveryState): Promise<void> {
    const k = this.#keys(key);
    const reply = await this.#call('EVAL', [SET_DELIVERY_SCRIPT, 2, k.record, k.lock, this.#token, JSON.stringify(state)]);
    if (reply === -1) this.#logger?.warn?.(`tlsrpt: report for ${key.policyDomain} ${key.day} is held by another member; delivery state not changed`);
  }

  /** One EVAL: removes the record (what was read is reported; later counts stay for a later report), frees the lock. */
  async delete(key: DomainDayKey): Promise<void> {
    const k = this.#keys(key);
    const seen = this.#seen.get(k.id);
    this.#seen.delete(k.id);
    const reply = await this.#call('EVAL', [DELETE_SCRIPT, 3, k.record, k.lock, k.index, this.#token, seen?.rev ?? '', k.member, JSON.stringify(seen?.counts ?? {})]);
    if (reply === -1) this.#logger?.warn?.(`tlsrpt: report for ${key.policyDomain} ${key.day} is held by another member; not deleted`);
  }

  subscribe(listener: (event: TlsRptStoreEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async #quarantine(key: DomainDayKey, recordKey: string, cause: unknown): Promise<void> {
    const movedTo = `${this.prefix}tlsrpt:corrupt:${key.day}:${key.policyDomain}`;
    let moved: string | undefined;
    try {
      await this.#call('RENAME', [recordKey, movedTo]);
      await this.#call('PEXPIRE', [movedTo, 7 * DAY_MS]);
      moved = movedTo;
    } catch {
      // reported below either way
    }
    const error = new TlsRptError('TLSRPT_SPOOL_CORRUPT', `corrupt TLS-RPT Redis record ${recordKey} skipped: ${cause instanceof Error ? cause.message : String(cause)}`, { cause, domain: key.policyDomain, details: { path: recordKey, movedTo: moved, day: key.day } });
    this.#logger?.error?.(error.message, { key: recordKey, movedTo: moved });
    for (const listener of [...this.#listeners]) {
      try {
        listener({ type: 'corrupt', error });
      } catch {
        // a throwing listener must not break the store
      }
    }
  }
}

/** The script's view of a delta: hashed identities, counts as strings. */
function encodeDelta(delta: DomainDayCounts): unknown[] {
  return delta.policies.map((p) => ({
    ph: hashOf(policyKey(p.policy)),
    p: JSON.stringify(p.policy),
    s: String(p.successCount),
    f: String(p.failureCount),
    d: p.failures
      .filter((f) => f.count > 0)
      .map((f) => {
        const { count, ...detail } = f;
        const overflow = { resultType: f.resultType, failureReasonCode: TRUNCATED_FAILURE_REASON };
        return { fh: hashOf(failureKey(f)), j: JSON.stringify(detail), c: String(count), ov: f.failureReasonCode === TRUNCATED_FAILURE_REASON && Object.keys(f).length === 3, o: hashOf(failureKey(overflow)), oj: JSON.stringify(overflow) };
      }),
  }));
}

/**
 * `delta` without the counts of `applied` (a merge Redis applied although the caller saw it fail; the recorder folded
 * those counts back into `delta`). A failure detail the recorder folded into its overflow detail is taken from there.
 */
export function subtractCounts(delta: DomainDayCounts, applied: DomainDayCounts): DomainDayCounts {
  const out = structuredClone(delta);
  for (const a of applied.policies) {
    const target = out.policies.find((p) => policyKey(p.policy) === policyKey(a.policy));
    if (!target) continue;
    target.successCount = Math.max(0, target.successCount - a.successCount);
    target.failureCount = Math.max(0, target.failureCount - a.failureCount);
    for (const af of a.failures) {
      let left = af.count;
      const same = target.failures.find((f) => failureKey(f) === failureKey(af));
      const overflow = target.failures.find((f) => f.resultType === af.resultType && f.failureReasonCode === TRUNCATED_FAILURE_REASON && Object.keys(f).length === 3);
      for (const f of [same, overflow]) {
        if (!f || left === 0) continue;
        const take = Math.min(f.count, left);
        f.count -= take;
        left -= take;
      }
    }
    target.failures = target.failures.filter((f) => f.count > 0);
  }
  out.policies = out.policies.filter((p) => p.successCount + p.failureCount > 0 || p.failures.length > 0);
  return out;
}

/** Rebuilds and validates a record from its hash fields; throws a `TypeError` when malformed. */
function decodeRecord(key: DomainDayKey, fields: Map<string, string>): StoredDomainDay {
  if (fields.get('v') !== '1') throw new TypeError(`unknown record format ${JSON.stringify(fields.get('v'))}`);
  const count = (field: string): number => {
    const n = Number(fields.get(field) ?? '0');
    if (!Number.isSafeInteger(n) || n < 0) throw new TypeError(`bad count in ${field}`);
    return n;
  };
  const policies: AggregatedPolicy[] = [];
  for (const [field, json] of fields) {
    if (!field.startsWith('p:')) continue;
    const ph = field.slice(2);
    const failures = [];
    for (const [df, dj] of fields) {
      if (!df.startsWith(`d:${ph}:`)) continue;
      const c = count(`c:${df.slice(2)}`);
      if (c > 0) failures.push({ ...(JSON.parse(dj) as object), count: c });
    }
    const successCount = count(`s:${ph}`);
    const failureCount = count(`f:${ph}`);
    if (successCount + failureCount === 0 && failures.length === 0) continue;
    policies.push({ policy: JSON.parse(json), successCount, failureCount, failures } as AggregatedPolicy);
  }
  const counts = parseDomainDayCounts({ day: key.day, policyDomain: key.policyDomain, policies });
  const delivery = fields.get('delivery');
  return { ...counts, ...(delivery !== undefined ? { delivery: parseDelivery(JSON.parse(delivery)) } : {}) };
}

function parseDelivery(value: unknown): DeliveryState {
  const v = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  const num = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n);
  if (typeof v.uniqueId !== 'string' || !/^[A-Za-z0-9]{1,64}$/.test(v.uniqueId)) throw new TypeError('malformed delivery state: uniqueId');
  if (!num(v.dueAt) || !num(v.attempts) || !num(v.nextAttemptAt)) throw new TypeError('malformed delivery state: times');
  const out: DeliveryState = { uniqueId: v.uniqueId, dueAt: v.dueAt, attempts: v.attempts, nextAttemptAt: v.nextAttemptAt };
  if (num(v.firstAttemptAt)) out.firstAttemptAt = v.firstAttemptAt;
  if (typeof v.lastError === 'string') out.lastError = v.lastError.slice(0, 1000);
  return out;
}

/**
 * Creates a TLS-RPT store shared through Redis (see the module comment): pass it as `store` to
 * `createTlsRptReporter` on every member of the fleet.
 *
 * @example
 * ```ts
 * const reporter = createTlsRptReporter({ ...options, store: createRedisTlsRptStore({ redis, prefix: 'mta-sts:' }) });
 * ```
 */
export function createRedisTlsRptStore(options: RedisTlsRptStoreOptions): RedisTlsRptStore {
  return new RedisTlsRptStore(options);
}
