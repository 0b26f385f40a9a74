/**
 * The TLS reporter: records sessions, and once each UTC day has closed sends every policy domain its report.
 *
 * RFC 8460 reports cover one UTC day (§4.1) and are sent once per day per policy domain, after a delay with random
 * jitter so that receivers are not hit by every sender at midnight (§4.1 suggests up to four hours). For each
 * (day, policy domain) with counts the reporter looks up the domain's `_smtp._tls` record (§3); without a usable
 * record nothing is sent. Otherwise it builds the §4.4 report, gzips it (§5.2) and delivers it to the record's
 * `rua` URIs, by mail (§5.3) and/or HTTPS (§5.4); one accepting endpoint is success (§3). A failed delivery is
 * retried with exponential backoff for a bounded time (§5.5 suggests up to 24 hours), then dropped with an event.
 * Only scheduled attempts count: a forced `flush()` before a report's next scheduled attempt (a CLI run, a test)
 * that fails is reported but changes neither the count nor the schedule, so repeated runs never drop a report
 * early; an error of configuration (an unusable `mailTransport`) is no delivery attempt at all.
 * Each due report is attempted at most once per check, so nothing loops; all timers are `unref()`ed.
 *
 * Counts and delivery state live in a {@link TlsRptStore}: a {@link FileSpoolStore} under `spoolDir` (survives
 * restarts: a restart neither loses flushed counts nor changes a report's id), or {@link MemoryTlsRptStore} when no
 * directory is given, or any store passed as `store`.
 * The report id is `<day>_<policy-domain>_<unique-id>@<submitter>`; the random unique id is drawn when a report
 * first becomes due and kept across retries (a receiver can drop duplicates). Sessions recorded for a day after its
 * report went out (a late `at`) make a second, separate report with its own id.
 */
import type { DKIMOptions } from 'nodemailer';
import type { Dispatcher } from 'undici';
import { createDefaultResolver, type DnsResolver } from '../discovery/resolver.js';
import { validateReporterOptions } from '../option-specs.js';
import { mergeDomainDayCounts, totalSessions, type AggregationLimits, type DomainDayCounts, type DomainDayKey } from './aggregate.js';
import { createMailTransport, createReportHttpsAgent, postTlsRptReport, sendTlsRptMail, type TlsRptMailTransport, type TlsRptMailTransportInput } from './deliver.js';
import { lookupTlsRptRecord, type TlsRptDestination } from './discovery.js';
import { TlsRptError, toTlsRptError } from './errors.js';
import { MtaStsError } from '../errors.js';
import { TlsRptAggregator, type DroppedOutcomeReason } from './recorder.js';
import { buildTlsRptReport, gzipTlsRptReport, makeTlsRptReportId, randomUniqueId, tlsRptFileName, utcDayKey, utcDayRange, utcDayStart } from './report.js';
import { FileSpoolStore, MemoryTlsRptStore, type DeliveryState, type TlsRptStore } from './store.js';
import type { TlsRptLogger, TlsRptReport } from './types.js';

const DAY_MS = 86_400_000;

/** Retry policy for failed deliveries (RFC 8460 §5.5). */
export interface TlsRptRetryOptions {
  /** Attempts in all (the first one included). Default 8. */
  attempts?: number;
  /** Delay after the first failure; doubled after each further one. Default 15 minutes. */
  baseDelayMs?: number;
  /** Give up when the next attempt would be later than this after the first one. Default 24 hours (§5.5). */
  maxAgeMs?: number;
}

/** Options of {@link createTlsRptReporter}. */
export interface TlsRptReporterOptions {
  /** RFC 8460 §4.4 `organization-name`. */
  organizationName: string;
  /** RFC 8460 §4.4 `contact-info`: an e-mail address. */
  contactInfo: string;
  /** Domain of the sending MTA: `TLS-Report-Submitter`, the file name (§5.1) and the report id. */
  submitter: string;
  /** Where counts and delivery state live. Default: a {@link FileSpoolStore} in `spoolDir`, else a new {@link MemoryTlsRptStore} (lost on restart). */
  store?: TlsRptStore;
  /** Directory of the default file spool (created if missing). Recommended in production; ignored when `store` is given. */
  spoolDir?: string;
  /** DNS seam for `_smtp._tls` lookups (and report host names with the default dispatcher). Default: system DNS. */
  resolver?: DnsResolver;
  /**
   * How `mailto:` reports are sent: a Nodemailer transporter, or options / a URL for `nodemailer.createTransport`
   * (the reporter then owns and closes it). Without it `mailto:` destinations are skipped. It must NOT enforce
   * MTA-STS for the report recipient (RFC 8460 §5.3: reports are delivered despite TLS failures).
   */
  mailTransport?: TlsRptMailTransportInput;
  /**
   * Keep, rather than remove, a report whose destinations all need a transport this reporter lacks (`mailto:`
   * without `mailTransport`): it is reported as `skipped-no-transport` with `kept: true` and stays in the store for
   * a later run that has a transport (e.g. `mta-sts tlsrpt send` without `--smtp`). Kept reports are not bounded by
   * the retry window: use it for one-shot senders, not for a long-running reporter. Default false (removed).
   */
  keepUndeliverable?: boolean;
  /** `From` of report mail. Default `noreply-tlsrpt@<submitter>`. */
  mailFrom?: string;
  /**
   * DKIM signing of report mail: `{ domainName, keySelector, privateKey }` (Nodemailer's DKIM options; the
   * `TLS-Report-Domain` and `TLS-Report-Submitter` fields are signed too). RFC 8460 §5.3 asks for report mail to be
   * DKIM-signed by the reporting domain, and report receivers may discard unsigned reports: configuring
   * `mailTransport` without `dkim` logs a warning and emits a `warning` event at creation (unless the transport
   * signs itself: then set `transportSignsDkim`).
   */
  dkim?: DKIMOptions;
  /** The `mailTransport` signs report mail with DKIM itself (a relay that signs): no warning about `dkim`. Default false. */
  transportSignsDkim?: boolean;
  /** undici dispatcher for HTTPS reports. Default: an Agent resolving through `resolver` and trusting `ca`. */
  dispatcher?: Dispatcher;
  /** Trust anchors for the default dispatcher (PEM). Default: Node's roots. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Deadline of one HTTPS POST. Default 60 000 ms. */
  httpsTimeoutMs?: number;
  /** Deadline of one DNS lookup. Default 10 000 ms. */
  dnsTimeoutMs?: number;
  /** Clock, ms since the epoch. Default `Date.now`. */
  now?: () => number;
  /** Random source in [0, 1) for jitter. Default `Math.random`. */
  random?: () => number;
  /** Fixed delay after the end of a UTC day before its reports are due. Default 15 minutes. */
  delayMs?: number;
  /** Random extra delay, uniform in [0, jitterMs), drawn once per report (§4.1). Default 4 hours. */
  jitterMs?: number;
  retry?: TlsRptRetryOptions;
  /** Aggregation caps (see {@link AggregationLimits}). */
  limits?: Partial<AggregationLimits>;
  /** Longest delay of a background write of counts to the store. Default 1000 ms (see {@link TlsRptAggregator}). */
  flushDelayMs?: number;
  /** Unwritten outcomes that force a write at once (bounds what a crash loses). Default 1000. */
  maxUnflushedOutcomes?: number;
  /** How often `start()`ed reporters look for due reports. Default 5 minutes. */
  checkIntervalMs?: number;
  /** Largest gzipped report sent; larger ones are dropped (`TLSRPT_TOO_LARGE`). Default 10 MiB (§5.2). */
  maxReportBytes?: number;
  logger?: TlsRptLogger;
  /** Gets every {@link TlsRptEvent}. Must not throw (errors are swallowed). */
  onEvent?: (event: TlsRptEvent) => void;

  // ---- FOR TESTS ONLY ----
  /**
   * FOR TESTS ONLY: connect to this port for every `https:` report URI (RFC 8460 §5.4 URIs name 443; a loopback
   * server cannot use it). Named like the engine's `httpsPort` and the CLI's `--https-port`.
   */
  httpsPort?: number;
}

/** A destination that failed, and why. */
export interface TlsRptDestinationFailure {
  uri: string;
  error: TlsRptError;
}

/** A report was accepted by at least one destination. */
export interface TlsRptSentEvent {
  type: 'sent';
  day: string;
  policyDomain: string;
  reportId: string;
  report: TlsRptReport;
  /** The attempt that succeeded (1 = first). */
  attempt: number;
  /** URIs that accepted the report. */
  delivered: string[];
  /** URIs that did not (the report still counts as delivered, §3). */
  failures: TlsRptDestinationFailure[];
}

/** Every destination failed; another attempt is scheduled. */
export interface TlsRptFailedEvent {
  type: 'failed';
  day: string;
  policyDomain: string;
  reportId: string;
  attempt: number;
  nextAttemptAt: number;
  /**
   * False for a forced attempt (`flush()`) made before the report's next scheduled attempt: it does not count
   * toward `retry.attempts` and leaves the schedule unchanged.
   */
  counted: boolean;
  error: TlsRptError;
  failures: TlsRptDestinationFailure[];
}

/**
 * The report was not attempted because of a configuration or usage error (an unusable `mailTransport`, ...): no
 * delivery state changed, nothing counts as an attempt; fix the configuration.
 */
export interface TlsRptNotAttemptedEvent {
  type: 'not-attempted';
  day: string;
  policyDomain: string;
  reportId: string;
  error: TlsRptError;
  failures: TlsRptDestinationFailure[];
}

/** Something about the configuration the operator should know (emitted once, at creation). */
export interface TlsRptWarningEvent {
  type: 'warning';
  /** `TLSRPT_UNSIGNED_MAIL`: report mail is configured without DKIM (RFC 8460 §5.3). */
  code: 'TLSRPT_UNSIGNED_MAIL';
  message: string;
}

/** The report was given up. */
export interface TlsRptDroppedEvent {
  type: 'dropped';
  day: string;
  policyDomain: string;
  reportId: string;
  reason: 'retries-exhausted' | 'too-large';
  attempts: number;
  error: TlsRptError;
}

/** The policy domain has no usable TLSRPT record (none, several, or invalid): nothing is sent (§3). */
export interface TlsRptSkippedNoRecordEvent {
  type: 'skipped-no-record';
  day: string;
  policyDomain: string;
  /** Why the record is unusable, when there is one (`TLSRPT_RECORD_MULTIPLE`, `TLSRPT_RECORD_INVALID`). */
  error?: TlsRptError;
}

/** The record only has destinations this reporter cannot use (`mailto:` without a mail transport). */
export interface TlsRptSkippedNoTransportEvent {
  type: 'skipped-no-transport';
  day: string;
  policyDomain: string;
  uris: string[];
  /** True when the report stayed in the store (`keepUndeliverable`); otherwise it was removed. */
  kept?: boolean;
}

/** Events of the reporter. */
export type TlsRptEvent =
  | TlsRptSentEvent
  | TlsRptFailedEvent
  | TlsRptDroppedEvent
  | TlsRptSkippedNoRecordEvent
  | TlsRptSkippedNoTransportEvent
  | TlsRptNotAttemptedEvent
  | TlsRptWarningEvent
  | { type: 'spool-corrupt'; error: TlsRptError }
  | { type: 'store-error'; error: TlsRptError }
  | { type: 'outcomes-dropped'; reason: DroppedOutcomeReason; day?: string; policyDomain?: string };

/** What one `flush()` (or scheduled check) did. */
export interface FlushResult {
  sent: TlsRptSentEvent[];
  failed: TlsRptFailedEvent[];
  dropped: TlsRptDroppedEvent[];
  skipped: Array<TlsRptSkippedNoRecordEvent | TlsRptSkippedNoTransportEvent>;
  /** Reports not attempted because of a configuration error (absent when there were none). */
  notAttempted?: TlsRptNotAttemptedEvent[];
}

/** A report not sent yet, as it would be built now. */
export interface PendingReport {
  day: string;
  policyDomain: string;
  /** True when the day is over (the report is due, or waiting for its delay, jitter or a retry). */
  closed: boolean;
  /** The report as it would be built now (the id is final once delivery state exists). */
  report: TlsRptReport;
  delivery?: DeliveryState;
}

/** The reporter. */
export interface TlsRptReporter {
  /** Feed session outcomes here (see {@link TlsRptAggregator}). */
  readonly recorder: TlsRptAggregator;
  /**
   * Sends every report of a closed day now, ignoring delay, jitter and backoff (for tests and CLIs). A failure
   * ahead of the report's next scheduled attempt is reported (`failed` with `counted: false`) but does not count,
   * so repeated runs never drop a report before its retry window (RFC 8460 §5.5) is over. Safe against a spool
   * that live processes are writing to: only the counts that were sent are removed (`TlsRptStore.settle`).
   */
  flush(): Promise<FlushResult>;
  /** Preview of the reports not sent yet (closed and current days), including unflushed counts. */
  pending(): Promise<PendingReport[]>;
  /** Starts the periodic check for due reports (timers are unref'ed). Idempotent. */
  start(): void;
  /**
   * Stops the timers, writes pending counts, closes what the reporter created. Idempotent. Rejects with
   * `TLSRPT_STORE_FAILED` (after closing everything) when the pending counts could not be written: its
   * `details.unpersistedSessions` says how many recorded sessions were lost.
   */
  close(): Promise<void>;
  /** Configuration warnings found at creation (also logged and emitted as `warning` events). */
  readonly warnings: readonly TlsRptWarningEvent[];
}

/**
 * Creates a reporter. Nothing runs until `start()` (periodic) or `flush()` (on demand); `recorder` counts from the
 * start.
 */
export function createTlsRptReporter(options: TlsRptReporterOptions): TlsRptReporter {
  validateReporterOptions(options); // every option, and Nodemailer when reports go by mail (MTASTS_INVALID_OPTIONS / MTASTS_MISSING_PEER)

  const now = options.now ?? Date.now;
  const random = options.random ?? Math.random;
  const logger = options.logger;
  const ownsStore = options.store === undefined;
  const store: TlsRptStore = options.store ?? (options.spoolDir !== undefined ? new FileSpoolStore(options.spoolDir, options.logger ? { logger: options.logger } : {}) : new MemoryTlsRptStore());
  const resolver = options.resolver ?? createDefaultResolver();
  const submitter = options.submitter.toLowerCase().replace(/\.$/, '');
  const mailFrom = options.mailFrom ?? `noreply-tlsrpt@${submitter}`;
  const delayMs = nonNegative(options.delayMs ?? 15 * 60_000, 'delayMs');
  const jitterMs = nonNegative(options.jitterMs ?? 4 * 3_600_000, 'jitterMs');
  const attempts = Math.max(1, Math.floor(options.retry?.attempts ?? 8));
  const baseDelayMs = nonNegative(options.retry?.baseDelayMs ?? 15 * 60_000, 'retry.baseDelayMs');
  const maxAgeMs = nonNegative(options.retry?.maxAgeMs ?? DAY_MS, 'retry.maxAgeMs');
  const checkIntervalMs = Math.max(10, options.checkIntervalMs ?? 5 * 60_000);
  const maxReportBytes = options.maxReportBytes ?? 10 * 1024 * 1024;
  const dnsTimeoutMs = options.dnsTimeoutMs ?? 10_000;

  const emit = (event: TlsRptEvent): void => {
    try {
      options.onEvent?.(event);
    } catch {
      // a throwing listener must not break reporting
    }
  };

  const recorder = new TlsRptAggregator({
    store,
    now,
    ...(options.limits ? { limits: options.limits } : {}),
    ...(options.flushDelayMs !== undefined ? { flushDelayMs: options.flushDelayMs } : {}),
    ...(options.maxUnflushedOutcomes !== undefined ? { maxUnflushedOutcomes: options.maxUnflushedOutcomes } : {}),
    ...(logger ? { logger } : {}),
    onDrop: (info) => emit({ type: 'outcomes-dropped', ...info }),
    onStoreError: (error) => emit({ type: 'store-error', error }),
  });
  const unsubscribe = store.subscribe?.((event) => emit({ type: 'spool-corrupt', error: event.error }));
  const warnings = configurationWarnings(options);
  for (const warning of warnings) {
    logger?.warn?.(`tlsrpt: ${warning.message}`, { code: warning.code });
    emit(warning);
  }

  let ownDispatcher: Dispatcher | undefined;
  const dispatcher = (): Dispatcher => {
    if (options.dispatcher) return options.dispatcher;
    ownDispatcher ??= createReportHttpsAgent({ resolver, ...(options.ca !== undefined ? { ca: options.ca } : {}), dnsTimeoutMs });
    return ownDispatcher;
  };
  let mail: Promise<{ transport: TlsRptMailTransport; owned: boolean }> | undefined;
  const mailTransport = (): Promise<{ transport: TlsRptMailTransport; owned: boolean }> => {
    // A transport that cannot even be created is a configuration error, not a failed delivery.
    mail ??= createMailTransport(options.mailTransport as TlsRptMailTransportInput).catch((error: unknown) => {
      throw new TlsRptError('TLSRPT_TRANSPORT_UNUSABLE', `mailTransport is not usable: ${error instanceof Error ? error.message : String(error)}`, { cause: error, details: { option: 'mailTransport' } });
    });
    return mail;
  };

  let timer: NodeJS.Timeout | undefined;
  let started = false;
  let closed = false;
  let queue: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn);
    queue = run.catch(() => undefined);
    return run;
  };

  const deliverTo = async (destination: TlsRptDestination, report: TlsRptReport, gz: Buffer, key: DomainDayKey, filename: string): Promise<void> => {
    const context = { policyDomain: key.policyDomain, reportId: report['report-id'] };
    if (destination.kind === 'https') {
      await postTlsRptReport(destination.url, gz, {
        dispatcher: dispatcher(),
        context,
        ...(options.httpsTimeoutMs !== undefined ? { timeoutMs: options.httpsTimeoutMs } : {}),
        ...(options.httpsPort !== undefined ? { httpsPort: options.httpsPort } : {}),
      });
      return;
    }
    const { transport } = await mailTransport();
    await sendTlsRptMail(transport, report, gz, { from: mailFrom, to: destination.address, submitter, filename, ...(options.dkim ? { dkim: options.dkim } : {}) });
  };

  /** §3: the reporter MAY deliver to each destination; the report is delivered once one of them accepts. */
  const deliverAll = async (usable: TlsRptDestination[], report: TlsRptReport, gz: Buffer, key: DomainDayKey, filename: string): Promise<{ delivered: string[]; failures: TlsRptDestinationFailure[] }> => {
    const delivered: string[] = [];
    const failures: TlsRptDestinationFailure[] = [];
    for (const destination of usable) {
      try {
        await deliverTo(destination, report, gz, key, filename);
        delivered.push(destination.uri);
      } catch (error) {
        failures.push({ uri: destination.uri, error: toTlsRptError(error, isUsageError(error) ? 'TLSRPT_TRANSPORT_UNUSABLE' : 'TLSRPT_DELIVERY_FAILED', `delivery to ${destination.uri} failed`, { domain: key.policyDomain }) });
      }
    }
    return { delivered, failures };
  };

  /** One (day, domain): decides, delivers, updates the store, records the outcome in `result`. */
  const processOne = async (key: DomainDayKey, force: boolean, result: FlushResult): Promise<void> => {
    const record = await store.get(key);
    if (!record) return;
    if (totalSessions(record) === 0) {
      await store.delete(key);
      return;
    }
    const dayStart = utcDayStart(key.day);
    let state = record.delivery;
    if (!state) {
      // §4.1: send after the day closes, with a random delay so receivers are not flooded at midnight.
      const dueAt = dayStart + DAY_MS + delayMs + Math.floor(random() * jitterMs);
      state = { uniqueId: randomUniqueId(), dueAt, attempts: 0, nextAttemptAt: dueAt };
      await store.setDelivery(key, state);
    }
    const t = now();
    if (!force && t < state.nextAttemptAt) return;
    const reportId = makeTlsRptReportId({ start: new Date(dayStart), policyDomain: key.policyDomain, submitter, uniqueId: state.uniqueId });
    // Removes exactly what this report carried; sessions merged meanwhile (another process) stay for a new report.
    const finish = (): Promise<void> => (store.settle ? store.settle(key, record) : store.delete(key));

    const fail = async (error: TlsRptError, failures: TlsRptDestinationFailure[]): Promise<void> => {
      const current = state as DeliveryState;
      const step = retryStep(current, t, { attempts, baseDelayMs, maxAgeMs });
      if (step.kind === 'uncounted') {
        await store.setDelivery(key, { ...current, lastError: error.message });
        const event: TlsRptFailedEvent = { type: 'failed', day: key.day, policyDomain: key.policyDomain, reportId, attempt: current.attempts, nextAttemptAt: current.nextAttemptAt, counted: false, error, failures };
        result.failed.push(event);
        emit(event);
        return;
      }
      const { attempt, firstAttemptAt, nextAttemptAt } = step;
      if (step.kind === 'drop') {
        await finish();
        const hours = Math.round(((t - firstAttemptAt) / 3_600_000) * 10) / 10;
        const event: TlsRptDroppedEvent = { type: 'dropped', day: key.day, policyDomain: key.policyDomain, reportId, reason: 'retries-exhausted', attempts: attempt, error };
        logger?.warn?.(`tlsrpt: report for ${key.policyDomain} ${key.day} dropped: ${attempt} delivery attempts over ${hours} h failed, the retry window is over (RFC 8460 §5.5)`, { error: error.message });
        result.dropped.push(event);
        emit(event);
        return;
      }
      await store.setDelivery(key, { ...current, attempts: attempt, firstAttemptAt, nextAttemptAt, lastError: error.message });
      const event: TlsRptFailedEvent = { type: 'failed', day: key.day, policyDomain: key.policyDomain, reportId, attempt, nextAttemptAt, counted: true, error, failures };
      logger?.warn?.(`tlsrpt: report for ${key.policyDomain} ${key.day} failed (attempt ${attempt}); next at ${new Date(nextAttemptAt).toISOString()}`, { error: error.message });
      result.failed.push(event);
      emit(event);
    };

    const skip = async (event: TlsRptSkippedNoRecordEvent | TlsRptSkippedNoTransportEvent): Promise<void> => {
      await finish();
      logger?.info?.(`tlsrpt: no report for ${key.policyDomain} ${key.day} (${event.type})`);
      result.skipped.push(event);
      emit(event);
    };

    // §3: the report destinations come from the _smtp._tls TXT record of the policy domain.
    let rua: TlsRptDestination[];
    try {
      const found = await lookupTlsRptRecord(key.policyDomain, { resolver, timeoutMs: dnsTimeoutMs });
      if (!found) return skip({ type: 'skipped-no-record', day: key.day, policyDomain: key.policyDomain });
      rua = found.rua;
    } catch (error) {
      const e = toTlsRptError(error, 'TLSRPT_DNS_TEMPORARY', `TLSRPT lookup for ${key.policyDomain} failed`);
      // A temporary DNS failure is retried; a broken or ambiguous record means "no TLSRPT" (§3).
      if (e.temporary) return fail(e, []);
      return skip({ type: 'skipped-no-record', day: key.day, policyDomain: key.policyDomain, error: e });
    }
    const usable = rua.filter((d) => d.kind === 'https' || options.mailTransport !== undefined);
    if (usable.length === 0) {
      const event: TlsRptSkippedNoTransportEvent = { type: 'skipped-no-transport', day: key.day, policyDomain: key.policyDomain, uris: rua.map((d) => d.uri) };
      if (options.keepUndeliverable !== true) return skip(event);
      // Kept for a run with a mail transport: neither removed nor counted as an attempt.
      const kept: TlsRptSkippedNoTransportEvent = { ...event, kept: true };
      logger?.info?.(`tlsrpt: report for ${key.policyDomain} ${key.day} kept: only mailto: destinations and no mailTransport`);
      result.skipped.push(kept);
      emit(kept);
      return;
    }

    // §4.1: the report covers the full UTC day.
    const dateRange = utcDayRange(key.day);
    const report = buildTlsRptReport({ organizationName: options.organizationName, contactInfo: options.contactInfo, reportId, dateRange, policies: record.policies });
    // §5.2: reports are gzip-compressed for both transports.
    const gz = await gzipTlsRptReport(report);
    if (gz.length > maxReportBytes) {
      await finish();
      const error = new TlsRptError('TLSRPT_TOO_LARGE', `gzipped report of ${gz.length} bytes exceeds maxReportBytes ${maxReportBytes}`, { domain: key.policyDomain, details: { bytes: gz.length, limit: maxReportBytes } });
      const event: TlsRptDroppedEvent = { type: 'dropped', day: key.day, policyDomain: key.policyDomain, reportId, reason: 'too-large', attempts: state.attempts, error };
      logger?.error?.(error.message);
      result.dropped.push(event);
      emit(event);
      return;
    }
    const filename = tlsRptFileName({ submitter, policyDomain: key.policyDomain, dateRange, uniqueId: state.uniqueId });

    const { delivered, failures } = await deliverAll(usable, report, gz, key, filename);
    if (delivered.length === 0 && failures.length > 0 && failures.every((f) => isUsageError(f.error))) {
      // Nothing was attempted: a configuration error is not a delivery failure and must never drop a report.
      const event: TlsRptNotAttemptedEvent = { type: 'not-attempted', day: key.day, policyDomain: key.policyDomain, reportId, error: failures[0]!.error, failures };
      logger?.error?.(`tlsrpt: report for ${key.policyDomain} ${key.day} not sent: ${failures[0]!.error.message}`);
      (result.notAttempted ??= []).push(event);
      emit(event);
      return;
    }
    if (delivered.length === 0) return fail(failures.find((f) => !isUsageError(f.error))?.error ?? new TlsRptError('TLSRPT_DELIVERY_FAILED', 'no destination accepted the report'), failures);
    await finish();
    const event: TlsRptSentEvent = { type: 'sent', day: key.day, policyDomain: key.policyDomain, reportId, report, attempt: state.attempts + 1, delivered, failures };
    logger?.info?.(`tlsrpt: report for ${key.policyDomain} ${key.day} sent to ${delivered.join(', ')}`);
    result.sent.push(event);
    emit(event);
  };

  const processAll = async (force: boolean): Promise<FlushResult> => {
    const result: FlushResult = { sent: [], failed: [], dropped: [], skipped: [] };
    // Counts still in memory go to the store first (a failure keeps them in memory and is reported as an event).
    await recorder.flush().catch(() => undefined);
    let keys: DomainDayKey[];
    try {
      keys = await store.list();
    } catch (error) {
      emit({ type: 'store-error', error: toTlsRptError(error, 'TLSRPT_STORE_FAILED', 'listing the TLS-RPT store failed') });
      return result;
    }
    const today = utcDayKey(now());
    keys.sort((a, b) => (a.day === b.day ? a.policyDomain.localeCompare(b.policyDomain) : a.day < b.day ? -1 : 1));
    for (const key of keys) {
      // §4.1: only closed UTC days are reported.
      if (key.day >= today) continue;
      try {
        await processOne(key, force, result);
      } catch (error) {
        emit({ type: 'store-error', error: toTlsRptError(error, 'TLSRPT_STORE_FAILED', `processing ${key.policyDomain} ${key.day} failed`, { domain: key.policyDomain }) });
      }
    }
    return result;
  };

  const schedule = (delay: number): void => {
    if (closed) return;
    timer = setTimeout(() => {
      timer = undefined;
      void exclusive(() => processAll(false))
        .catch(() => undefined)
        .finally(() => schedule(checkIntervalMs));
    }, delay);
    timer.unref?.();
  };

  return {
    recorder,
    flush() {
      if (closed) return Promise.resolve({ sent: [], failed: [], dropped: [], skipped: [] });
      return exclusive(() => processAll(true));
    },
    async pending() {
      await queue;
      const unflushed = new Map<string, DomainDayCounts>(recorder.unflushed().map((c) => [`${c.day}|${c.policyDomain}`, c]));
      const keys = new Map<string, DomainDayKey>();
      for (const key of await store.list()) keys.set(`${key.day}|${key.policyDomain}`, key);
      for (const [id, c] of unflushed) keys.set(id, { day: c.day, policyDomain: c.policyDomain });
      const today = utcDayKey(now());
      const out: PendingReport[] = [];
      for (const [id, key] of keys) {
        const stored = await store.get(key);
        const extra = unflushed.get(id);
        const counts = stored && extra ? mergeDomainDayCounts(stored, extra, recorder.limits) : (stored ?? extra);
        if (!counts || totalSessions(counts) === 0) continue;
        const dateRange = utcDayRange(key.day);
        const reportId = makeTlsRptReportId({ start: dateRange.start, policyDomain: key.policyDomain, submitter, uniqueId: stored?.delivery?.uniqueId ?? 'preview' });
        out.push({
          day: key.day,
          policyDomain: key.policyDomain,
          closed: key.day < today,
          report: buildTlsRptReport({ organizationName: options.organizationName, contactInfo: options.contactInfo, reportId, dateRange, policies: counts.policies }),
          ...(stored?.delivery ? { delivery: stored.delivery } : {}),
        });
      }
      return out.sort((a, b) => (a.day === b.day ? a.policyDomain.localeCompare(b.policyDomain) : a.day < b.day ? -1 : 1));
    },
    start() {
      if (started || closed) return;
      started = true;
      schedule(0);
    },
    warnings,
    async close() {
      if (closed) return;
      closed = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      await queue;
      let lost: TlsRptError | undefined;
      await recorder.close().catch((error: unknown) => {
        const unpersistedSessions = recorder.unflushedCount();
        lost = new TlsRptError('TLSRPT_STORE_FAILED', `${unpersistedSessions} recorded session(s) could not be written to the TLS-RPT store and are lost: ${error instanceof Error ? error.message : String(error)}`, {
          cause: error,
          details: { unpersistedSessions },
        });
        logger?.error?.(`tlsrpt: ${lost.message}`);
      });
      unsubscribe?.();
      if (mail) {
        const m = await mail.catch(() => undefined);
        if (m?.owned) m.transport.close?.();
      }
      if (ownDispatcher) await ownDispatcher.close().catch(() => undefined);
      if (ownsStore) await store.close?.();
      if (lost) throw lost;
    },
  };
}

/**
 * What a failed attempt does to a report's schedule (RFC 8460 §5.5: retry with exponential backoff for a bounded
 * time). An attempt ahead of the schedule (a forced `flush()`, the CLI) is `uncounted`: it neither counts nor
 * reschedules, so running the CLI repeatedly never drops a report before its retry window is over.
 */
export function retryStep(
  state: DeliveryState,
  t: number,
  retry: { attempts: number; baseDelayMs: number; maxAgeMs: number },
): { kind: 'uncounted' } | { kind: 'retry' | 'drop'; attempt: number; firstAttemptAt: number; nextAttemptAt: number } {
  if (t < state.nextAttemptAt) return { kind: 'uncounted' };
  const attempt = state.attempts + 1;
  const firstAttemptAt = state.firstAttemptAt ?? t;
  const nextAttemptAt = t + retry.baseDelayMs * 2 ** (attempt - 1);
  const drop = attempt >= retry.attempts || nextAttemptAt - firstAttemptAt > retry.maxAgeMs;
  return { kind: drop ? 'drop' : 'retry', attempt, firstAttemptAt, nextAttemptAt };
}

/** Errors of configuration or usage (not of a delivery): they never count as delivery attempts. */
function isUsageError(error: unknown): boolean {
  if (error instanceof TlsRptError) return error.code === 'TLSRPT_TRANSPORT_UNUSABLE' || error.code === 'TLSRPT_NO_TRANSPORT' || error.code === 'TLSRPT_REPORT_INVALID';
  return error instanceof TypeError || error instanceof RangeError;
}

/** Warnings about the configuration, found at creation. */
function configurationWarnings(options: TlsRptReporterOptions): TlsRptWarningEvent[] {
  const out: TlsRptWarningEvent[] = [];
  if (options.mailTransport !== undefined && options.dkim === undefined && options.transportSignsDkim !== true) {
    out.push({
      type: 'warning',
      code: 'TLSRPT_UNSIGNED_MAIL',
      message:
        'report mail is configured without DKIM: RFC 8460 §5.3 asks for report mail to be DKIM-signed by the reporting domain, and receivers may discard unsigned reports. Set the dkim option ({ domainName, keySelector, privateKey }), or transportSignsDkim when the mail transport signs.',
    });
  }
  return out;
}

function nonNegative(value: number, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new MtaStsError('MTASTS_INVALID_OPTIONS', `createTlsRptReporter(): option ${what} must be a non-negative number (ms), got ${JSON.stringify(value)}`, { details: { option: what } });
  return value;
}
