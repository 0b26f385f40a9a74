/**
 * Errors raised by the TLS reporting (RFC 8460) part of mta-sts-sender.
 *
 * Every failure of `mta-sts-sender/tlsrpt` is a {@link TlsRptError} with a stable machine-readable `code` and a
 * `temporary` flag. Check `code`, never the message. The doc of each code says what the caller should do.
 */

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
 * - `TLSRPT_NO_TRANSPORT`: a `mailto:` destination exists but no mail transport was configured. Configure
 *   `mailTransport` or accept that this destination is skipped.
 * - `TLSRPT_TOO_LARGE`: the gzipped report exceeds `maxReportBytes`. The report is dropped (it would not become
 *   smaller by retrying); lower the aggregation caps.
 * - `TLSRPT_REPORT_INVALID`: the input given to `buildTlsRptReport` is invalid (negative counts, end before start,
 *   missing names). A programming error: fix the caller.
 * - `TLSRPT_SPOOL_CORRUPT`: a spool file could not be parsed. It was moved aside and skipped; its counts are lost.
 *   Reported through the store's `onCorrupt` callback / the reporter's `spool-corrupt` event, never thrown to the
 *   code that records sessions.
 * - `TLSRPT_STORE_FAILED`: the store threw (disk full, permissions). Recorded counts stay in memory and are written
 *   on the next flush; look at `cause`. From `reporter.close()`: the counts could not be written and are lost
 *   (`details.unpersistedSessions`).
 * - `TLSRPT_INVALID_OPTIONS`: an option of the reporter is unusable (e.g. a `mailTransport` Nodemailer cannot
 *   create a transport from). A configuration error: fix it; a report is never counted as attempted because of it.
 */
export type TlsRptErrorCode =
  | 'TLSRPT_INVALID_DOMAIN'
  | 'TLSRPT_RECORD_INVALID'
  | 'TLSRPT_RECORD_MULTIPLE'
  | 'TLSRPT_DNS_TEMPORARY'
  | 'TLSRPT_ABORTED'
  | 'TLSRPT_DELIVERY_FAILED'
  | 'TLSRPT_HTTP_STATUS'
  | 'TLSRPT_NO_TRANSPORT'
  | 'TLSRPT_TOO_LARGE'
  | 'TLSRPT_REPORT_INVALID'
  | 'TLSRPT_SPOOL_CORRUPT'
  | 'TLSRPT_STORE_FAILED'
  | 'TLSRPT_INVALID_OPTIONS';

/** All codes, for exhaustiveness checks and documentation tables. */
export const TLSRPT_ERROR_CODES: readonly TlsRptErrorCode[] = Object.freeze([
  'TLSRPT_INVALID_DOMAIN',
  'TLSRPT_RECORD_INVALID',
  'TLSRPT_RECORD_MULTIPLE',
  'TLSRPT_DNS_TEMPORARY',
  'TLSRPT_ABORTED',
  'TLSRPT_DELIVERY_FAILED',
  'TLSRPT_HTTP_STATUS',
  'TLSRPT_NO_TRANSPORT',
  'TLSRPT_TOO_LARGE',
  'TLSRPT_REPORT_INVALID',
  'TLSRPT_SPOOL_CORRUPT',
  'TLSRPT_STORE_FAILED',
  'TLSRPT_INVALID_OPTIONS',
]);

const TEMPORARY_CODES: ReadonlySet<TlsRptErrorCode> = new Set<TlsRptErrorCode>([
  'TLSRPT_DNS_TEMPORARY',
  'TLSRPT_ABORTED',
  'TLSRPT_DELIVERY_FAILED',
  'TLSRPT_HTTP_STATUS',
  'TLSRPT_STORE_FAILED',
]);

/** Structured, JSON-safe detail attached to an error (HTTP status, SMTP response, file path, ...). */
export type TlsRptErrorDetails = Readonly<Record<string, string | number | boolean | undefined>>;

export interface TlsRptErrorOptions {
  cause?: unknown;
  /** The policy domain the failure concerns, when there is one. */
  domain?: string;
  details?: TlsRptErrorDetails;
}

/** The one error class of `mta-sts-sender/tlsrpt`. Check `code`, never the message. */
export class TlsRptError extends Error {
  override readonly name: string = 'TlsRptError';
  readonly code: TlsRptErrorCode;
  /** True when trying again later may succeed (DNS SERVFAIL, network errors, non-2xx HTTP answers). */
  readonly temporary: boolean;
  readonly domain: string | undefined;
  readonly details: TlsRptErrorDetails;

  constructor(code: TlsRptErrorCode, message: string, options: TlsRptErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.temporary = TEMPORARY_CODES.has(code);
    this.domain = options.domain;
    this.details = Object.freeze({ ...(options.details ?? {}) });
  }

  /** A plain JSON-safe view (for logs, CLIs and events). */
  toJSON(): { name: string; code: TlsRptErrorCode; message: string; temporary: boolean; domain?: string; details: Record<string, string | number | boolean | undefined> } {
    return {
      name: this.name,
      code: this.code,
      message: this.message,
      temporary: this.temporary,
      ...(this.domain ? { domain: this.domain } : {}),
      details: { ...this.details },
    };
  }
}

/** Type guard that works across module copies (ESM and CJS builds loaded side by side). */
export function isTlsRptError(value: unknown): value is TlsRptError {
  return (
    value instanceof TlsRptError ||
    (typeof value === 'object' && value !== null && (value as { name?: unknown }).name === 'TlsRptError' && typeof (value as { code?: unknown }).code === 'string')
  );
}

/** Wraps anything thrown into a {@link TlsRptError} of `code` (an existing TlsRptError is returned as is). */
export function toTlsRptError(error: unknown, code: TlsRptErrorCode, message: string, options: Omit<TlsRptErrorOptions, 'cause'> = {}): TlsRptError {
  if (isTlsRptError(error)) return error;
  const reason = error instanceof Error ? error.message : String(error);
  return new TlsRptError(code, `${message}: ${reason}`, { ...options, cause: error });
}
