/**
 * The RFC 8460 §4.3.1 result type of a TLS failure.
 *
 * OpenSSL decides whether a certificate chain is valid (during the handshake); this module only names its verdict
 * for TLS reporting: an expired certificate anywhere in the chain is `certificate-expired`, a chain that does not
 * lead to a trusted root through valid CA certificates is `certificate-not-trusted`, a name mismatch is
 * `certificate-host-mismatch`, and anything else (not yet valid, an unspecified verification error, an old
 * protocol) is `validation-failure`.
 */
import { errorCodeOf, type TlsRptResultType } from '../errors.js';

/** OpenSSL / Node verification codes that mean "the chain does not lead to a trusted root through valid CAs". */
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
  'KEYUSAGE_NO_CERTSIGN',
  'CERT_REVOKED',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
]);
const EXPIRED = new Set(['CERT_HAS_EXPIRED']);
const HOST_MISMATCH = new Set(['ERR_TLS_CERT_ALTNAME_INVALID', 'HOSTNAME_MISMATCH']);
/**
 * The other verification codes Node reports for OpenSSL's `X509_V_ERR_*` (validity, CRL, chain length...).
 * `UNSPECIFIED` is what Node reports for every OpenSSL code it has no name for, such as KEYUSAGE_NO_CERTSIGN (an
 * issuer without keyCertSign, e.g. an ordinary leaf used as a CA).
 */
const OTHER_VERIFICATION = new Set([
  'UNSPECIFIED',
  'CERT_NOT_YET_VALID',
  'CERT_CHAIN_TOO_LONG',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'UNABLE_TO_GET_CRL',
  'UNABLE_TO_DECRYPT_CRL_SIGNATURE',
  'CRL_SIGNATURE_FAILURE',
  'CRL_NOT_YET_VALID',
  'CRL_HAS_EXPIRED',
  'ERROR_IN_CRL_LAST_UPDATE_FIELD',
  'ERROR_IN_CRL_NEXT_UPDATE_FIELD',
]);
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

/**
 * True when a TLS error is the handshake's certificate verdict (OpenSSL path validation or the host name check), as
 * opposed to a network or protocol failure: for a policy host that is `sts-webpki-invalid` (RFC 8461 §3.3).
 */
export function isCertificateVerificationError(error: unknown): boolean {
  const code = errorCodeOf(error);
  return code !== undefined && (NOT_TRUSTED.has(code) || EXPIRED.has(code) || HOST_MISMATCH.has(code) || OTHER_VERIFICATION.has(code));
}

/** True when a TLS error means the peer only speaks a protocol version below TLS 1.2 (RFC 8461 §4.2). */
export function isProtocolVersionError(error: unknown): boolean {
  const code = errorCodeOf(error);
  return code !== undefined && PROTOCOL.has(code);
}
