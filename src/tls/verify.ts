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
import type { PeerCertificate, DetailedPeerCertificate, TLSSocket, ConnectionOptions } from 'node:tls';
import * as tls from 'node:tls';
import { errorCodeOf, type TlsRptResultType } from '../errors.js';

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
  const code = errorCodeOf(error);
  if (code !== undefined) {
    if (EXPIRED.has(code)) return 'certificate-expired';
    if (NOT_TRUSTED.has(code)) return 'certificate-not-trusted';
    if (HOST_MISMATCH.has(code)) return 'certificate-host-mismatch';
  }
  return 'validation-failure';
}


/** True when a TLS error means the peer only speaks a protocol version below TLS 1.2. */
export function isProtocolVersionError(error: unknown): boolean {
  const code = errorCodeOf(error);
  return code !== undefined && PROTOCOL.has(code);
}

/**
 * Checks that `cert` is valid for `host` per RFC 8461 §4.2 / RFC 6125: a subjectAltName DNS-ID equal to the host
 * or a wildcard `*.<parent>` covering exactly one label. The subject Common Name is never used. IP addresses are
 * not host names and never match.
 */
export function certificateMatchesHost(cert: X509Certificate | PeerCertificate | Buffer | string, host: string): boolean {
  if (typeof host !== 'string' || host.length === 0) return false;
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

const contextsByRoots = new WeakMap<object, Map<string, tls.SecureContext>>();
const systemRootContexts = new Map<string, tls.SecureContext>();

/**
 * One `SecureContext` per trust-root array and protocol bounds, shared by every connection that uses them (policy
 * fetches and MX sessions alike): Node otherwise parses every root PEM (~140 plus `ca`) on each handshake.
 */
export function sharedSecureContext(ca: tls.SecureContextOptions['ca'], minVersion: tls.SecureVersion | undefined, maxVersion?: tls.SecureVersion): tls.SecureContext {
  const key = `${minVersion ?? ''}|${maxVersion ?? ''}`;
  let byVersion: Map<string, tls.SecureContext> | undefined;
  if (ca === undefined) byVersion = systemRootContexts;
  else if (typeof ca === 'object') {
    byVersion = contextsByRoots.get(ca);
    if (!byVersion) {
      byVersion = new Map();
      contextsByRoots.set(ca, byVersion);
    }
  }
  const cached = byVersion?.get(key);
  if (cached) return cached;
  const context = tls.createSecureContext({ ...(ca !== undefined ? { ca } : {}), ...(minVersion ? { minVersion } : {}), ...(maxVersion ? { maxVersion } : {}) });
  byVersion?.set(key, context);
  return context;
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

function isSessionInfo(value: unknown): value is TlsSessionInfo {
  return typeof value === 'object' && value !== null && typeof (value as TlsSessionInfo).authorized === 'boolean' && !Buffer.isBuffer(value) && !(value instanceof X509Certificate);
}

/** A certificate as a client may hold it: Node's `PeerCertificate` (detailed or not), an `X509Certificate`, PEM or DER. */
export type CertificateEvidence = PeerCertificate | DetailedPeerCertificate | X509Certificate | Buffer | string;

/**
 * A set of trust anchors, parsed once, for verifying a certificate chain without a TLS session (clients that hand
 * over only the peer certificate, e.g. an MTA's TLS layer).
 */
export class TrustStore {
  readonly #bySubject = new Map<string, X509Certificate[]>();

  /** @param roots PEM certificates; default Node's bundled roots. */
  constructor(roots: ReadonlyArray<string | Buffer> = tls.rootCertificates) {
    for (const pem of roots) {
      for (const one of splitPem(pem)) {
        try {
          const cert = new X509Certificate(one);
          const list = this.#bySubject.get(cert.subject) ?? [];
          list.push(cert);
          this.#bySubject.set(cert.subject, list);
        } catch {
          // An unparsable root is ignored: it could not anchor anything.
        }
      }
    }
  }

  /** The trusted root that issued `cert`, if any. */
  issuerOf(cert: X509Certificate): X509Certificate | undefined {
    for (const root of this.#bySubject.get(cert.issuer) ?? []) {
      if (cert.checkIssued(root) && cert.verify(root.publicKey)) return root;
    }
    return undefined;
  }

  /** True when `cert` itself is one of the anchors. */
  contains(cert: X509Certificate): boolean {
    return (this.#bySubject.get(cert.subject) ?? []).some((root) => root.fingerprint256 === cert.fingerprint256);
  }
}

function splitPem(pem: string | Buffer): Array<string | Buffer> {
  if (Buffer.isBuffer(pem) && !pem.includes('-----BEGIN')) return [pem];
  const text = pem.toString();
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

const MAX_CHAIN = 10;

/**
 * Verifies a certificate (and, for a `DetailedPeerCertificate`, the chain it carries) against a trust store, the
 * clock, and the MX host name, per RFC 8461 §4.2. The TLS protocol version is unknown here and not judged.
 */
export function verifyCertificate(mxHost: string, evidence: CertificateEvidence, trust: TrustStore, now = Date.now()): TlsVerification {
  const leaf = toX509(evidence as X509Certificate | PeerCertificate | Buffer | string);
  if (!leaf) return { ok: false, resultType: 'validation-failure', reason: `no parsable certificate for ${mxHost}` };
  const intermediates: X509Certificate[] = [];
  let link = (evidence as DetailedPeerCertificate).issuerCertificate;
  for (let i = 0; link && i < MAX_CHAIN && link !== (link.issuerCertificate ?? link); i++) {
    const x = toX509(link);
    if (x) intermediates.push(x);
    link = link.issuerCertificate;
  }
  // §4.2: not expired (every certificate on the path).
  let current = leaf;
  for (let depth = 0; depth <= MAX_CHAIN; depth++) {
    const validity = checkValidity(current, now);
    if (validity) return { ok: false, resultType: validity.resultType, reason: `certificate ${current.subject.replace(/\n/g, ', ')} for ${mxHost}: ${validity.reason}` };
    if (trust.contains(current) || trust.issuerOf(current)) break;
    const parent = intermediates.find((c) => c !== current && current.checkIssued(c) && current.verify(c.publicKey));
    if (!parent || depth === MAX_CHAIN) {
      // §4.2: the chain must lead to a trusted root.
      return { ok: false, resultType: 'certificate-not-trusted', reason: `certificate of ${mxHost} does not chain to a trusted root` };
    }
    current = parent;
  }
  // §4.2: the certificate must name the dialled MX host (DNS-ID, no CN fallback).
  if (!certificateMatchesHost(leaf, mxHost)) {
    return { ok: false, resultType: 'certificate-host-mismatch', reason: `certificate of ${mxHost} does not name it in subjectAltName` };
  }
  return { ok: true, reason: `${mxHost}: certificate chains to a trusted root and is valid for the host` };
}

function checkValidity(cert: X509Certificate, now: number): { resultType: TlsRptResultType; reason: string } | undefined {
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  if (Number.isFinite(to) && now > to) return { resultType: 'certificate-expired', reason: `expired ${cert.validTo}` };
  if (Number.isFinite(from) && now < from) return { resultType: 'validation-failure', reason: `not valid before ${cert.validFrom}` };
  return undefined;
}

let defaultTrust: TrustStore | undefined;

/**
 * Checks TLS evidence for the MX host that was dialled against RFC 8461 §4.2:
 * - a `TLSSocket` (after STARTTLS) or {@link TlsSessionInfo}: protocol ≥ TLS 1.2, the handshake's chain
 *   verification (`authorized`), and the DNS-ID host check;
 * - a bare certificate ({@link CertificateEvidence}): the chain is verified here against `trust` (default: Node's
 *   bundled roots), with the validity dates and the host check;
 * - `null` / `undefined`: STARTTLS was not offered or failed (`starttls-not-supported`).
 */
export function verifyTls(mxHost: string, evidence: TLSSocket | TlsSessionInfo | CertificateEvidence | null | undefined, trust?: TrustStore): TlsVerification {
  if (evidence === null || evidence === undefined) {
    return { ok: false, resultType: 'starttls-not-supported', reason: `${mxHost} did not offer STARTTLS` };
  }
  if (!isTlsSocket(evidence) && !isSessionInfo(evidence)) {
    return verifyCertificate(mxHost, evidence, trust ?? (defaultTrust ??= new TrustStore()));
  }
  const info: TlsSessionInfo = isTlsSocket(evidence)
    ? { protocol: evidence.getProtocol(), authorized: evidence.authorized, authorizationError: evidence.authorizationError, peerCertificate: evidence.getPeerCertificate() }
    : evidence;
  const protocol = info.protocol ?? undefined;
  // §4.2: TLS 1.2 or later.
  if (!protocol || !ACCEPTED_PROTOCOLS.has(protocol)) {
    return { ok: false, resultType: 'validation-failure', reason: `${mxHost} negotiated ${protocol ?? 'no TLS'}; TLS 1.2 or later is required`, ...(protocol ? { protocol } : {}) };
  }
  // §4.2: chain to a trusted root, not expired.
  if (!info.authorized) {
    const why = info.authorizationError;
    const code = errorCodeOf(why);
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
