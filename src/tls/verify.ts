/**
 * MX certificate validation (RFC 8461 §4.2) and the mapping of TLS failures to RFC 8460 result types.
 *
 * Under a policy, the MX host must offer STARTTLS, negotiate TLS 1.2 or later, and present a certificate chain to
 * a trusted root that is valid now and names the MX host that was dialled, as a DNS-ID in subjectAltName
 * (RFC 6125: the Common Name is not consulted, and a wildcard covers exactly one leftmost label). This module
 * builds the `tls.connect` options that make Node enforce that, and checks a finished TLS session after the fact
 * (for `testing` mode, and for clients that did their own handshake).
 */
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate, TLSSocket, ConnectionOptions } from 'node:tls';
import * as tls from 'node:tls';
import type { TlsRptResultType } from '../errors.js';

/** TLS protocol versions RFC 8461 §4.2 accepts. */
const ACCEPTED_PROTOCOLS = new Set(['TLSv1.2', 'TLSv1.3']);

/** OpenSSL / Node verification codes that mean "chain does not lead to a trusted root". */
const NOT_TRUSTED = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
  'CERT_REVOKED',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
]);
const EXPIRED = new Set(['CERT_HAS_EXPIRED']);
const HOST_MISMATCH = new Set(['ERR_TLS_CERT_ALTNAME_INVALID', 'HOSTNAME_MISMATCH']);
const PROTOCOL = new Set([
  'ERR_SSL_UNSUPPORTED_PROTOCOL',
  'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION',
  'ERR_SSL_NO_PROTOCOLS_AVAILABLE',
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_SSL_VERSION_TOO_LOW',
  'ERR_SSL_UNSUPPORTED_PROTOCOL_VERSION',
]);

/**
 * Maps a TLS error (from a failed handshake with `rejectUnauthorized`, or a socket's `authorizationError`) to the
 * RFC 8460 §4.3.1 result type.
 */
export function resultTypeForTlsError(error: unknown): TlsRptResultType {
  const code = errorCode(error);
  if (code !== undefined) {
    if (EXPIRED.has(code)) return 'certificate-expired';
    if (NOT_TRUSTED.has(code)) return 'certificate-not-trusted';
    if (HOST_MISMATCH.has(code)) return 'certificate-host-mismatch';
  }
  return 'validation-failure';
}

function errorCode(error: unknown): string | undefined {
  if (typeof error === 'string') return error;
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') return code;
  const cause = (error as { cause?: unknown }).cause;
  return cause !== undefined && cause !== error ? errorCode(cause) : undefined;
}

/** True when a TLS error means the peer only speaks a protocol version below TLS 1.2. */
export function isProtocolVersionError(error: unknown): boolean {
  const code = errorCode(error);
  return code !== undefined && PROTOCOL.has(code);
}

/**
 * Checks that `cert` is valid for `host` per RFC 8461 §4.2 / RFC 6125: a subjectAltName DNS-ID equal to the host
 * or a wildcard `*.<parent>` covering exactly one label. The subject Common Name is never used. IP addresses are
 * not host names and never match.
 */
export function certificateMatchesHost(cert: X509Certificate | PeerCertificate | Buffer | string, host: string): boolean {
  const x509 = toX509(cert);
  if (!x509) return false;
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  // checkHost with subject 'never' ignores the CN (RFC 6125 §6.4.4 fallback disabled); wildcards only as a whole
  // leftmost label and never across several labels (RFC 8461 §4.2 / §4.1).
  return x509.checkHost(name, { subject: 'never', wildcards: true, partialWildcards: false, multiLabelWildcards: false }) !== undefined;
}

function toX509(cert: X509Certificate | PeerCertificate | Buffer | string): X509Certificate | undefined {
  try {
    if (cert instanceof X509Certificate) return cert;
    if (typeof cert === 'string' || Buffer.isBuffer(cert)) return new X509Certificate(cert);
    if (cert && Buffer.isBuffer((cert as PeerCertificate).raw)) return new X509Certificate((cert as PeerCertificate).raw);
  } catch {
    return undefined;
  }
  return undefined;
}

/**
 * A `checkServerIdentity` for `tls.connect` that applies {@link certificateMatchesHost} instead of Node's default
 * (which falls back to the Common Name when there is no subjectAltName).
 */
export function strictCheckServerIdentity(host: string, cert: PeerCertificate): Error | undefined {
  if (certificateMatchesHost(cert, host)) return undefined;
  const error = new Error(`certificate is not valid for ${host}: no matching DNS name in subjectAltName`) as Error & { code: string; host: string };
  error.code = 'ERR_TLS_CERT_ALTNAME_INVALID';
  error.host = host;
  return error;
}

/** The trust roots to use: Node's bundled roots plus `extra`, or only `extra` when `systemRoots` is false. */
export function buildTrustRoots(extra: readonly (string | Buffer)[] | undefined, systemRoots = true): (string | Buffer)[] | undefined {
  if (!extra || extra.length === 0) return systemRoots ? undefined : [];
  return systemRoots ? [...tls.rootCertificates, ...extra] : [...extra];
}

/** Options the library hands to `tls.connect` (or an SMTP client) for one MX host. */
export interface MxTlsOptions extends ConnectionOptions {
  /** SNI and the name the certificate is checked against: the MX host name, even when connecting by IP (§4.2). */
  servername: string;
  minVersion: tls.SecureVersion;
  /** True under `enforce`: the handshake fails for an untrusted, expired or mismatched certificate. */
  rejectUnauthorized: boolean;
  checkServerIdentity: (host: string, cert: PeerCertificate) => Error | undefined;
}

/**
 * Builds the TLS options for one MX host. `strict` (enforce) makes Node abort the handshake on any validation
 * failure; otherwise the session proceeds and {@link verifyTls} tells what would have failed (testing mode).
 */
export function mxTlsOptions(mxHost: string, ca: (string | Buffer)[] | undefined, strict: boolean): MxTlsOptions {
  const options: MxTlsOptions = {
    servername: mxHost, // §4.2: SNI and verification use the MX host name
    minVersion: 'TLSv1.2', // §4.2: TLS 1.2 or later
    rejectUnauthorized: strict,
    checkServerIdentity: strictCheckServerIdentity,
  };
  if (ca !== undefined) options.ca = ca;
  return options;
}

/** What a client knows about a finished TLS session, when it has no `TLSSocket` to hand over. */
export interface TlsSessionInfo {
  /** Negotiated protocol, e.g. `TLSv1.3` (`socket.getProtocol()`). */
  protocol: string | null | undefined;
  /** Whether the chain validated against the trust roots (`socket.authorized`). */
  authorized: boolean;
  /** Why it did not (`socket.authorizationError`). */
  authorizationError?: Error | string | null;
  /** The peer's leaf certificate. */
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

/**
 * Checks a finished TLS session against RFC 8461 §4.2 for the MX host that was dialled. `null` / `undefined`
 * stands for "STARTTLS was not offered or failed" (`starttls-not-supported`).
 */
export function verifyTls(mxHost: string, session: TLSSocket | TlsSessionInfo | null | undefined): TlsVerification {
  if (session === null || session === undefined) {
    return { ok: false, resultType: 'starttls-not-supported', reason: `${mxHost} did not offer STARTTLS` };
  }
  const info: TlsSessionInfo = isTlsSocket(session)
    ? { protocol: session.getProtocol(), authorized: session.authorized, authorizationError: session.authorizationError, peerCertificate: session.getPeerCertificate() }
    : session;
  const protocol = info.protocol ?? undefined;
  // §4.2: TLS 1.2 or later.
  if (!protocol || !ACCEPTED_PROTOCOLS.has(protocol)) {
    return { ok: false, resultType: 'validation-failure', reason: `${mxHost} negotiated ${protocol ?? 'no TLS'}; TLS 1.2 or later is required`, ...(protocol ? { protocol } : {}) };
  }
  // §4.2: chain to a trusted root, not expired.
  if (!info.authorized) {
    const why = info.authorizationError;
    const code = errorCode(why);
    const resultType = resultTypeForTlsError(why ?? 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    return { ok: false, resultType, reason: `certificate of ${mxHost} did not validate${code ? `: ${code}` : ''}`, protocol };
  }
  // §4.2: the certificate must name the MX host that was dialled (DNS-ID, no CN fallback).
  const cert = info.peerCertificate;
  if (!cert || (typeof cert === 'object' && !(cert instanceof X509Certificate) && !Buffer.isBuffer(cert) && !(cert as PeerCertificate).raw)) {
    return { ok: false, resultType: 'validation-failure', reason: `${mxHost} presented no certificate`, protocol };
  }
  if (!certificateMatchesHost(cert, mxHost)) {
    return { ok: false, resultType: 'certificate-host-mismatch', reason: `certificate of ${mxHost} does not name it in subjectAltName`, protocol };
  }
  return { ok: true, reason: `${mxHost}: ${protocol}, certificate valid for the host`, protocol };
}
