/**
 * `mta-sts check --probe`: STARTTLS to one MX host with the engine's TLS options, judged by the library's probe
 * (RFC 8461 §4.2: STARTTLS, TLS 1.2+, a certificate chaining to a trusted root, valid now, naming the MX host).
 *
 * The handshake runs with the engine's *testing-mode* options (`tlsOptions(host, false)`): the session completes
 * whatever the certificate, and the library's `verifyTls` gives the same verdict and RFC 8460 result type a strict
 * (enforce) handshake would. The certificate is captured in `checkServerIdentity`, which Node calls once the
 * chain has validated; for a chain that does not validate, the result type says why.
 */
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { resolveAddresses } from '../discovery/lookup.js';
import type { MtaSts } from '../engine.js';
import { probeStartTls } from '../tls/starttls-probe.js';
import type { CertificateTrace, MxHostTrace } from './check-types.js';

const DAY_MS = 86_400_000;

export interface ProbeSetup {
  /** Deadline of the address lookup and of the probe, ms. */
  timeoutMs: number;
  /** SMTP port for probes. Default 25 (FOR TESTS: another port). */
  smtpPort?: number;
  /** Name announced in EHLO by probes. */
  ehloName?: string;
  /** Clock for "days left", epoch ms. Default `Date.now`. */
  now?: () => number;
}

/** Describes a certificate for operators: issuer, expiry, names. */
export function describeCertificate(cert: X509Certificate, now: number): CertificateTrace {
  const notAfter = new Date(cert.validTo);
  const san = (cert.subjectAltName ?? '')
    .split(/,\s*/)
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => entry.slice(4));
  return {
    subject: cert.subject.replace(/\n/g, ', '),
    issuer: cert.issuer.replace(/\n/g, ', '),
    notAfter: Number.isNaN(notAfter.getTime()) ? cert.validTo : notAfter.toISOString(),
    daysLeft: Math.floor((notAfter.getTime() - now) / DAY_MS),
    san,
  };
}

/** Resolves the host's addresses and probes the first one; the outcome lands in `entry`. Never throws. */
export async function probeHost(entry: MxHostTrace, engine: MtaSts, setup: ProbeSetup): Promise<void> {
  let addresses: string[];
  try {
    addresses = (await resolveAddresses(engine.resolver, entry.host, setup.timeoutMs)).map((a) => a.address);
  } catch (error) {
    entry.addressError = `no address: ${(error as Error).message}`;
    return;
  }
  entry.addresses = addresses;
  const address = addresses[0]!;
  const port = setup.smtpPort ?? 25;
  const tls = engine.tlsOptions(entry.host, false);
  let peer: PeerCertificate | undefined;
  const result = await probeStartTls(entry.host, {
    address,
    smtpPort: port,
    tls: {
      ...tls,
      checkServerIdentity: (host, cert) => {
        peer = cert;
        return tls.checkServerIdentity(host, cert);
      },
    },
    timeoutMs: setup.timeoutMs,
    ...(setup.ehloName ? { ehloName: setup.ehloName } : {}),
  });
  let certificate: CertificateTrace | undefined;
  try {
    if (peer?.raw) certificate = describeCertificate(new X509Certificate(peer.raw), (setup.now ?? Date.now)());
  } catch {
    // Unparsable: the verdict below still stands.
  }
  const ok = result.verification.ok && result.error === undefined;
  const resultType = result.verification.resultType ?? result.resultType;
  const tlsVersion = result.protocol ?? result.verification.protocol;
  entry.probe = {
    address,
    port,
    starttls: result.starttlsOffered,
    ok,
    ...(tlsVersion ? { tlsVersion } : {}),
    ...(certificate ? { certificate } : {}),
    ...(!ok && resultType ? { resultType } : {}),
    reason: result.error !== undefined && !result.verification.reason ? result.error : result.verification.reason,
    elapsedMs: result.elapsedMs,
  };
}
