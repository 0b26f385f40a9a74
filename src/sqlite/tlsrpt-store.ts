/**
 * The TLS-RPT store on one host: counts and report delivery state in one SQLite database file (RFC 8460 §4.1:
 * a report covers a UTC day and is sent after it, with retries for up to a day, §5.5; so both must survive
 * restarts). Several processes (MTA workers, Haraka workers, `mta-sts tlsrpt send` beside a running MTA) share the
 * file: SQLite serialises their write transactions (WAL mode, see `openSqlite`).
 *
 * - Recording: a flush of the recorder is ONE transaction (`mergeMany`) whatever the number of domains, adding to
 *   counter rows (see `tlsrpt-rows.ts`): a crash loses at most what was not flushed yet, never a half-written flush.
 * - Sending exactly once: a sender `claim`s a due report in a transaction. The first claim freezes the report: the
 *   counters move into the report row, next to the report's `unique-id` (RFC 8460 §5.1, part of the report id) fixed
 *   when the report was first scheduled. The claim has an owner and a lease (`reportLockMs`); another sender sees a
 *   claimed report as absent until the lease ends or the owner's process (on this host) is gone. `settle` after the
 *   delivery deletes the report row: sent once. A sender that crashes between the delivery and `settle` leaves the
 *   claim to lapse; the report is then sent again with the same content and the same report id, so that a receiver
 *   can drop the duplicate.
 * - A report delivered whose "sent" state cannot be saved (a full or read-only disk) is remembered in memory
 *   (bounded) and never claimed again by this store; `settle` rejects with `TLSRPT_STORE_FAILED`, so the reporter
 *   emits a `store-error` event and does not count the report as sent.
 * - Bounded file: sent reports' rows are deleted; records of days older than `retentionMs` after their end are
 *   deleted (with a warning when a report among them was never sent).
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { LRUCache } from 'lru-cache';
import { validateSqliteTlsRptStoreOptions } from '../option-specs.js';
import { subtractDomainDayCounts, totalSessions, type AggregationLimits, type DomainDayCounts, type DomainDayKey } from '../tlsrpt/aggregate.js';
import { TlsRptError } from '../tlsrpt/errors.js';
import { utcDayKey } from '../tlsrpt/report.js';
import type { DeliveryState, StoredDomainDay, TlsRptStore, TlsRptStoreEvent } from '../tlsrpt/store.js';
import type { TlsRptLogger } from '../tlsrpt/types.js';
import { openSqlite, SqliteSchemaError, type SqliteDatabase } from './database.js';
import { addCounts, deleteCounts, prepareTlsRptStatements, readCounts, replaceCounts, type TlsRptStatements } from './tlsrpt-rows.js';
import { TLSRPT_SCHEMA } from './tlsrpt-schema.js';
import { CorruptRecordError, parseFrozenPolicies, toDeliveryState, type ReportRow } from './tlsrpt-report-row.js';

const DAY_MS = 86_400_000;
/** Reports this process delivered but could not mark sent: never claimed again (bounded). */
const MAX_UNSAVED_REPORTS = 10_000;

/** Options of {@link createSqliteTlsRptStore}. */
export interface SqliteTlsRptStoreOptions {
  /** The database file; created with its directory's permissions when missing (unless `readOnly`). */
  path: string;
  /** Open without writing (previews, `mta-sts tlsrpt preview`): every writing method rejects. Default false. */
  readOnly?: boolean;
  /** How long a sender holds a report it claimed, in ms; must exceed one delivery attempt. Default 900000 (15 minutes). */
  reportLockMs?: number;
  /** How long a record is kept after its UTC day ends, in ms. Default 259200000 (3 days: delay, jitter, §5.5 retries). */
  retentionMs?: number;
  /** How long a statement waits for another process's write lock. Default 5000 ms. */
  busyTimeoutMs?: number;
  /** Clock, epoch ms (leases, retention). Default `Date.now`. */
  now?: () => number;
  logger?: TlsRptLogger;
}

const HOST = hostname();

/** Is the process that holds a claim gone? Only known for owners on this host (`<host> <pid> <token>`). */
function ownerGone(owner: string): boolean {
  const [host, pidText] = owner.split(' ');
  const pid = Number(pidText);
  if (host !== HOST || !Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'EPERM';
  }
}

/** The store returned by {@link createSqliteTlsRptStore}. */
export class SqliteTlsRptStore implements TlsRptStore {
  readonly path: string;
  readonly readOnly: boolean;
  readonly #db: SqliteDatabase;
  readonly #s: TlsRptStatements;
  readonly #lockMs: number;
  readonly #retentionMs: number;
  readonly #now: () => number;
  readonly #logger: TlsRptLogger | undefined;
  /** This store's claims: `<host> <pid> <random>`. */
  readonly #owner = `${HOST} ${process.pid} ${randomBytes(8).toString('hex')}`;
  readonly #unsaved = new LRUCache<string, true>({ max: MAX_UNSAVED_REPORTS });
  readonly #listeners = new Set<(event: TlsRptStoreEvent) => void>();
  #closed = false;

  constructor(options: SqliteTlsRptStoreOptions) {
    validateSqliteTlsRptStoreOptions(options);
    this.path = options.path;
    this.readOnly = options.readOnly === true;
    this.#lockMs = options.reportLockMs ?? 15 * 60_000;
    this.#retentionMs = options.retentionMs ?? 3 * DAY_MS;
    this.#now = options.now ?? Date.now;
    this.#logger = options.logger;
    try {
      this.#db = openSqlite(options.path, TLSRPT_SCHEMA, { feature: 'createSqliteTlsRptStore()', readonly: this.readOnly, ...(options.busyTimeoutMs !== undefined ? { busyTimeoutMs: options.busyTimeoutMs } : {}) });
    } catch (error) {
      if (error instanceof SqliteSchemaError) throw new TlsRptError('TLSRPT_STORE_FAILED', `TLS-RPT store ${options.path} refused: ${error.message}`, { cause: error, details: { path: options.path, reason: error.reason } });
      if (error instanceof Error && 'code' in error && error.code === 'MTASTS_MISSING_PEER') throw error;
      throw this.#failure(error, 'opening');
    }
    this.#s = prepareTlsRptStatements(this.#db);
  }

  #failure(error: unknown, what: string, options: { domain?: string; details?: Record<string, unknown> } = {}): TlsRptError {
    if (error instanceof TlsRptError) return error;
    const code = (error as { code?: unknown } | null)?.code;
    return new TlsRptError('TLSRPT_STORE_FAILED', `TLS-RPT store ${this.path}: ${what} failed: ${error instanceof Error ? error.message : String(error)}`, {
      cause: error,
      ...(options.domain ? { domain: options.domain } : {}),
      details: { path: this.path, ...(typeof code === 'string' ? { sqliteCode: code } : {}), ...options.details },
    });
  }

  /** Runs `fn` in a write transaction (BEGIN IMMEDIATE: waits for other writers up to the busy timeout). */
  #write<T>(what: string, fn: () => T, domain?: string): T {
    if (this.#closed) throw new TlsRptError('TLSRPT_STORE_FAILED', `TLS-RPT store ${this.path} is closed; ${what} refused`, { details: { path: this.path } });
    if (this.readOnly) throw new TlsRptError('TLSRPT_STORE_FAILED', `TLS-RPT store ${this.path} is opened read-only; ${what} refused`, { details: { path: this.path } });
    try {
      return this.#db.transaction(fn).immediate();
    } catch (error) {
      throw this.#failure(error, what, domain ? { domain } : {});
    }
  }

  #read<T>(what: string, fn: () => T): T {
    if (this.#closed) throw new TlsRptError('TLSRPT_STORE_FAILED', `TLS-RPT store ${this.path} is closed; ${what} refused`, { details: { path: this.path } });
    try {
      return this.#db.transaction(fn).deferred();
    } catch (error) {
      throw this.#failure(error, what);
    }
  }

  async merge(delta: DomainDayCounts, limits: AggregationLimits): Promise<void> {
    this.#mergeAll([delta], limits);
  }

  /**
   * Adds every delta in ONE transaction (a recorder's flush): all of them are stored, or none. Resolves with the
   * deltas not stored (all of them, each with the error, when the transaction failed).
   */
  async mergeMany(deltas: readonly DomainDayCounts[], limits: AggregationLimits): Promise<Array<{ delta: DomainDayCounts; error: unknown }>> {
    try {
      this.#mergeAll(deltas, limits);
      return [];
    } catch (error) {
      return deltas.map((delta) => ({ delta, error }));
    }
  }

  #mergeAll(deltas: readonly DomainDayCounts[], limits: AggregationLimits): void {
    if (deltas.length === 0) return;
    const dropped = this.#write('recording counts', () => deltas.reduce((n, delta) => n + addCounts(this.#s, delta, limits), 0));
    if (dropped > 0) this.#logger?.warn?.(`tlsrpt: SQLite store dropped ${dropped} session(s): maxPoliciesPerDomain (${limits.maxPoliciesPerDomain}) reached`);
  }

  /** Every record, by day then domain; first deletes the records of days past the retention (when it can). */
  async list(): Promise<DomainDayKey[]> {
    if (!this.readOnly && !this.#closed) {
      try {
        this.#expire();
      } catch (error) {
        // A read-only or full disk: the records are still listed (previews, sending attempts report the failure).
        this.#logger?.warn?.(`tlsrpt: ${(error as Error).message}`);
      }
    }
    const rows = this.#read('listing', () => this.#s.keys.all() as Array<{ day: string; policy_domain: string }>);
    return rows.map((r) => ({ day: r.day, policyDomain: r.policy_domain }));
  }

  /** Deletes the records of days that ended more than `retentionMs` ago (past any RFC 8460 §5.5 retry window). */
  #expire(): void {
    const lastExpiredDay = utcDayKey(this.#now() - this.#retentionMs - DAY_MS);
    const { reports, counters } = this.#write('deleting expired records', () => {
      const reports = this.#s.expireReports.run(lastExpiredDay).changes;
      const counters = this.#s.expirePolicies.run(lastExpiredDay).changes;
      this.#s.expireFailures.run(lastExpiredDay);
      return { reports, counters };
    });
    if (reports + counters > 0) this.#logger?.warn?.(`tlsrpt: deleted expired TLS-RPT records up to ${lastExpiredDay} (never sent: ${reports} report(s), ${counters} policy counter(s))`);
  }

  /**
   * One record: the frozen report when a sender claimed it (what will be sent), else the live counters, with the
   * delivery state when the report is scheduled. Claims nothing (previews read with it). A record that does not
   * validate is reported (`corrupt` event), deleted (unless read-only), and read as missing.
   */
  async get(key: DomainDayKey): Promise<StoredDomainDay | undefined> {
    try {
      return this.#read('reading', () => {
        const row = this.#s.report.get(key.day, key.policyDomain) as ReportRow | undefined;
        const delivery = row ? toDeliveryState(row) : undefined;
        const counts = row?.policies != null ? parseFrozenPolicies(key, row.policies) : readCounts(this.#s, key);
        if (!counts) return undefined;
        return { ...counts, ...(delivery ? { delivery } : {}) };
      });
    } catch (error) {
      if (!(error instanceof TlsRptError) || !(error.cause instanceof CorruptRecordError)) throw error;
      this.#corrupt(key, error.cause);
      return undefined;
    }
  }

  /**
   * Schedules a report (the first call stores its `unique-id` and due time, which never change afterwards, so two
   * senders agree on the report id) or records a failed attempt (RFC 8460 §5.5). No-op when the record is gone or
   * another sender holds the report.
   */
  async setDelivery(key: DomainDayKey, state: DeliveryState): Promise<void> {
    const s = this.#s;
    const held = this.#write('saving a delivery state', () => {
      const row = s.report.get(key.day, key.policyDomain) as ReportRow | undefined;
      if (row && this.#heldByOther(row)) return true;
      const first = state.firstAttemptAt ?? null;
      const lastError = state.lastError?.slice(0, 1000) ?? null;
      if (row) s.updateDelivery.run(state.attempts, first, state.nextAttemptAt, lastError, key.day, key.policyDomain);
      else if ((s.countPolicies.pluck().get(key.day, key.policyDomain) as number) > 0) {
        s.insertReport.run(key.day, key.policyDomain, state.uniqueId, state.dueAt, state.attempts, first, state.nextAttemptAt, lastError);
      }
      return false;
    }, key.policyDomain);
    if (held) this.#logger?.warn?.(`tlsrpt: report for ${key.policyDomain} ${key.day} is held by another sender; delivery state not changed`);
  }

  #heldByOther(row: ReportRow): boolean {
    return row.owner !== null && row.owner !== this.#owner && (row.lease_until ?? 0) > this.#now() && !ownerGone(row.owner);
  }

  /**
   * Claims a scheduled report for sending (one transaction): freezes its counts on the first claim, and holds it
   * for `reportLockMs`. `undefined` when it is not scheduled, held by another sender, empty, or was delivered by
   * this store without its "sent" state being saved.
   */
  async claim(key: DomainDayKey): Promise<StoredDomainDay | undefined> {
    const s = this.#s;
    return this.#write('claiming a report', () => {
      const row = s.report.get(key.day, key.policyDomain) as ReportRow | undefined;
      if (!row || this.#heldByOther(row) || this.#unsaved.has(unsavedId(key, row.unique_id))) return undefined;
      const leaseUntil = this.#now() + this.#lockMs;
      let counts: DomainDayCounts | undefined;
      if (row.policies !== null) {
        counts = parseFrozenPolicies(key, row.policies);
        s.claimReport.run(this.#owner, leaseUntil, key.day, key.policyDomain);
      } else {
        counts = readCounts(s, key);
        if (!counts || totalSessions(counts) === 0) {
          s.deleteReport.run(key.day, key.policyDomain);
          return undefined;
        }
        // RFC 8460 §4.1/§5.1: one report per domain and day, one report id; its content is fixed from here on, like
        // its unique id, so a resend is the same report; counters recorded later make the next report.
        s.freezeReport.run(JSON.stringify(counts.policies), this.#owner, leaseUntil, key.day, key.policyDomain);
        deleteCounts(s, key);
      }
      return { ...counts, delivery: toDeliveryState(row) };
    }, key.policyDomain);
  }

  /** Gives a claimed report back (after a failed or skipped attempt), so that any sender may take the next turn. */
  async release(key: DomainDayKey): Promise<void> {
    this.#write('releasing a report', () => this.#s.releaseReport.run(key.day, key.policyDomain, this.#owner), key.policyDomain);
  }

  /**
   * The report `sent` was delivered (or given up): a claimed report's row is deleted; for a report that was not
   * claimed, its counts are subtracted from the live counters (what was counted meanwhile stays, as a new report).
   * When this cannot be saved, the report is never claimed again by this store, and the call rejects.
   */
  async settle(key: DomainDayKey, sent: DomainDayCounts): Promise<void> {
    const uniqueId = (sent as StoredDomainDay).delivery?.uniqueId;
    const s = this.#s;
    try {
      this.#write('marking a report sent', () => {
        const row = s.report.get(key.day, key.policyDomain) as ReportRow | undefined;
        if (row?.policies != null) {
          // Sent once (RFC 8460 §4.1): the claimed report is gone; live counters recorded meanwhile stay.
          if (uniqueId === undefined || row.unique_id === uniqueId) s.deleteReport.run(key.day, key.policyDomain);
          return;
        }
        const current = readCounts(s, key);
        const rest = current ? subtractDomainDayCounts(current, sent) : undefined;
        s.deleteReport.run(key.day, key.policyDomain);
        if (rest && totalSessions(rest) > 0) replaceCounts(s, rest);
        else deleteCounts(s, key);
      }, key.policyDomain);
    } catch (error) {
      if (uniqueId !== undefined) this.#unsaved.set(unsavedId(key, uniqueId), true);
      const cause = error instanceof TlsRptError ? (error.cause ?? error) : error;
      const message = `report ${uniqueId ?? ''} for ${key.policyDomain} ${key.day} was handled, but marking it sent in ${this.path} failed; this process will not send it again: ${cause instanceof Error ? cause.message : String(cause)}`;
      this.#logger?.error?.(`tlsrpt: ${message}`);
      throw new TlsRptError('TLSRPT_STORE_FAILED', message, { cause, domain: key.policyDomain, details: { path: this.path, day: key.day, ...(uniqueId ? { uniqueId } : {}) } });
    }
  }

  /** Deletes a record (its counters and its report) unless another sender holds its report. */
  async delete(key: DomainDayKey): Promise<void> {
    this.#write('deleting a record', () => {
      const row = this.#s.report.get(key.day, key.policyDomain) as ReportRow | undefined;
      if (row && this.#heldByOther(row)) return;
      this.#s.deleteReport.run(key.day, key.policyDomain);
      deleteCounts(this.#s, key);
    }, key.policyDomain);
  }

  subscribe(listener: (event: TlsRptStoreEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Closes the database (idempotent). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }

  #corrupt(key: DomainDayKey, cause: Error): void {
    let removed = false;
    if (!this.readOnly && !this.#closed) {
      try {
        this.#write('deleting a corrupt record', () => {
          this.#s.deleteReport.run(key.day, key.policyDomain);
          deleteCounts(this.#s, key);
        });
        removed = true;
      } catch {
        // reported below either way
      }
    }
    const error = new TlsRptError('TLSRPT_SPOOL_CORRUPT', `corrupt TLS-RPT record ${key.policyDomain} ${key.day} in ${this.path} ${removed ? 'deleted' : 'skipped'}: ${cause.message}`, {
      cause,
      domain: key.policyDomain,
      details: { path: this.path, day: key.day, removed },
    });
    this.#logger?.error?.(error.message);
    for (const listener of [...this.#listeners]) {
      try {
        listener({ type: 'corrupt', error });
      } catch {
        // a throwing listener must not break the store
      }
    }
  }
}

const unsavedId = (key: DomainDayKey, uniqueId: string): string => `${key.day}|${key.policyDomain}|${uniqueId}`;

/**
 * Creates the SQLite {@link TlsRptStore} (needs the optional peer `better-sqlite3`; `MTASTS_MISSING_PEER` without
 * it). A file that is not a TLS-RPT store of this or an older schema version is refused with `TLSRPT_STORE_FAILED`
 * (`details.reason`: `not-sqlite`, `foreign` or `newer`).
 *
 * @example
 * ```ts
 * const reporter = createTlsRptReporter({ ...options, store: createSqliteTlsRptStore({ path: '/var/lib/mta-sts-sender/tlsrpt.db' }) });
 * ```
 */
export function createSqliteTlsRptStore(options: SqliteTlsRptStoreOptions): SqliteTlsRptStore {
  return new SqliteTlsRptStore(options);
}
