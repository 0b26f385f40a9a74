/**
 * Short, stable `failure-reason-code` values for TLS reports (RFC 8460 §4.3: "sending MTAs SHOULD include a
 * failure-reason-code", a free-form, short, stable reason a domain owner can count and grep).
 *
 * The codes are lower-case phrases or the library's own error codes, never messages with host names or times, so
 * that identical failures fold into one failure detail (§4.4 counts sessions per distinct detail):
 * - an MX host not covered by the policy: `mx not in policy` (RFC 8461 §4.1);
 * - a TLS failure: the OpenSSL / Node code (`CERT_HAS_EXPIRED`, `ERR_SSL_UNSUPPORTED_PROTOCOL`, ...), or, when the
 *   check was ours (`verifyTls`), `certificate expired`, `certificate not yet valid`, `certificate name mismatch`,
 *   `certificate not trusted`, `tls version TLSv1.1`, `starttls not offered`, `starttls refused 454`,
 *   `starttls no reply`;
 * - a policy failure (RFC 8461 §3.3): `http status 404`, `http redirect 301`, `content type text/html`,
 *   `policy too large`, `policy fetch timeout`, `policy syntax error`, the policy host's certificate code
 *   (`CERT_HAS_EXPIRED`), the connection error (`ECONNREFUSED`), `txt record invalid`, `multiple txt records`,
 *   `dns temporary failure`;
 * - a session delivered under a cached policy whose refresh failed gets the suffix
 *   {@link FALLBACK_TO_CACHED_POLICY} (see `markFallbackToCachedPolicy`).
 */
import { causeChain, type TlsRptResultType } from '../errors.js';

/**
 * Suffix of the `failure-reason-code` of a session delivered under a cached MTA-STS policy because refreshing it
 * failed (RFC 8461 §3.3 keeps using the cached policy). The policy domain learns that its policy host is failing
 * although mail still flows.
 */
export const FALLBACK_TO_CACHED_POLICY = '+fallback-to-cached-policy';

/** Longest reason code produced here (the aggregation cap `maxFieldLength` still applies). */
const MAX_REASON = 120;

/** What is known of a failed policy discovery (an `MtaStsError`, structurally). */
export interface PolicyErrorLike {
  code?: unknown;
  details?: Readonly<Record<string, unknown>>;
  cause?: unknown;
  message?: unknown;
}

const clip = (s: string): string => s.replace(/\s+/g, ' ').trim().slice(0, MAX_REASON);

/**
 * The reason code of a failed policy discovery (RFC 8461 §3.1–§3.3), or undefined when nothing is known. A
 * backoff (the fetch was not retried, RFC 8461 §3.3) gives the reason of the failure it carries as `cause`.
 */
export function policyFailureReason(error: PolicyErrorLike | undefined): string | undefined {
  let backoff = false;
  for (const link of causeChain(error)) {
    const e = link as PolicyErrorLike;
    if (e.code !== 'MTASTS_FETCH_BACKOFF') return ownReason(e) ?? (backoff ? 'policy fetch failed' : undefined);
    backoff = true;
  }
  return backoff ? 'policy fetch failed' : undefined;
}

/** The reason code of one discovery error, by its own code and details. */
function ownReason(error: PolicyErrorLike): string | undefined {
  const d = (error.details ?? {}) as Record<string, unknown>;
  switch (error.code) {
    case 'MTASTS_HTTP_STATUS':
      return typeof d.status === 'number' ? `http status ${d.status}` : 'http status';
    case 'MTASTS_HTTP_REDIRECT':
      return typeof d.status === 'number' ? `http redirect ${d.status}` : 'http redirect';
    case 'MTASTS_CONTENT_TYPE':
      return typeof d.contentType === 'string' ? clip(`content type ${d.contentType.split(';')[0]}`) : 'content type missing';
    case 'MTASTS_BODY_TOO_LARGE':
      return 'policy too large';
    case 'MTASTS_FETCH_TIMEOUT':
      return 'policy fetch timeout';
    case 'MTASTS_POLICY_INVALID':
      return 'policy syntax error';
    case 'MTASTS_WEBPKI_INVALID':
      return typeof d.tlsCode === 'string' ? clip(d.tlsCode) : 'policy host certificate invalid';
    case 'MTASTS_FETCH_FAILED':
      return typeof d.reason === 'string' && /^[A-Z0-9_]+$/.test(d.reason) ? d.reason : 'policy fetch failed';
    case 'MTASTS_TXT_INVALID':
      return 'txt record invalid';
    case 'MTASTS_TXT_MULTIPLE':
      return 'multiple txt records';
    case 'MTASTS_DNS_TEMPORARY':
      return 'dns temporary failure';
    default:
      return undefined;
  }
}

/** What is known of a failed TLS session. */
export interface SessionFailureFacts {
  resultType: TlsRptResultType;
  /** A TLS / OpenSSL error code, when the TLS stack produced one. */
  code?: string;
  /** The MX host is not covered by the policy (RFC 8461 §4.1). */
  notInPolicy?: boolean;
  /** The negotiated protocol (`TLSv1.1`), when a session was established. */
  protocol?: string;
  /** The verification's human reason (used only to tell "not yet valid" from other validation failures). */
  reason?: string;
  /** The SMTP reply code to STARTTLS, when the server refused it. */
  starttlsReply?: number;
  /** STARTTLS was sent and never answered. */
  starttlsNoReply?: boolean;
}

/** The reason code of a failed session (RFC 8460 §4.3). Always a short string. */
export function sessionFailureReason(facts: SessionFailureFacts): string {
  if (facts.notInPolicy) return 'mx not in policy';
  if (facts.code) return clip(facts.code);
  switch (facts.resultType) {
    case 'starttls-not-supported':
      if (facts.starttlsNoReply) return 'starttls no reply';
      return facts.starttlsReply !== undefined ? `starttls refused ${facts.starttlsReply}` : 'starttls not offered';
    case 'certificate-expired':
      return 'certificate expired';
    case 'certificate-host-mismatch':
      return 'certificate name mismatch';
    case 'certificate-not-trusted':
      return 'certificate not trusted';
    default:
      if (facts.protocol && !/^TLSv1\.[23]$/.test(facts.protocol)) return clip(`tls version ${facts.protocol}`);
      if (facts.reason && /not valid before/.test(facts.reason)) return 'certificate not yet valid';
      if (facts.reason && /no certificate/.test(facts.reason)) return 'no certificate';
      return facts.resultType;
  }
}

/** Appends {@link FALLBACK_TO_CACHED_POLICY} to a reason code (once). */
export function markFallbackToCachedPolicy(reason: string | undefined): string {
  if (reason?.endsWith(FALLBACK_TO_CACHED_POLICY)) return reason;
  return reason ? `${reason} ${FALLBACK_TO_CACHED_POLICY}` : FALLBACK_TO_CACHED_POLICY;
}
