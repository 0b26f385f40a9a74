/**
 * Persistence of TLS-RPT counts and report delivery state.
 *
 * RFC 8460 reports cover a whole UTC day (§4.1) and are sent hours after it ends, with retries for up to a day
 * (§5.5), so counts must survive restarts. A {@link TlsRptStore} keeps one record per (UTC day, policy domain):
 * the aggregated counts ({@link DomainDayCounts}) and the delivery state of its report ({@link DeliveryState}).
 *
 * The interface is small and asynchronous so that other backends fit:
 * - {@link MemoryTlsRptStore}: in process, for tests and short-lived tools;
 * - `createSqliteTlsRptStore` (`src/sqlite/tlsrpt-store.ts`): one SQLite file on one host, shared by its processes;
 * - `createRedisTlsRptStore` (`mta-sts-sender/redis`): one Redis shared by a fleet.
 */
import { mergeDomainDayCounts, subtractDomainDayCounts, totalSessions, type AggregationLimits, type DomainDayCounts, type DomainDayKey } from './aggregate.js';
import type { TlsRptError } from './errors.js';

/** Delivery state of one report, persisted so retries and the report id survive restarts. */
export interface DeliveryState {
  /** The random unique id of this report (RFC 8460 §5.1 `unique-id`; part of the report id). */
  uniqueId: string;
  /** Not sent before this instant (day end + delay + jitter, RFC 8460 §4.1). */
  dueAt: number;
  /** Failed attempts so far. */
  attempts: number;
  /** When the first attempt was made. */
  firstAttemptAt?: number;
  /** Next attempt not before this instant (exponential backoff, RFC 8460 §5.5). */
  nextAttemptAt: number;
  /** Message of the last failure. */
  lastError?: string;
}

/** One stored record: counts plus delivery state. */
export interface StoredDomainDay extends DomainDayCounts {
  delivery?: DeliveryState;
}

/** Pluggable persistence of TLS-RPT counts. All methods may reject; callers keep data in memory and retry. */
export interface TlsRptStore {
  /** Adds `delta` to the record of (`delta.day`, `delta.policyDomain`), creating it; atomic per record. */
  merge(delta: DomainDayCounts, limits: AggregationLimits): Promise<void>;
  /** All stored records' keys, any order. */
  list(): Promise<DomainDayKey[]>;
  /** One record, or `undefined` when missing (or corrupt: a store reports and discards corrupt records). */
  get(key: DomainDayKey): Promise<StoredDomainDay | undefined>;
  /** Replaces the delivery state of an existing record (no-op when the record is gone). */
  setDelivery(key: DomainDayKey, state: DeliveryState): Promise<void>;
  /** Removes a record (after its report was sent, skipped or dropped). Missing records are fine. */
  delete(key: DomainDayKey): Promise<void>;
  /**
   * Optional: removes from the record the counts of a report that was sent or given up (`sent`,
   * as returned by `get`), atomically. Counts merged since that `get` (late sessions of the day, recorded by this or
   * another process while the report was delivered) stay, as a record without delivery state (a new report).
   * Without it the reporter calls `delete`, losing such late counts. A Redis store would run
   * {@link subtractDomainDayCounts} in the same WATCH/MULTI loop (or Lua script) as `merge`.
   */
  settle?(key: DomainDayKey, sent: DomainDayCounts): Promise<void>;
  /**
   * Optional: claims a scheduled report (one whose delivery state was set) for sending, so that of several senders
   * sharing the store exactly one delivers it. Returns the report to send, with the delivery state as stored (its
   * `uniqueId` makes the report id), or `undefined` when another sender holds it or there is nothing to send. The
   * reporter claims every report right before its attempt, calls `settle` after a delivery and `release` at the
   * end of the attempt. A store that claims inside `get` (the Redis store) does not need it.
   */
  claim?(key: DomainDayKey): Promise<StoredDomainDay | undefined>;
  /** Optional: gives back a report claimed with `claim` (after a failed, skipped or kept attempt). */
  release?(key: DomainDayKey): Promise<void>;
  /**
   * Optional: merges the deltas of many records (one flush of the recorder) at once: concurrently under one deadline
   * for the whole batch (Redis), or in one transaction (SQLite: all stored, or none). Resolves with the deltas that
   * were not stored, each with its error (an empty array: all stored). Without it the recorder calls `merge` once per
   * record, one after another.
   */
  mergeMany?(deltas: readonly DomainDayCounts[], limits: AggregationLimits): Promise<Array<{ delta: DomainDayCounts; error: unknown }>>;
  /** Releases resources. */
  close?(): Promise<void>;
  /**
   * Optional: subscribes to store events (a corrupt record that was skipped, counts that vanished, a risky setup).
   * Returns the unsubscribe function. The reporter subscribes and re-emits them (see {@link TlsRptStoreEvent}).
   */
  subscribe?(listener: (event: TlsRptStoreEvent) => void): () => void;
}

/**
 * An event of a {@link TlsRptStore}:
 * - `corrupt`: a record that did not validate was skipped (`TLSRPT_SPOOL_CORRUPT`, with `details.path` and
 *   `details.movedTo`); the reporter re-emits it as `spool-corrupt`;
 * - `lost`: counts the store had accepted are gone, e.g. evicted by Redis (`TLSRPT_COUNTS_LOST`: `details.sessions`
 *   how many, `details.unknown` true when more of an unknown number may be, `details.records` in how many records,
 *   `details.day` / `details.policyDomain` the first of them); the reporter re-emits it as `store-error`;
 * - `warning`: the store is set up so that it may lose counts (`TLSRPT_STORE_EVICTION`: Redis may evict keys); the
 *   reporter re-emits it as a `warning` event with that code.
 */
export interface TlsRptStoreEvent {
  type: 'corrupt' | 'lost' | 'warning';
  error: TlsRptError;
}

const recordId = (key: DomainDayKey): string => `${key.day}|${key.policyDomain}`;

/** In-memory {@link TlsRptStore}. Values are deep-copied in and out. */
export class MemoryTlsRptStore implements TlsRptStore {
  private readonly records = new Map<string, StoredDomainDay>();

  async merge(delta: DomainDayCounts, limits: AggregationLimits): Promise<void> {
    const id = recordId(delta);
    const existing = this.records.get(id);
    const merged = mergeDomainDayCounts(existing, delta, limits);
    this.records.set(id, { ...merged, ...(existing?.delivery ? { delivery: existing.delivery } : {}) });
  }

  async list(): Promise<DomainDayKey[]> {
    return [...this.records.values()].map((r) => ({ day: r.day, policyDomain: r.policyDomain }));
  }

  async get(key: DomainDayKey): Promise<StoredDomainDay | undefined> {
    const record = this.records.get(recordId(key));
    return record ? structuredClone(record) : undefined;
  }

  async setDelivery(key: DomainDayKey, state: DeliveryState): Promise<void> {
    const record = this.records.get(recordId(key));
    if (record) record.delivery = { ...state };
  }

  async delete(key: DomainDayKey): Promise<void> {
    this.records.delete(recordId(key));
  }

  async settle(key: DomainDayKey, sent: DomainDayCounts): Promise<void> {
    const id = recordId(key);
    const existing = this.records.get(id);
    if (!existing) return;
    const rest = subtractDomainDayCounts(existing, sent);
    if (totalSessions(rest) === 0) this.records.delete(id);
    else this.records.set(id, rest);
  }
}
