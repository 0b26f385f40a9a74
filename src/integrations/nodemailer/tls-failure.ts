/**
 * Nodemailer's SMTP client errors, translated for the generic hooks (`MtaStsHooks.handshakeFailed`).
 *
 * Nodemailer wraps a failed STARTTLS or TLS handshake in codes of its own: `ETLS` with `command: 'STARTTLS'` and the
 * server's `response` / `responseCode` when the server refused STARTTLS; `ETLS` / `ESOCKET` with the TLS code moved
 * to `originalCode` (Nodemailer 7 and later) or replaced outright (before 7). The hooks know none of this: they take
 * a TLS error (its `code`) and, for a refusal, the server's reply (RFC 8461 §4.2 requires STARTTLS; RFC 8460
 * §4.3.1 `starttls-not-supported`).
 */
import type { StartTlsRefusal } from '../../tls/handshake-failure.js';

/** Codes Nodemailer wraps TLS and connection errors in (the original code, when kept, is in `originalCode`). */
const NODEMAILER_WRAPPER_CODES: ReadonlySet<string> = new Set(['ESOCKET', 'ETLS', 'ECONNECTION', 'EPROTOCOL']);

/** What `handshakeFailed` takes for a Nodemailer error: the TLS error itself, and the refusal of STARTTLS if any. */
export interface NodemailerHandshakeFailure {
  /** The error for `handshakeFailed(candidate, error, ...)`: the TLS error, without Nodemailer's wrapper code. */
  error: unknown;
  /** For the `context` of `handshakeFailed`: set when the server refused STARTTLS. */
  starttlsRefused?: StartTlsRefusal;
}

type NodemailerError = { message?: unknown; code?: unknown; originalCode?: unknown; command?: unknown; response?: unknown; responseCode?: unknown; library?: unknown; reason?: unknown; cause?: unknown; resultType?: unknown };

/**
 * Translates an error of Nodemailer's `SMTPConnection` (or transport) from a failed STARTTLS / TLS handshake:
 * `hooks.handshakeFailed(candidate, f.error, { ...context, starttlsRefused: f.starttlsRefused })`.
 */
export function nodemailerHandshakeFailure(error: unknown): NodemailerHandshakeFailure {
  if (typeof error !== 'object' || error === null) return { error };
  const e = error as NodemailerError;
  const message = typeof e.message === 'string' ? e.message : String(error);
  if (e.command === 'STARTTLS' && typeof e.response === 'string') {
    return { error: { message }, starttlsRefused: { text: e.response, ...(typeof e.responseCode === 'number' ? { replyCode: e.responseCode } : {}) } };
  }
  if (typeof e.code !== 'string' || !NODEMAILER_WRAPPER_CODES.has(e.code)) return { error };
  if (typeof e.originalCode === 'string') return { error: { message, code: e.originalCode, cause: e.cause } };
  // Nodemailer before 7 replaced the TLS code: what is left is OpenSSL's library / reason and the cause.
  return { error: { message, library: e.library, reason: e.reason, cause: e.cause, ...(typeof e.resultType === 'string' ? { resultType: e.resultType } : {}) } };
}
