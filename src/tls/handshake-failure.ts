/**
 * A failed STARTTLS or TLS handshake with an MX host, classified as an RFC 8460 §4.3.1 result type.
 *
 * Generic: it understands Node TLS errors (their `code`, also deep in a `cause` chain), OpenSSL errors (`library`,
 * `reason`), a socket's `authorizationError`, errors that already carry a `resultType`, and a refused STARTTLS
 * described by the client (RFC 8461 §4.2 requires STARTTLS). Each SMTP client's own error shapes are translated by
 * its integration (Nodemailer's: `integrations/nodemailer/tls-failure.ts`). Internal: not part of the public API.
 */
import { errorCodeOf, type TlsRptResultType } from '../errors.js';
import { isProtocolVersionError, resultTypeForTlsError } from './tls-errors.js';

/**
 * Default bound, in ms, of a client's wait for the reply to STARTTLS (the Nodemailer integrations' and the Haraka
 * plugin's `starttlsTimeoutMs`). A server answers STARTTLS at once; waiting a whole socket timeout (minutes) for a
 * swallowed command only hides a STARTTLS-stripping attacker. Unanswered: `starttls-not-supported` (RFC 8460 §4.3.1).
 */
export const DEFAULT_STARTTLS_TIMEOUT_MS = 5_000;

/** The server's answer to STARTTLS when it refused the upgrade (or did not offer it: no reply). */
export interface StartTlsRefusal {
  /** The SMTP reply code (e.g. 454), when the server answered. */
  replyCode?: number;
  /** The reply text, when the server answered. */
  text?: string;
}

/** What a failed handshake counts as: the result type, the most specific TLS code known and a reason for logs. */
export interface HandshakeFailureClass {
  resultType: TlsRptResultType;
  code?: string;
  reason: string;
}

/** Classifies a failed handshake with `host` (see the module documentation). `noReply`: STARTTLS went unanswered. */
export function classifyTlsFailure(host: string, error: unknown, tlsSocket?: { authorizationError?: unknown }, starttls?: StartTlsRefusal | { noReply: true }): HandshakeFailureClass {
  const e = (typeof error === 'object' && error !== null ? error : {}) as { resultType?: unknown; message?: unknown };
  const message = typeof e.message === 'string' ? e.message : String(error);
  if (starttls && 'noReply' in starttls) {
    // RFC 8461 §4.2 requires STARTTLS; a command swallowed (by the MX or a path attacker) is not supported.
    const detail = typeof e.message === 'string' && e.message !== '' ? ` (${e.message.slice(0, 120)})` : '';
    return { resultType: 'starttls-not-supported', reason: `${host} did not answer STARTTLS${detail}` };
  }
  if (starttls) {
    const text = starttls.text?.trim().slice(0, 200);
    return { resultType: 'starttls-not-supported', reason: `${host} refused STARTTLS${text ? `: ${text}` : starttls.replyCode !== undefined ? ` (${starttls.replyCode})` : ''}` };
  }
  const code = tlsFailureCode(error, tlsSocket);
  if (typeof e.resultType === 'string') return { resultType: e.resultType as TlsRptResultType, ...(code ? { code } : {}), reason: message };
  if (isProtocolVersionError(code)) {
    return { resultType: 'validation-failure', ...(code ? { code } : {}), reason: `${host} does not support TLS 1.2 or later (${code})` };
  }
  const resultType = resultTypeForTlsError(code);
  return { resultType, ...(code ? { code } : {}), reason: `TLS handshake with ${host} failed: ${code ?? message}` };
}

/**
 * The most specific TLS code of a failed handshake: the error's own (through its `cause` chain); else the socket's
 * `authorizationError` (set by Node for certificate failures); else Node's code rule for an OpenSSL error
 * (`ERR_SSL_` + its `reason`, e.g. `ERR_SSL_UNSUPPORTED_PROTOCOL`).
 */
export function tlsFailureCode(error: unknown, tlsSocket?: { authorizationError?: unknown }): string | undefined {
  const code = errorCodeOf(error);
  if (code !== undefined) return code;
  const authorization = errorCodeOf(tlsSocket?.authorizationError);
  if (authorization !== undefined && authorization !== '') return authorization;
  const ssl = error as { library?: unknown; reason?: unknown } | null;
  if (typeof ssl === 'object' && ssl !== null && ssl.library === 'SSL routines' && typeof ssl.reason === 'string') return `ERR_SSL_${ssl.reason.toUpperCase().replace(/[\s-]+/g, '_')}`;
  return undefined;
}
