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
 * Counts and delivery state live in a {@link TlsRptStore}: an SQLite file when `store` is a path (survives
 * restarts: a restart neither loses flushed counts nor changes a report's id; several processes may share it and
 * each report is sent by one of them, see `createSqliteTlsRptStore`), any store passed as `store`, or a
 * {@link MemoryTlsRptStore} when none is given.
 * The report id is `<day>_<policy-domain>_<unique-id>@<submitter>`; the random unique id is drawn when a report
 * first becomes due and kept across retries (a receiver can drop duplicates). Sessions recorded for a day after its
 * report went out (a late `at`) make a second, separate report with its own id.
 */
import { validateReporterOptions } from '../option-specs.js';
import type { DomainDayKey } from './aggregate.js';
import { TlsRptError, toTlsRptError } from './errors.js';
import { byDayThenDomain, pendingReports } from './pending.js';
import { processReport, type ReportProcessor } from './process-report.js';
import { TlsRptAggregator } from './recorder.js';
import { configurationWarnings, resolveReporterSettings, type ReporterSettings, type TlsRptReporterOptions } from './reporter-options.js';
import type { FlushResult, TlsRptEvent, TlsRptReporter } from './reporter-events.js';
import type { TlsRptStoreEvent } from './store.js';
import { createReportSender, type ReportSender } from './report-sender.js';
import { utcDayKey } from './report.js';

// What callers of the reporter name most (the package exports every type from ./index.ts).
export type { TlsRptReporterOptions } from './reporter-options.js';
export type { TlsRptEvent, TlsRptReporter } from './reporter-events.js';
export { retryStep } from './process-report.js';

/**
 * Creates a reporter. Nothing runs until `start()` (periodic) or `flush()` (on demand); `recorder` counts from the
 * start.
 */
export function createTlsRptReporter(options: TlsRptReporterOptions): TlsRptReporter {
  validateReporterOptions(options); // every option, and Nodemailer when reports go by mail (MTASTS_INVALID_OPTIONS / MTASTS_MISSING_PEER)
  const settings = resolveReporterSettings(options);
  const { store, logger, emit, now } = settings;
  const recorder = createRecorder(options, settings);
  const unsubscribe = store.subscribe?.((event) => emit(reporterEventOf(event)));
  const warnings = configurationWarnings(options);
  for (const warning of warnings) {
    logger?.warn?.(`tlsrpt: ${warning.message}`, { code: warning.code });
    emit(warning);
  }
  const sender = createReportSender(options, settings);
  const processor: ReportProcessor = { options, settings, sender };

  let timer: NodeJS.Timeout | undefined;
  let started = false;
  let closed = false;
  let queue: Promise<unknown> = Promise.resolve();
  /** One pass over the store at a time (a timer's and a `flush()`'s never interleave). */
  const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn);
    queue = run.catch(() => undefined);
    return run;
  };
  const schedule = (delay: number): void => {
    if (closed) return;
    timer = setTimeout(() => {
      timer = undefined;
      void exclusive(() => processDueReports(processor, recorder, now, false))
        .catch(() => undefined)
        .finally(() => schedule(settings.checkIntervalMs));
    }, delay);
    timer.unref?.();
  };

  return {
    recorder,
    flush() {
      if (closed) return Promise.resolve({ sent: [], failed: [], dropped: [], skipped: [] });
      return exclusive(() => processDueReports(processor, recorder, now, true));
    },
    async pending() {
      await queue;
      return pendingReports(options, settings, recorder);
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
      await closeResources(settings, recorder, sender, unsubscribe);
    },
  };
}

/** The reporter's recorder: counts go to the store; dropped outcomes and store failures become events. */
function createRecorder(options: TlsRptReporterOptions, { store, now, logger, emit }: ReporterSettings): TlsRptAggregator {
  return new TlsRptAggregator({
    store,
    now,
    ...(options.limits ? { limits: options.limits } : {}),
    ...(options.flushDelayMs !== undefined ? { flushDelayMs: options.flushDelayMs } : {}),
    ...(options.maxUnflushedOutcomes !== undefined ? { maxUnflushedOutcomes: options.maxUnflushedOutcomes } : {}),
    ...(logger ? { logger } : {}),
    onDrop: (info) => emit({ type: 'outcomes-dropped', ...info }),
    onStoreError: (error) => emit({ type: 'store-error', error }),
    onInvalidField: ({ field, day, policyDomain }) => emit({ type: 'warning', code: 'TLSRPT_FIELD_INVALID', message: `invalid ${field} left out of a failure detail (RFC 8460 §4.4)`, field, day, policyDomain }),
  });
}

/** A store's event as the reporter emits it (see {@link TlsRptStoreEvent}). */
function reporterEventOf(event: TlsRptStoreEvent): TlsRptEvent {
  if (event.type === 'warning') return { type: 'warning', code: 'TLSRPT_STORE_EVICTION', message: event.error.message };
  return event.type === 'corrupt' ? { type: 'spool-corrupt', error: event.error } : { type: 'store-error', error: event.error };
}

/** One pass: every report of a closed UTC day (§4.1), in order; `force` ignores delay, jitter and backoff. */
async function processDueReports(processor: ReportProcessor, recorder: TlsRptAggregator, now: () => number, force: boolean): Promise<FlushResult> {
  const { store, emit } = processor.settings;
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
  keys.sort(byDayThenDomain);
  // §4.1: only closed UTC days are reported.
  const due = keys.filter((key) => key.day < today);
  for (const [i, key] of due.entries()) {
    try {
      await processReport(processor, key, force, result);
    } catch (error) {
      const e = toTlsRptError(error, 'TLSRPT_STORE_FAILED', `processing ${key.policyDomain} ${key.day} failed`, { domain: key.policyDomain });
      emit({ type: 'store-error', error: e });
      // A store that cannot write (a full or read-only disk) fails every report alike: one event per pass, no loop.
      if (e.code === 'TLSRPT_STORE_FAILED' && i < due.length - 1) {
        processor.settings.logger?.error?.(`tlsrpt: the TLS-RPT store failed; ${due.length - i - 1} other report(s) wait for the next check: ${e.message}`);
        break;
      }
    }
  }
  return result;
}

/**
 * Writes pending counts, then closes what the reporter created (mail transport, dispatcher, store); rejects with
 * `TLSRPT_STORE_FAILED` after closing everything when counts were lost.
 */
async function closeResources(settings: ReporterSettings, recorder: TlsRptAggregator, sender: ReportSender, unsubscribe: (() => void) | undefined): Promise<void> {
  let lost: TlsRptError | undefined;
  await recorder.close().catch((error: unknown) => {
    const unpersistedSessions = recorder.unflushedCount();
    lost = new TlsRptError('TLSRPT_STORE_FAILED', `${unpersistedSessions} recorded session(s) could not be written to the TLS-RPT store and are lost: ${error instanceof Error ? error.message : String(error)}`, {
      cause: error,
      details: { unpersistedSessions },
    });
    settings.logger?.error?.(`tlsrpt: ${lost.message}`);
  });
  unsubscribe?.();
  await sender.close();
  if (settings.ownsStore) await settings.store.close?.();
  if (lost) throw lost;
}
