/**
 * The `tls.connect` options that make the TLS handshake enforce RFC 8461 §4.2 (MX hosts) and §3.3 (policy hosts).
 *
 * Certificate path validation is OpenSSL's, in the handshake: a chain to a trusted root through CA certificates
 * (basic constraints, keyCertSign, path length), serverAuth purpose, every certificate within its validity period.
 * The library adds what Node's defaults lack: TLS 1.2 as the floor, SNI and the name check against the MX host that
 * was dialled (strict DNS-ID, no Common Name fallback), and the trust roots. Parsing ~140 root PEMs per handshake
 * costs milliseconds, so one `SecureContext` per trust-root set is shared by every connection.
 */
import type { PeerCertificate, ConnectionOptions } from 'node:tls';
import * as tls from 'node:tls';
import { strictCheckServerIdentity } from './host-identity.js';

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
 * failure; otherwise the session proceeds and `verifyTls` tells what would have failed (testing mode).
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
