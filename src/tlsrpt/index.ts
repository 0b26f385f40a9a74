/**
 * `mta-sts-sender/tlsrpt`: SMTP TLS Reporting (RFC 8460), the sending side.
 *
 * A sending MTA counts, per recipient (policy) domain and per UTC day, the SMTP sessions that negotiated TLS as the
 * domain's MTA-STS or DANE policy required and those that failed, with the reason (§4). After the day it sends each
 * domain that publishes a `_smtp._tls` TXT record (§3) one JSON report, gzipped, by mail or HTTPS POST (§5).
 *
 * - {@link createTlsRptReporter}: all of it — a recorder to feed {@link SessionOutcome}s into, persistence,
 *   scheduling with jitter and retries, delivery, events.
 * - The parts on their own: {@link TlsRptAggregator} (recorder), {@link FileSpoolStore} / {@link MemoryTlsRptStore}
 *   (stores), {@link parseTlsRptRecord} / {@link lookupTlsRptRecord} (discovery), {@link buildTlsRptReport} /
 *   {@link tlsRptFileName} / {@link gzipTlsRptReport} (report), {@link sendTlsRptMail} / {@link postTlsRptReport}
 *   (delivery).
 *
 * @example
 * ```ts
 * const reporter = createTlsRptReporter({
 *   organizationName: 'Example Sender Inc.',
 *   contactInfo: 'tlsrpt@sender.example',
 *   submitter: 'mta.sender.example',
 *   store: new FileSpoolStore('/var/spool/tlsrpt'),
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
export {
  buildTlsRptReport,
  formatRfc3339,
  gunzipTlsRptReport,
  gzipTlsRptReport,
  makeTlsRptReportId,
  randomUniqueId,
  serializeTlsRptReport,
  tlsRptFileName,
  utcDayKey,
  utcDayRange,
  utcDayStart,
} from './report.js';
export type { BuildTlsRptReportInput, TlsRptFileNameInput, TlsRptReportIdInput } from './report.js';
export { TLSRPT_REPORT_JSON_SCHEMA } from './report-schema.js';
export { isTlsRptRecordCandidate, lookupTlsRptRecord, parseTlsRptRecord, selectTlsRptRecord } from './discovery.js';
export type { LookupTlsRptRecordOptions, TlsRptDestination, TlsRptIgnoredUri, TlsRptRecord } from './discovery.js';
export { DEFAULT_AGGREGATION_LIMITS, TRUNCATED_FAILURE_REASON, mergeDomainDayCounts, parseDomainDayCounts, subtractDomainDayCounts, totalSessions } from './aggregate.js';
export { FALLBACK_TO_CACHED_POLICY, markFallbackToCachedPolicy, policyFailureReason, sessionFailureReason } from './reason-codes.js';
export type { PolicyErrorLike, SessionFailureFacts } from './reason-codes.js';
export type { AggregationLimits, DomainDayCounts, DomainDayKey } from './aggregate.js';
export { TlsRptAggregator, currentReportDelivery, runAsReportDelivery } from './recorder.js';
export type { DroppedOutcomeReason, ReportDeliveryContext, TlsRptAggregatorOptions, TlsRptAggregatorStats } from './recorder.js';
export { FileSpoolStore, MemoryTlsRptStore } from './store.js';
export type { DeliveryState, FileSpoolStoreOptions, StoredDomainDay, TlsRptStore, TlsRptStoreEvent } from './store.js';
export {
  TLSRPT_GZIP_MEDIA_TYPE,
  TLSRPT_JSON_MEDIA_TYPE,
  TLSRPT_MAIL_MARKER,
  composeTlsRptMail,
  createMailTransport,
  createReportHttpsAgent,
  describeReport,
  postTlsRptReport,
  sendTlsRptMail,
  tlsRptSubject,
} from './deliver.js';
export type {
  PostTlsRptReportOptions,
  ReportHttpsAgentOptions,
  TlsRptHttpsResult,
  TlsRptMailOptions,
  TlsRptMailResult,
  TlsRptMailTransport,
  TlsRptMailTransportInput,
} from './deliver.js';
export { createTlsRptReporter } from './scheduler.js';
export type {
  FlushResult,
  PendingReport,
  TlsRptDestinationFailure,
  TlsRptDroppedEvent,
  TlsRptEvent,
  TlsRptFailedEvent,
  TlsRptNotAttemptedEvent,
  TlsRptReporter,
  TlsRptReporterOptions,
  TlsRptRetryOptions,
  TlsRptSentEvent,
  TlsRptSkippedNoRecordEvent,
  TlsRptSkippedNoTransportEvent,
  TlsRptWarningEvent,
} from './scheduler.js';
