/**
 * `mta-sts-sender/tlsrpt`: SMTP TLS Reporting (RFC 8460), the sending side.
 *
 * A sending MTA counts, per recipient (policy) domain and per UTC day, the SMTP sessions that negotiated TLS as the
 * domain's MTA-STS or DANE policy required and those that failed, with the reason (§4). After the day it sends each
 * domain that publishes a `_smtp._tls` TXT record (§3) one JSON report, gzipped, by mail or HTTPS POST (§5).
 *
 * - {@link createTlsRptReporter}: all of it — a recorder to feed {@link SessionOutcome}s into, persistence,
 *   scheduling with jitter and retries, delivery, events.
 * - The parts on their own: {@link TlsRptAggregator} (recorder), {@link createSqliteTlsRptStore} /
 *   {@link MemoryTlsRptStore} (stores), {@link parseTlsRptRecord} / {@link lookupTlsRptRecord} (discovery), {@link buildTlsRptReport} /
 *   {@link tlsRptFileName} / {@link gzipTlsRptReport} (report), {@link sendTlsRptMail} / {@link postTlsRptReport}
 *   (delivery).
 *
 * @example
 * ```ts
 * const reporter = createTlsRptReporter({
 *   organizationName: 'Example Sender Inc.',
 *   contactInfo: 'tlsrpt@sender.example',
 *   submitter: 'mta.sender.example',
 *   store: '/var/lib/mta-sts-sender/tlsrpt.db', // an SQLite file: createSqliteTlsRptStore({ path })
 *   mailTransport: { host: 'relay.sender.example', port: 587 }, // NOT MTA-STS-enforcing (RFC 8460 §5.3)
 *   dkim: { domainName: 'sender.example', keySelector: 'tlsrpt', privateKey },
 * });
 * reporter.start();
 * reporter.recorder.record({ policy: { type: 'sts', domain: 'example.com', policyString, mxHost }, success: true });
 * ```
 *
 * @packageDocumentation
 */
export type {
  AggregatedFailure,
  AggregatedPolicy,
  SessionOutcome,
  TlsRptFailure,
  TlsRptLogger,
  TlsRptPolicyRef,
  TlsRptPolicyType,
  TlsRptRecorder,
  TlsRptReport,
  TlsRptReportFailureDetail,
  TlsRptReportPolicy,
  TlsRptResultType,
} from './types.js';
export { TLSRPT_RESULT_TYPES } from '../errors.js';
export { TlsRptError, TLSRPT_ERROR_CODES } from './errors.js';
export type { TlsRptErrorCode, TlsRptErrorOptions } from './errors.js';
// The reporter (recorder, persistence, scheduling, delivery) and its events.
export { createTlsRptReporter } from './scheduler.js';
export type { TlsRptReporterOptions, TlsRptRetryOptions } from './reporter-options.js';
export type { TlsRptRefusalReason } from './destination-policy.js';
export type {
  FlushResult,
  PendingReport,
  TlsRptDestinationFailure,
  TlsRptDestinationRefusedEvent,
  TlsRptDestinationsLimitedEvent,
  TlsRptDroppedEvent,
  TlsRptEvent,
  TlsRptFailedEvent,
  TlsRptNotAttemptedEvent,
  TlsRptReporter,
  TlsRptSentEvent,
  TlsRptSkippedNoRecordEvent,
  TlsRptSkippedNoTransportEvent,
  TlsRptWarningEvent,
} from './reporter-events.js';
// The recorder and the stores on their own; a custom store merges and settles counts with the two helpers.
export { TlsRptAggregator } from './recorder.js';
export type { DroppedOutcomeReason, TlsRptAggregatorOptions, TlsRptAggregatorStats } from './recorder.js';
export { MemoryTlsRptStore } from './store.js';
export type { DeliveryState, StoredDomainDay, TlsRptStore, TlsRptStoreEvent } from './store.js';
export { createSqliteTlsRptStore, SqliteTlsRptStore } from '../sqlite/tlsrpt-store.js';
export type { SqliteTlsRptStoreOptions } from '../sqlite/tlsrpt-store.js';
export { DEFAULT_AGGREGATION_LIMITS, mergeDomainDayCounts, subtractDomainDayCounts } from './aggregate.js';
export type { AggregationLimits, DomainDayCounts, DomainDayKey } from './aggregate.js';
// RFC 8460 §3 record discovery.
export { lookupTlsRptRecord, parseTlsRptRecord, selectTlsRptRecord } from './discovery.js';
export type { LookupTlsRptRecordOptions, TlsRptDestination, TlsRptIgnoredUri, TlsRptRecord } from './discovery.js';
// RFC 8460 §4 the report, §5.3 its file name and compression.
export { buildTlsRptReport, gunzipTlsRptReport, gzipTlsRptReport, tlsRptFileName } from './report.js';
export type { BuildTlsRptReportInput, TlsRptFileNameInput } from './report.js';
export { TLSRPT_REPORT_JSON_SCHEMA } from './report-schema.js';
// RFC 8460 §5 delivery on its own.
export { TLSRPT_GZIP_MEDIA_TYPE, TLSRPT_JSON_MEDIA_TYPE, postTlsRptReport, sendTlsRptMail } from './deliver.js';
export type { PostTlsRptReportOptions, TlsRptHttpsResult, TlsRptMailOptions, TlsRptMailResult, TlsRptMailTransport, TlsRptMailTransportInput } from './deliver.js';
