/**
 * The session recorder: {@link TlsRptAggregator} turns {@link SessionOutcome}s into per-domain, per-UTC-day counts
 * (RFC 8460 §4.1, §4.2) and persists them through a {@link TlsRptStore}.
 *
 * `record()` is synchronous, never throws and only touches memory; counts since the last flush are written to the
 * store in the background: at most `flushDelayMs` (default 1 s) after the first unwritten outcome, at once when
 * `maxUnflushedOutcomes` (default 1 000) are waiting, on `flush()` and on `close()`. A crash (`kill -9`, power
 * loss) therefore loses at most the outcomes of the last `flushDelayMs`, or `maxUnflushedOutcomes` of them, plus
 * those recorded while the last write was under way (see the README for the measured bound). Only counts and the RFC's
 * session metadata are kept, never message content or addresses (the §4.4 report carries none), and memory is bounded by
 * {@link AggregationLimits}.
 *
 * Report sessions are not counted (RFC 8460 §5.3: a sending MTA SHOULD NOT include the session that delivered a
 * report in the next report). An outcome is excluded when either:
 * - it has `reportDelivery: true`, or
 * - it is recorded while a report is being delivered by this module: delivery runs inside
 *   {@link runAsReportDelivery}, an `AsyncLocalStorage` context that follows the delivery's callbacks and
 *   promises, so an MTA-STS-aware Nodemailer transport that records its own outcomes is excluded without changes.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { normalizeDomainOrUndefined } from '../domain.js';
import { DomainDayAccumulator, resolveLimits, sanitizeFailure, sanitizePolicy, totalSessions, type AggregationLimits, type DomainDayCounts } from './aggregate.js';
import { toTlsRptError, type TlsRptError } from './errors.js';
import type { FailureFieldName } from './failure-fields.js';
import { utcDayKey } from './report.js';
import type { TlsRptStore } from './store.js';
import type { SessionOutcome, TlsRptFailure, TlsRptLogger, TlsRptRecorder } from './types.js';

/** What is known about the report delivery in progress (see {@link runAsReportDelivery}). */
export interface ReportDeliveryContext {
  policyDomain: string;
  reportId: string;
}

// One storage per process even when both the ESM and the CJS build are loaded.
const STORAGE_KEY = Symbol.for('mta-sts-sender.tlsrpt.report-delivery');
const reportDeliveryStorage: AsyncLocalStorage<ReportDeliveryContext> = ((globalThis as Record<symbol, unknown>)[STORAGE_KEY] ??=
  new AsyncLocalStorage<ReportDeliveryContext>()) as AsyncLocalStorage<ReportDeliveryContext>;

/**
 * Runs `fn` as a report delivery: every outcome recorded by any {@link TlsRptAggregator} from inside it (including
 * its asynchronous continuations: socket callbacks, promises) is excluded from counting (RFC 8460 §5.3).
 */
export function runAsReportDelivery<T>(context: ReportDeliveryContext, fn: () => T): T {
  return reportDeliveryStorage.run(context, fn);
}

/** The report delivery the current async context belongs to, if any. Integrations may use it to skip recording. */
export function currentReportDelivery(): ReportDeliveryContext | undefined {
  return reportDeliveryStorage.getStore();
}

/** Why an outcome was not counted. */
export type DroppedOutcomeReason = 'report-session' | 'invalid' | 'out-of-range' | 'domain-cap' | 'policy-cap' | 'closed';

/** Counters of the aggregator (for metrics). */
export interface TlsRptAggregatorStats {
  /** Outcomes counted. */
  recorded: number;
  /** Outcomes not counted, by reason (`report-session` are the excluded report deliveries). */
  dropped: Record<DroppedOutcomeReason, number>;
  /** Failed store writes (the counts were kept and retried). */
  storeErrors: number;
  /** Failure fields left out of counted outcomes because their value had not the RFC 8460 §4.4 syntax. */
  invalidFields: number;
}

/** Options of {@link TlsRptAggregator}. */
export interface TlsRptAggregatorOptions {
  /** Where counts are persisted. */
  store: TlsRptStore;
  /** Clock, ms since the epoch. Default `Date.now`. */
  now?: () => number;
  limits?: Partial<AggregationLimits>;
  /** Longest delay of a background write after the first unwritten outcome. Default 1000 ms. 0 writes on the next tick. */
  flushDelayMs?: number;
  /** Unwritten outcomes that force a write at once (bounds what a crash can lose). Default 1000. */
  maxUnflushedOutcomes?: number;
  /**
   * Outcomes are counted only when their UTC day is today or yesterday by `now()` (and not more than 5 minutes in
   * the future); others are dropped as `out-of-range`. Set false to accept any day.
   */
  restrictDays?: boolean;
  logger?: TlsRptLogger;
  /** Called once per UTC day and reason when outcomes start being dropped, and on store errors. */
  onDrop?: (info: { reason: DroppedOutcomeReason; day?: string; policyDomain?: string }) => void;
  onStoreError?: (error: TlsRptError) => void;
  /**
   * Called once per UTC day and field when a failure field is left out because its value is invalid (RFC 8460 §4.4:
   * `sendingMtaIp` / `receivingIp` not an IP address, a host name not a host name, a reason code not printable
   * ASCII). The outcome still counts.
   */
  onInvalidField?: (info: { field: Exclude<keyof TlsRptFailure, 'resultType'>; day: string; policyDomain: string }) => void;
}

/**
 * Aggregates session outcomes per policy domain and UTC day; implements {@link TlsRptRecorder}.
 */
export class TlsRptAggregator implements TlsRptRecorder {
  readonly limits: AggregationLimits;
  private readonly store: TlsRptStore;
  private readonly now: () => number;
  private readonly flushDelayMs: number;
  private readonly restrictDays: boolean;
  private readonly logger: TlsRptLogger | undefined;
  private readonly onDrop: TlsRptAggregatorOptions['onDrop'];
  private readonly onStoreError: TlsRptAggregatorOptions['onStoreError'];
  private readonly onInvalidField: TlsRptAggregatorOptions['onInvalidField'];
  /** Counts not yet written to the store: day -> policy domain -> accumulator. */
  private pending = new Map<string, Map<string, DomainDayAccumulator>>();
  /** Domains admitted per day (for `maxDomainsPerDay`); only today's and yesterday's are kept. */
  private readonly domainsPerDay = new Map<string, Set<string>>();
  private readonly warned = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly maxUnflushed: number;
  /** Sessions counted in `pending` (not yet handed to the store). */
  private unflushedSessions = 0;
  private capFlushQueued = false;
  /** After a failed write, no cap-forced writes until then (performance.now() ms); the timer still retries. */
  private backoffUntil = 0;
  private readonly counters: TlsRptAggregatorStats = {
    recorded: 0,
    dropped: { 'report-session': 0, invalid: 0, 'out-of-range': 0, 'domain-cap': 0, 'policy-cap': 0, closed: 0 },
    storeErrors: 0,
    invalidFields: 0,
  };

  constructor(options: TlsRptAggregatorOptions) {
    this.store = options.store;
    this.now = options.now ?? Date.now;
    this.limits = resolveLimits(options.limits);
    this.flushDelayMs = Math.max(0, options.flushDelayMs ?? 1000);
    this.maxUnflushed = Math.max(1, Math.floor(options.maxUnflushedOutcomes ?? 1000));
    this.restrictDays = options.restrictDays ?? true;
    this.logger = options.logger;
    this.onDrop = options.onDrop;
    this.onStoreError = options.onStoreError;
    this.onInvalidField = options.onInvalidField;
  }

  /** Counts one outcome. Synchronous, never throws; see the module doc for what is excluded. */
  record(outcome: SessionOutcome): void {
    try {
      this.recordUnsafe(outcome);
    } catch (error) {
      // record() must never break a delivery; a bug here only loses one count.
      this.drop('invalid');
      this.logger?.error?.('tlsrpt: recording an outcome failed', { error: String(error) });
    }
  }

  private recordUnsafe(outcome: SessionOutcome): void {
    if (this.closed) return this.drop('closed');
    // §5.3: the session that delivers a report SHOULD NOT be included in the next report.
    if (outcome?.reportDelivery === true || reportDeliveryStorage.getStore() !== undefined) return this.drop('report-session');
    if (typeof outcome !== 'object' || outcome === null || typeof outcome.policy !== 'object' || outcome.policy === null) return this.drop('invalid');
    const type = outcome.policy.type;
    if (type !== 'sts' && type !== 'tlsa' && type !== 'no-policy-found') return this.drop('invalid');
    const policyDomain = normalizeDomainOrUndefined(outcome.policy.domain);
    if (policyDomain === undefined) return this.drop('invalid');
    const now = this.now();
    const at = typeof outcome.at === 'number' && Number.isFinite(outcome.at) ? outcome.at : now;
    // §4.1: reports cover UTC days.
    const day = utcDayKey(at);
    if (this.restrictDays && (at > now + 300_000 || (day !== utcDayKey(now) && day !== utcDayKey(now - 86_400_000)))) {
      return this.drop('out-of-range', day, policyDomain);
    }

    let domains = this.domainsPerDay.get(day);
    if (!domains) {
      domains = new Set();
      this.domainsPerDay.set(day, domains);
      this.forgetOldDays(now);
    }
    if (!domains.has(policyDomain)) {
      if (domains.size >= this.limits.maxDomainsPerDay) return this.drop('domain-cap', day, policyDomain);
      domains.add(policyDomain);
    }

    let byDomain = this.pending.get(day);
    if (!byDomain) {
      byDomain = new Map();
      this.pending.set(day, byDomain);
    }
    let acc = byDomain.get(policyDomain);
    if (!acc) {
      acc = new DomainDayAccumulator(day, policyDomain);
      byDomain.set(policyDomain, acc);
    }
    const policy = sanitizePolicy(outcome.policy, policyDomain, this.limits);
    // Only counts and the RFC 8460 §4.4 failure fields are taken from the outcome; nothing else is read.
    const added = outcome.success === true
      ? acc.add(policy, 1, [], this.limits)
      : acc.add(policy, 0, [{ ...sanitizeFailure(outcome.failure, this.limits, (field) => this.invalidField(field, day, policyDomain)), count: 1 }], this.limits);
    if (!added) {
      if (acc.empty) byDomain.delete(policyDomain);
      return this.drop('policy-cap', day, policyDomain);
    }
    this.counters.recorded += 1;
    this.unflushedSessions += 1;
    if (this.unflushedSessions >= this.maxUnflushed && !this.capFlushQueued && performance.now() >= this.backoffUntil) {
      // Bound what a crash can lose: write now instead of waiting for the timer.
      this.capFlushQueued = true;
      void this.flush().catch(() => undefined);
      return;
    }
    this.scheduleFlush();
  }

  private forgetOldDays(now: number): void {
    const keep = new Set([utcDayKey(now), utcDayKey(now - 86_400_000), utcDayKey(now + 86_400_000)]);
    for (const day of this.domainsPerDay.keys()) if (!keep.has(day) && !this.pending.has(day)) this.domainsPerDay.delete(day);
  }

  private drop(reason: DroppedOutcomeReason, day?: string, policyDomain?: string): void {
    this.counters.dropped[reason] += 1;
    if (reason === 'report-session') return;
    const key = `${day ?? ''}|${reason}`;
    if (this.warned.has(key)) return;
    if (this.warned.size > 1000) this.warned.clear();
    this.warned.add(key);
    this.logger?.warn?.(`tlsrpt: outcomes are being dropped (${reason})`, { reason, day, policyDomain });
    this.onDrop?.({ reason, ...(day ? { day } : {}), ...(policyDomain ? { policyDomain } : {}) });
  }

  /** A failure field left out (RFC 8460 §4.4 syntax): counted, warned once per day and field. */
  private invalidField(field: FailureFieldName, day: string, policyDomain: string): void {
    this.counters.invalidFields += 1;
    const key = `${day}|invalid:${field}`;
    if (this.warned.has(key)) return;
    if (this.warned.size > 1000) this.warned.clear();
    this.warned.add(key);
    this.logger?.warn?.(`tlsrpt: invalid ${field} left out of a failure detail (RFC 8460 §4.4)`, { field, day, policyDomain });
    this.onInvalidField?.({ field, day, policyDomain });
  }

  private scheduleFlush(): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush().catch(() => undefined);
    }, this.flushDelayMs);
    this.timer.unref?.();
  }

  /**
   * Writes the counts recorded since the last flush to the store. Serialised; resolves when written. A failed
   * write keeps the counts in memory for the next flush and rejects with `TLSRPT_STORE_FAILED`.
   */
  flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const run = this.flushing.then(() => this.flushNow());
    this.flushing = run.catch(() => undefined);
    return run;
  }

  private async flushNow(): Promise<void> {
    this.capFlushQueued = false;
    const batch = this.pending;
    if (batch.size === 0) return;
    this.pending = new Map();
    this.unflushedSessions = 0;
    const deltas: DomainDayCounts[] = [];
    for (const byDomain of batch.values()) for (const acc of byDomain.values()) if (!acc.empty) deltas.push(acc.toCounts());
    let firstError: TlsRptError | undefined;
    for (const { delta, error } of await this.write(deltas)) {
      const wrapped = toTlsRptError(error, 'TLSRPT_STORE_FAILED', `writing TLS-RPT counts for ${delta.policyDomain} ${delta.day} failed`, { domain: delta.policyDomain });
      firstError ??= wrapped;
      this.counters.storeErrors += 1;
      this.restore(delta);
      this.unflushedSessions += totalSessions(delta);
    }
    if (firstError) {
      this.backoffUntil = performance.now() + Math.max(this.flushDelayMs, 1000);
      this.logger?.error?.('tlsrpt: store write failed; counts kept for the next flush', { error: firstError.message });
      this.onStoreError?.(firstError);
      this.scheduleFlush();
      throw firstError;
    }
  }

  /**
   * Hands the deltas of one flush to the store: all at once through `mergeMany` when the store has it (one deadline
   * for the batch), else one `merge` after another. Resolves with those not stored.
   */
  private async write(deltas: DomainDayCounts[]): Promise<Array<{ delta: DomainDayCounts; error: unknown }>> {
    if (this.store.mergeMany) {
      try {
        return await this.store.mergeMany(deltas, this.limits);
      } catch (error) {
        return deltas.map((delta) => ({ delta, error }));
      }
    }
    const failed: Array<{ delta: DomainDayCounts; error: unknown }> = [];
    for (const delta of deltas) await this.store.merge(delta, this.limits).catch((error: unknown) => failed.push({ delta, error }));
    return failed;
  }

  /** Puts counts whose write failed back into the pending map (merging with what was recorded meanwhile). */
  private restore(delta: DomainDayCounts): void {
    let byDomain = this.pending.get(delta.day);
    if (!byDomain) {
      byDomain = new Map();
      this.pending.set(delta.day, byDomain);
    }
    let acc = byDomain.get(delta.policyDomain);
    if (!acc) {
      acc = new DomainDayAccumulator(delta.day, delta.policyDomain);
      byDomain.set(delta.policyDomain, acc);
    }
    acc.addAll(delta, this.limits);
  }

  /** How many recorded sessions are not written to the store yet (what a crash now would lose). */
  unflushedCount(): number {
    return this.unflushedSessions;
  }

  /** The counts recorded but not yet written to the store (a copy). */
  unflushed(): DomainDayCounts[] {
    const out: DomainDayCounts[] = [];
    for (const byDomain of this.pending.values()) for (const acc of byDomain.values()) if (!acc.empty) out.push(acc.toCounts());
    return out;
  }

  /** A copy of the counters. */
  stats(): TlsRptAggregatorStats {
    return { ...this.counters, dropped: { ...this.counters.dropped } };
  }

  /**
   * Stops recording (later outcomes are dropped as `closed`) and writes what is pending. Rejects with
   * `TLSRPT_STORE_FAILED` when that write fails; `unflushed()` / `unflushedCount()` then tell what was not persisted.
   */
  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
  }
}
