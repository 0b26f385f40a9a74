/**
 * Errors raised by the TLS reporting (RFC 8460) part of mta-sts-sender.
 *
 * Every failure of `mta-sts-sender/tlsrpt` is a {@link TlsRptError} (a {@link MtaStsSenderError}) with a stable
 * machine-readable `code` and a `temporary` flag, except bad options given to a factory, which are `MtaStsError`
 * `MTASTS_INVALID_OPTIONS` like everywhere else in the library. Check `code`, never the message. The doc of each
 * code says what the caller should do.
 */
import { MtaStsSenderError, type MtaStsSenderErrorOptions } from '../errors.js';

/**
 * Stable error codes. What the caller should do:
 *
 * - `TLSRPT_INVALID_DOMAIN`: the domain given to a lookup is not a valid domain name. Fix the input; nothing was
 *   looked up.
 * - `TLSRPT_RECORD_INVALID`: the one `_smtp._tls` TXT record that begins with `v=TLSRPTv1` is malformed, or has no
 *   `rua` URI with a supported scheme (RFC 8460 §3). The domain has no usable reporting policy: do not send it a
 *   report.
 * - `TLSRPT_RECORD_MULTIPLE`: more than one TXT record begins with `v=TLSRPTv1`. RFC 8460 §3: the sender MUST
 *   assume the domain does not implement TLSRPT. Do not send a report.
 * - `TLSRPT_DNS_TEMPORARY`: the TXT lookup failed with SERVFAIL / REFUSED / a timeout. Not "no record": try again
 *   later (the reporter retries with backoff).
 * - `TLSRPT_ABORTED`: the caller's `AbortSignal` fired.
 * - `TLSRPT_DELIVERY_FAILED`: a report could not be delivered (SMTP rejection, connection failure, HTTPS network
 *   error or timeout). Retry later (RFC 8460 §5.5).
 * - `TLSRPT_HTTP_STATUS`: the HTTPS report endpoint answered with a status other than 2xx (redirects are not
 *   followed, RFC 8460 §5.4). Retry later.
 * - `TLSRPT_DESTINATION_REFUSED`: a `rua` destination points into the sender's own network or at a name that is not
 *   public (an internal address at connect time, `https://user:pass@…` userinfo, `mailto:root@localhost`, …;
 *   `details.reason`). Nothing was sent to it; the report still goes to the other destinations. Permanent for that
 *   destination; allow such targets only in test worlds (`allowInternalDestinations`).
 * - `TLSRPT_NO_TRANSPORT`: a `mailto:` destination exists but no mail transport was configured. Configure
 *   `mailTransport` or accept that this destination is skipped.
 * - `TLSRPT_TRANSPORT_UNUSABLE`: the configured means of delivery turned out unusable when a report went out:
 *   Nodemailer could not create a transport from `mailTransport` (`details.option`), or the mail transport or HTTPS
 *   dispatcher threw a usage error (`TypeError` / `RangeError`, in `cause`) rather than failing on the network. Not
 *   an option error (those are refused at creation with `MtaStsError` `MTASTS_INVALID_OPTIONS`) and not a delivery
 *   attempt (the report is never counted as attempted because of it): fix the transport or dispatcher.
 * - `TLSRPT_TOO_LARGE`: the gzipped report exceeds `maxReportBytes`. The report is dropped (it would not become
 *   smaller by retrying); lower the aggregation caps.
 * - `TLSRPT_REPORT_INVALID`: the input given to `buildTlsRptReport` is invalid (negative counts, end before start,
 *   missing names). A programming error: fix the caller.
 * - `TLSRPT_SPOOL_CORRUPT`: a stored record (an SQLite row, a Redis hash) did not validate. It was removed or moved
 *   aside and skipped; its counts are lost. Reported through the store's `subscribe` listeners / the reporter's
 *   `spool-corrupt` event, never thrown to the code that records sessions.
 * - `TLSRPT_COUNTS_LOST`: counts the store had accepted vanished (a Redis that evicts keys: set
 *   `maxmemory-policy noeviction`). Reported as a `store-error` event with `details.sessions` (how many sessions are
 *   missing), `details.unknown`, `details.records` and the first record's `details.day` / `details.policyDomain`;
 *   the report, if any, goes out without them.
 * - `TLSRPT_STORE_EVICTION`: never thrown; carried by a `warning` event when a store starts: it may lose counts (a
 *   Redis whose `maxmemory-policy` is not `noeviction`, `details.policy`, or whose policy could not be read). Set
 *   `maxmemory-policy noeviction` on that Redis.
 * - `TLSRPT_STORE_FAILED`: the store threw (disk full, read-only, permissions), or refused its file
 *   (`details.reason`: not SQLite, another application's, a newer schema). Recorded counts stay in memory and are
 *   written on the next flush; look at `cause`. A report delivered whose "sent" state could not be saved is not
 *   counted as sent and not sent again by that process. From `reporter.close()`: the counts could not be written
 *   and are lost
 *   (`details.unpersistedSessions`).
 */
export type TlsRptErrorCode =
  | 'TLSRPT_INVALID_DOMAIN'
  | 'TLSRPT_RECORD_INVALID'
  | 'TLSRPT_RECORD_MULTIPLE'
  | 'TLSRPT_DNS_TEMPORARY'
  | 'TLSRPT_ABORTED'
  | 'TLSRPT_DELIVERY_FAILED'
  | 'TLSRPT_HTTP_STATUS'
  | 'TLSRPT_DESTINATION_REFUSED'
  | 'TLSRPT_NO_TRANSPORT'
  | 'TLSRPT_TOO_LARGE'
  | 'TLSRPT_REPORT_INVALID'
  | 'TLSRPT_SPOOL_CORRUPT'
  | 'TLSRPT_COUNTS_LOST'
  | 'TLSRPT_STORE_EVICTION'
  | 'TLSRPT_STORE_FAILED'
  | 'TLSRPT_TRANSPORT_UNUSABLE';

/** All codes, for exhaustiveness checks and documentation tables. */
export const TLSRPT_ERROR_CODES: readonly TlsRptErrorCode[] = Object.freeze([
  'TLSRPT_INVALID_DOMAIN',
  'TLSRPT_RECORD_INVALID',
  'TLSRPT_RECORD_MULTIPLE',
  'TLSRPT_DNS_TEMPORARY',
  'TLSRPT_ABORTED',
  'TLSRPT_DELIVERY_FAILED',
  'TLSRPT_HTTP_STATUS',
  'TLSRPT_DESTINATION_REFUSED',
  'TLSRPT_NO_TRANSPORT',
  'TLSRPT_TOO_LARGE',
  'TLSRPT_REPORT_INVALID',
  'TLSRPT_SPOOL_CORRUPT',
  'TLSRPT_COUNTS_LOST',
  'TLSRPT_STORE_EVICTION',
  'TLSRPT_STORE_FAILED',
  'TLSRPT_TRANSPORT_UNUSABLE',
]);

const TEMPORARY_CODES: ReadonlySet<TlsRptErrorCode> = new Set<TlsRptErrorCode>([
  'TLSRPT_DNS_TEMPORARY',
  'TLSRPT_ABORTED',
  'TLSRPT_DELIVERY_FAILED',
  'TLSRPT_HTTP_STATUS',
  'TLSRPT_STORE_FAILED',
  'TLSRPT_TRANSPORT_UNUSABLE',
]);

/** Options of {@link TlsRptError}: a TLS-RPT error never carries an RFC 8460 result type of its own. */
export type TlsRptErrorOptions = Omit<MtaStsSenderErrorOptions, 'resultType'>;

/** An error of `mta-sts-sender/tlsrpt` (a {@link MtaStsSenderError}). Codes: {@link TlsRptErrorCode}. */
export class TlsRptError extends MtaStsSenderError<TlsRptErrorCode> {
  override readonly name: string = 'TlsRptError';

  constructor(code: TlsRptErrorCode, message: string, options: TlsRptErrorOptions = {}) {
    super(code, message, TEMPORARY_CODES.has(code), options);
  }
}

/** Wraps anything thrown into a {@link TlsRptError} of `code` (an existing TlsRptError is returned as is). */
export function toTlsRptError(error: unknown, code: TlsRptErrorCode, message: string, options: Omit<TlsRptErrorOptions, 'cause'> = {}): TlsRptError {
  if (error instanceof TlsRptError) return error;
  const reason = error instanceof Error ? error.message : String(error);
  return new TlsRptError(code, `${message}: ${reason}`, { ...options, cause: error });
}
