/**
 * `mta-sts check --probe`: STARTTLS to one MX host with the engine's TLS options, judged by the library's probe
 * (RFC 8461 §4.2: STARTTLS, TLS 1.2+, a certificate chaining to a trusted root, valid now, naming the MX host).
 *
 * The handshake runs with the engine's *testing-mode* options (`tlsOptions(host, false)`): the session completes
 * whatever the certificate, and the library's `verifyTls` gives the same verdict and RFC 8460 result type a strict
 * (enforce) handshake would. The certificate and cipher shown come from the probe's observation of the socket, so
 * an expired or otherwise failing certificate is described too; they never change the verdict.
 */
import { resolveAddresses } from '../discovery/lookup.js';
import type { MtaSts } from '../engine.js';
import { probeStartTls, type ProbedCertificate } from '../tls/starttls-probe.js';
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

/** Describes a certificate for operators: issuer, expiry and days left, names, fingerprint. */
export function describeCertificate(cert: ProbedCertificate, now: number): CertificateTrace {
  const notAfter = new Date(cert.validTo).getTime();
  return {
    subject: cert.subject,
    issuer: cert.issuer,
    notAfter: cert.validTo,
    daysLeft: Math.floor((notAfter - now) / DAY_MS),
    san: [...cert.subjectAltNames],
    fingerprint256: cert.fingerprint256,
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
  const result = await probeStartTls(entry.host, {
    address,
    smtpPort: port,
    tls: engine.tlsOptions(entry.host, false),
    timeoutMs: setup.timeoutMs,
    ...(setup.ehloName ? { ehloName: setup.ehloName } : {}),
  });
  const certificate = result.certificate ? describeCertificate(result.certificate, (setup.now ?? Date.now)()) : undefined;
  const ok = result.verification.ok && result.error === undefined;
  const resultType = result.verification.resultType ?? result.resultType;
  const tlsVersion = result.protocol ?? result.verification.protocol;
  entry.probe = {
    address,
    port,
    starttls: result.starttlsOffered,
    ok,
    ...(tlsVersion ? { tlsVersion } : {}),
    ...(result.cipher ? { cipher: result.cipher.standardName ?? result.cipher.name } : {}),
    ...(certificate ? { certificate } : {}),
    ...(!ok && resultType ? { resultType } : {}),
    reason: result.error !== undefined && !result.verification.reason ? result.error : result.verification.reason,
    elapsedMs: result.elapsedMs,
  };
}
