/**
 * Errors raised by mta-sts-sender.
 *
 * Every error the library raises, from every subpath, is a {@link MtaStsSenderError}: a stable machine-readable
 * `code`, the RFC 8460 result type the failure maps to (for TLS reporting), whether the condition is temporary, the
 * domain concerned and JSON-safe `details`. Three subclasses name where it comes from:
 *
 * - {@link MtaStsError} (`MTASTS_*`): policy discovery (RFC 8461 §3), stores, and every factory's options.
 * - `TlsRptError` (`TLSRPT_*`, `mta-sts-sender/tlsrpt`): TLS reporting (RFC 8460).
 * - `MtaStsDeliveryError` (`EMTASTS`, ..., `mta-sts-sender/nodemailer`): a refused or failed Nodemailer delivery,
 *   shaped like Nodemailer's own SMTP errors (`responseCode`, `response`, `command`).
 *
 * Check `instanceof MtaStsSenderError` and `code`, never the message. The doc of each code says what to do.
 */

/** RFC 8460 §4.3 result types (the `result-type` of a failure detail). */
export type TlsRptResultType =
  // §4.3.1 negotiation failures
  | 'starttls-not-supported'
  | 'certificate-host-mismatch'
  | 'certificate-expired'
  | 'certificate-not-trusted'
  | 'validation-failure'
  // §4.3.2 policy failures (MTA-STS)
  | 'sts-policy-fetch-error'
  | 'sts-policy-invalid'
  | 'sts-webpki-invalid'
  // §4.3.2 policy failures (DANE)
  | 'tlsa-invalid'
  | 'dnssec-invalid'
  | 'dane-required';

/** All RFC 8460 §4.3 result types, in the order the RFC lists them. */
export const TLSRPT_RESULT_TYPES: readonly TlsRptResultType[] = Object.freeze([
  'starttls-not-supported',
  'certificate-host-mismatch',
  'certificate-expired',
  'certificate-not-trusted',
  'validation-failure',
  'sts-policy-fetch-error',
  'sts-policy-invalid',
  'sts-webpki-invalid',
  'tlsa-invalid',
  'dnssec-invalid',
  'dane-required',
]);

/**
 * Stable error codes. What the caller should do:
 *
 * - `MTASTS_INVALID_DOMAIN`: the input is not a valid domain name. Fix the input; nothing was looked up.
 * - `MTASTS_DNS_TEMPORARY`: DNS answered SERVFAIL / REFUSED / timed out. Not "no policy": keep using a cached
 *   policy; without one, deliver as if the domain had no policy (RFC 8461 §3.3) or defer.
 * - `MTASTS_TXT_INVALID`: the `_mta-sts` TXT record is malformed (bad syntax, missing or invalid `id`). The domain
 *   has no usable policy record; keep using a cached policy.
 * - `MTASTS_TXT_MULTIPLE`: more than one STS TXT record. Same as `MTASTS_TXT_INVALID` (RFC 8461 §3.1).
 * - `MTASTS_FETCH_FAILED`: the HTTPS request failed (connection refused, reset, DNS of the policy host). Keep using
 *   the cached policy; retry no sooner than the backoff.
 * - `MTASTS_WEBPKI_INVALID`: the policy host's certificate did not validate (RFC 8461 §3.3). Keep using the cached
 *   policy; this is what an attacker would produce.
 * - `MTASTS_HTTP_STATUS`: the policy host answered with a status other than 200.
 * - `MTASTS_HTTP_REDIRECT`: the policy host answered with a redirect, which must not be followed (RFC 8461 §3.3).
 * - `MTASTS_CONTENT_TYPE`: the policy was not served as `text/plain` (RFC 8461 §3.2).
 * - `MTASTS_BODY_TOO_LARGE`: the policy body exceeded `maxPolicyBytes` (RFC 8461 §3.3 suggests 64 KiB).
 * - `MTASTS_FETCH_TIMEOUT`: the fetch did not complete within `fetchTimeoutMs` (covers servers that trickle bytes).
 * - `MTASTS_POLICY_INVALID`: the policy body does not parse (RFC 8461 §3.2). Treated exactly like a fetch failure.
 * - `MTASTS_FETCH_BACKOFF`: a fetch for this domain failed recently; no new attempt is made until the backoff
 *   expires (RFC 8461 §3.3). `cause` is the last failure.
 * - `MTASTS_ABORTED`: the caller's `AbortSignal` fired.
 * - `MTASTS_INVALID_OPTIONS`: an option of a factory (`createMtaSts()`, the transport, the guard, the hooks, the
 *   reporter, the Haraka plugin) is unknown, out of range or of the wrong type. `details` name the option, the value
 *   and what was expected. Fix the configuration.
 * - `MTASTS_MISSING_PEER`: the feature needs an optional peer dependency that is not installed (`details.package`).
 *   Install it.
 * - `MTASTS_STORE_CORRUPT`: a persisted policy cache (an SQLite file or row, a Redis entry) did not validate and was
 *   ignored (a damaged file is moved aside, `details.movedTo`). Nothing to do on the delivery path (policies are
 *   fetched again); look at `details.path` / `details.key` for the cause.
 * - `MTASTS_STORE_FAILED`: a policy store could not be read or written (I/O error, Redis error). The sender keeps
 *   working from memory; fix the store (permissions, disk space, Redis).
 * - `MTASTS_STORE_TIMEOUT`: a policy store call took longer than its timeout and was abandoned; same as above.
 */
export type MtaStsErrorCode =
  | 'MTASTS_INVALID_DOMAIN'
  | 'MTASTS_DNS_TEMPORARY'
  | 'MTASTS_TXT_INVALID'
  | 'MTASTS_TXT_MULTIPLE'
  | 'MTASTS_FETCH_FAILED'
  | 'MTASTS_WEBPKI_INVALID'
  | 'MTASTS_HTTP_STATUS'
  | 'MTASTS_HTTP_REDIRECT'
  | 'MTASTS_CONTENT_TYPE'
  | 'MTASTS_BODY_TOO_LARGE'
  | 'MTASTS_FETCH_TIMEOUT'
  | 'MTASTS_POLICY_INVALID'
  | 'MTASTS_FETCH_BACKOFF'
  | 'MTASTS_ABORTED'
  | 'MTASTS_INVALID_OPTIONS'
  | 'MTASTS_MISSING_PEER'
  | 'MTASTS_STORE_CORRUPT'
  | 'MTASTS_STORE_FAILED'
  | 'MTASTS_STORE_TIMEOUT';

/** The RFC 8460 result type each code maps to (undefined when the failure is not reportable). */
const RESULT_TYPE_BY_CODE: Readonly<Record<MtaStsErrorCode, TlsRptResultType | undefined>> = {
  MTASTS_INVALID_DOMAIN: undefined,
  MTASTS_DNS_TEMPORARY: 'sts-policy-fetch-error',
  MTASTS_TXT_INVALID: 'sts-policy-invalid',
  MTASTS_TXT_MULTIPLE: 'sts-policy-invalid',
  MTASTS_FETCH_FAILED: 'sts-policy-fetch-error',
  MTASTS_WEBPKI_INVALID: 'sts-webpki-invalid',
  MTASTS_HTTP_STATUS: 'sts-policy-fetch-error',
  MTASTS_HTTP_REDIRECT: 'sts-policy-fetch-error',
  MTASTS_CONTENT_TYPE: 'sts-policy-invalid',
  MTASTS_BODY_TOO_LARGE: 'sts-policy-invalid',
  MTASTS_FETCH_TIMEOUT: 'sts-policy-fetch-error',
  MTASTS_POLICY_INVALID: 'sts-policy-invalid',
  MTASTS_FETCH_BACKOFF: 'sts-policy-fetch-error',
  MTASTS_ABORTED: undefined,
  MTASTS_INVALID_OPTIONS: undefined,
  MTASTS_MISSING_PEER: undefined,
  MTASTS_STORE_CORRUPT: undefined,
  MTASTS_STORE_FAILED: undefined,
  MTASTS_STORE_TIMEOUT: undefined,
};

const TEMPORARY_CODES: ReadonlySet<MtaStsErrorCode> = new Set<MtaStsErrorCode>([
  'MTASTS_DNS_TEMPORARY',
  'MTASTS_FETCH_FAILED',
  'MTASTS_FETCH_TIMEOUT',
  'MTASTS_FETCH_BACKOFF',
  'MTASTS_HTTP_STATUS',
  'MTASTS_ABORTED',
  'MTASTS_STORE_FAILED',
  'MTASTS_STORE_TIMEOUT',
]);

/** Structured, JSON-safe detail attached to an error (HTTP status, content type, file path, option name, ...). */
export type ErrorDetails = Readonly<Record<string, string | number | boolean | undefined>>;

/** What every error of the library carries besides its code and message. */
export interface MtaStsSenderErrorOptions {
  cause?: unknown;
  /** The domain the failure concerns, when there is one. */
  domain?: string;
  /** The RFC 8460 result type (by default the one the code maps to, if any). */
  resultType?: TlsRptResultType;
  /** Extra structured detail (HTTP status, content type, byte counts, ...). */
  details?: ErrorDetails;
}

/** The JSON view of an error ({@link MtaStsSenderError.toJSON}). */
export interface MtaStsSenderErrorJSON<C extends string = string> {
  name: string;
  code: C;
  message: string;
  resultType?: TlsRptResultType;
  temporary: boolean;
  domain?: string;
  details: Record<string, string | number | boolean | undefined>;
}

/**
 * The base class of every error mta-sts-sender raises, from every subpath: `err instanceof MtaStsSenderError`
 * holds for {@link MtaStsError}, `TlsRptError` and `MtaStsDeliveryError` alike. Check `code`, never the message.
 */
export abstract class MtaStsSenderError<C extends string = string> extends Error {
  override readonly name: string = 'MtaStsSenderError';
  /** Stable, machine-readable; each subclass documents its codes and what the caller should do. */
  readonly code: C;
  /** RFC 8460 §4.3 result type for TLS reports, when the failure is reportable. */
  readonly resultType: TlsRptResultType | undefined;
  /** True when trying again later may succeed (DNS SERVFAIL, timeouts, network errors): defer, never bounce. */
  readonly temporary: boolean;
  /** The domain the failure concerns, when there is one. */
  readonly domain: string | undefined;
  /** Structured detail, JSON-safe. */
  readonly details: ErrorDetails;

  protected constructor(code: C, message: string, temporary: boolean, options: MtaStsSenderErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.resultType = options.resultType;
    this.temporary = temporary;
    this.domain = options.domain;
    this.details = Object.freeze({ ...(options.details ?? {}) });
  }

  /** A plain JSON-safe view (for logs, CLIs and events). */
  toJSON(): MtaStsSenderErrorJSON<C> {
    return {
      name: this.name,
      code: this.code,
      message: this.message,
      ...(this.resultType ? { resultType: this.resultType } : {}),
      temporary: this.temporary,
      ...(this.domain ? { domain: this.domain } : {}),
      details: { ...this.details },
    };
  }
}

/** Options of {@link MtaStsError}. */
export type MtaStsErrorOptions = MtaStsSenderErrorOptions;

/**
 * An error of MTA-STS policy discovery (RFC 8461 §3), of a policy store, or of a factory's options
 * (`MTASTS_INVALID_OPTIONS`, raised by every subpath at creation). Codes: {@link MtaStsErrorCode}.
 */
export class MtaStsError extends MtaStsSenderError<MtaStsErrorCode> {
  override readonly name: string = 'MtaStsError';

  constructor(code: MtaStsErrorCode, message: string, options: MtaStsErrorOptions = {}) {
    super(code, message, TEMPORARY_CODES.has(code), { ...options, resultType: options.resultType ?? RESULT_TYPE_BY_CODE[code] });
  }
}

/** undici's wrapper codes: they say "the socket failed", the cause chain says why. */
const GENERIC_CODES: ReadonlySet<string> = new Set(['UND_ERR_SOCKET', 'UND_ERR_ABORTED']);

/** How deep {@link causeChain} looks: errors wrap a handful of times, never more in practice. */
const MAX_CAUSE_DEPTH = 5;

/**
 * An error and its `cause`s, outermost first: the one walk of a cause chain in the library (bounded in depth,
 * safe against cycles). Yields objects only.
 */
export function* causeChain(error: unknown): Generator<{ code?: unknown; cause?: unknown; details?: unknown }> {
  const seen = new Set<unknown>();
  let current: unknown = error;
  for (let depth = 0; depth < MAX_CAUSE_DEPTH && typeof current === 'object' && current !== null && !seen.has(current); depth++) {
    seen.add(current);
    yield current as { code?: unknown; cause?: unknown; details?: unknown };
    current = (current as { cause?: unknown }).cause;
  }
}

/**
 * The most specific error code in an error's `cause` chain (a string is taken as a code). undici and TLS wrap the
 * code that tells what happened (`CERT_HAS_EXPIRED`, `ECONNREFUSED`) in generic ones; this finds it.
 */
export function errorCodeOf(error: unknown): string | undefined {
  if (typeof error === 'string') return error;
  let generic: string | undefined;
  for (const link of causeChain(error)) {
    if (typeof link.code !== 'string') continue;
    if (!GENERIC_CODES.has(link.code)) return link.code;
    generic ??= link.code;
  }
  return generic;
}
