/**
 * The RFC 8461 §4.2 verdict on a finished TLS session with an MX host, with its RFC 8460 result type.
 *
 * Under a policy, the MX host must offer STARTTLS, negotiate TLS 1.2 or later, and present a certificate chain to a
 * trusted root that is valid now and names the MX host that was dialled. The chain is judged by OpenSSL during the
 * handshake (`TLSSocket.authorized` / `authorizationError`): this library never validates a certificate path
 * itself, so it takes a session, never a bare certificate. On top of OpenSSL's verdict it checks the protocol
 * version and the strict DNS-ID host name (RFC 6125, no Common Name fallback).
 */
import type { PeerCertificate, TLSSocket } from 'node:tls';
import type { X509Certificate } from 'node:crypto';
import { errorCodeOf, type TlsRptResultType } from '../errors.js';
import { certificateMatchesHost, isCertificateForHostCheck } from './host-identity.js';
import { resultTypeForTlsError } from './tls-errors.js';

/** TLS protocol versions RFC 8461 §4.2 accepts. */
const ACCEPTED_PROTOCOLS = new Set(['TLSv1.2', 'TLSv1.3']);

/**
 * What a client knows about a finished TLS session when it has no `TLSSocket` to hand over. `authorized` and
 * `authorizationError` must be the TLS stack's own verdict on the chain (OpenSSL's, e.g. Node's
 * `socket.authorized`), obtained with the library's trust roots (`tlsOptions()`).
 */
export interface TlsSessionInfo {
  /** Negotiated protocol, e.g. `TLSv1.3` (`socket.getProtocol()`). */
  protocol: string | null | undefined;
  /** Whether the TLS stack validated the chain against the trust roots (`socket.authorized`). */
  authorized: boolean;
  /** Why it did not (`socket.authorizationError`). */
  authorizationError?: Error | string | null;
  /** The peer's leaf certificate, for the host name check. */
  peerCertificate?: PeerCertificate | X509Certificate | Buffer | string | null;
}

/** The verdict of {@link verifyTls}. */
export interface TlsVerification {
  ok: boolean;
  /** RFC 8460 §4.3.1 result type when `ok` is false. */
  resultType?: TlsRptResultType;
  /** Human-readable reason. */
  reason: string;
  /** Negotiated protocol version, when there was a session. */
  protocol?: string;
}

function isTlsSocket(value: unknown): value is TLSSocket {
  return typeof value === 'object' && value !== null && typeof (value as TLSSocket).getPeerCertificate === 'function' && typeof (value as TLSSocket).getProtocol === 'function';
}

function isSessionInfo(value: unknown): value is TlsSessionInfo {
  return typeof value === 'object' && value !== null && !Buffer.isBuffer(value) && typeof (value as TlsSessionInfo).authorized === 'boolean';
}

/**
 * Judges TLS with the MX host that was dialled against RFC 8461 §4.2:
 * - a `TLSSocket` (after STARTTLS) or {@link TlsSessionInfo}: protocol ≥ TLS 1.2, the handshake's chain verdict
 *   (`authorized`, i.e. OpenSSL's path validation) and the DNS-ID host check;
 * - `null` / `undefined`: STARTTLS was not offered or failed (`starttls-not-supported`).
 *
 * Anything else (notably a bare certificate) is refused with a `validation-failure` verdict: a certificate alone
 * says nothing about whether its chain is valid. Never throws.
 */
export function verifyTls(mxHost: string, session: TLSSocket | TlsSessionInfo | null | undefined): TlsVerification {
  if (session === null || session === undefined) {
    return { ok: false, resultType: 'starttls-not-supported', reason: `${mxHost} did not offer STARTTLS` };
  }
  if (!isTlsSocket(session) && !isSessionInfo(session)) {
    return {
      ok: false,
      resultType: 'validation-failure',
      reason: `no TLS session for ${mxHost}: pass the TLSSocket after the handshake (or its TlsSessionInfo); a bare certificate cannot be verified`,
    };
  }
  const info: TlsSessionInfo = isTlsSocket(session)
    ? { protocol: session.getProtocol(), authorized: session.authorized, authorizationError: session.authorizationError, peerCertificate: session.getPeerCertificate() }
    : session;
  return judgeSession(mxHost, info);
}

function judgeSession(mxHost: string, info: TlsSessionInfo): TlsVerification {
  const protocol = info.protocol ?? undefined;
  // §4.2: TLS 1.2 or later.
  if (!protocol || !ACCEPTED_PROTOCOLS.has(protocol)) {
    return { ok: false, resultType: 'validation-failure', reason: `${mxHost} negotiated ${protocol ?? 'no TLS'}; TLS 1.2 or later is required (RFC 8461 §4.2)`, ...(protocol ? { protocol } : {}) };
  }
  // §4.2: a chain to a trusted root, every certificate valid now: OpenSSL's verdict from the handshake.
  if (info.authorized !== true) {
    const why = info.authorizationError;
    const code = errorCodeOf(why);
    const resultType = resultTypeForTlsError(why ?? 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    return { ok: false, resultType, reason: `certificate of ${mxHost} did not validate${code ? `: ${code}` : ''} (RFC 8461 §4.2)`, protocol };
  }
  // §4.2: the certificate must name the MX host that was dialled (DNS-ID, no CN fallback).
  const cert = info.peerCertificate;
  if (!isCertificateForHostCheck(cert)) {
    return { ok: false, resultType: 'validation-failure', reason: `${mxHost} presented no certificate`, protocol };
  }
  if (!certificateMatchesHost(cert, mxHost)) {
    return { ok: false, resultType: 'certificate-host-mismatch', reason: `certificate of ${mxHost} does not name it in subjectAltName (RFC 8461 §4.2)`, protocol };
  }
  return { ok: true, reason: `${mxHost}: ${protocol}, certificate valid for the host`, protocol };
}
