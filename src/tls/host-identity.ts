/**
 * The MX host name check of RFC 8461 §4.2 (RFC 6125 DNS-ID rules).
 *
 * A certificate is valid for the MX host that was dialled when one of its subjectAltName DNS names equals the host
 * name or is a wildcard `*.<parent>` covering exactly one leftmost label. The subject Common Name is never consulted
 * (RFC 6125 §6.4.4 allows that fallback only without SANs; RFC 8461 §4.2 requires the DNS-ID). IP addresses are not
 * host names and never match. The matching itself is OpenSSL's (`X509Certificate.checkHost`), configured strictly.
 */
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';

/** A certificate as a TLS stack may hand it over: Node's `PeerCertificate`, an `X509Certificate`, PEM or DER. */
export type CertificateForHostCheck = X509Certificate | PeerCertificate | Buffer | string;

/**
 * True when `cert` names `host` per RFC 8461 §4.2 / RFC 6125: a subjectAltName DNS-ID equal to the host or a
 * wildcard `*.<parent>` covering exactly one label. This checks the name only: whether the certificate chains to a
 * trusted root is the TLS handshake's job (OpenSSL), see `verifyTls`.
 */
export function certificateMatchesHost(cert: CertificateForHostCheck, host: string): boolean {
  if (typeof host !== 'string' || host.length === 0) return false;
  const x509 = toX509(cert);
  if (!x509) return false;
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  // checkHost with subject 'never' ignores the CN (RFC 6125 §6.4.4 fallback disabled); wildcards only as a whole
  // leftmost label and never across several labels (RFC 8461 §4.1, §4.2).
  return x509.checkHost(name, { subject: 'never', wildcards: true, partialWildcards: false, multiLabelWildcards: false }) !== undefined;
}

/** True when `cert` is something {@link certificateMatchesHost} can read. */
export function isCertificateForHostCheck(cert: unknown): cert is CertificateForHostCheck {
  return typeof cert === 'string' || Buffer.isBuffer(cert) || cert instanceof X509Certificate || (typeof cert === 'object' && cert !== null && Buffer.isBuffer((cert as PeerCertificate).raw));
}

function toX509(cert: CertificateForHostCheck): X509Certificate | undefined {
  try {
    if (cert instanceof X509Certificate) return cert;
    if (typeof cert === 'string' || Buffer.isBuffer(cert)) return new X509Certificate(cert);
    if (cert && Buffer.isBuffer(cert.raw)) return new X509Certificate(cert.raw);
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
  const error = new Error(`certificate is not valid for ${host}: no matching DNS name in subjectAltName (RFC 8461 §4.2)`) as Error & { code: string; host: string };
  error.code = 'ERR_TLS_CERT_ALTNAME_INVALID';
  error.host = host;
  return error;
}
