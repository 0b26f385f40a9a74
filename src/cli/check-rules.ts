/**
 * The judgement of `mta-sts check`: turns a domain's trace into problems, "would fail under enforce" findings and
 * warnings (see `check.ts` for what each means). Pure.
 */
import type { DeliveryPlan } from '../plan/plan.js';
import type { PolicyMode } from '../policy/policy-file.js';
import { findMatchingPattern } from '../mx/match.js';
import { unknownTopLevelDomain, wildcardPublicSuffix } from '../mx/public-suffix.js';
import type { Finding, MxTrace, PolicyTrace, TlsRptTrace, TxtTrace } from './check-types.js';

/** Below this, a certificate's expiry is a warning. */
export const CERT_EXPIRY_WARNING_DAYS = 14;
/** Below this max_age (seconds), the policy is barely cached (RFC 8461 §3.2 expects weeks or more). */
export const SHORT_MAX_AGE_SECONDS = 86_400;

export interface Trace {
  domain: string;
  mode: PolicyMode | null;
  txt: TxtTrace;
  policy: PolicyTrace;
  mx: MxTrace;
  tlsrpt: TlsRptTrace;
  plan: DeliveryPlan | undefined;
  probed: boolean;
}

export interface Findings {
  problems: Finding[];
  wouldFailUnderEnforce: Finding[];
  warnings: Finding[];
}

export function judge(t: Trace): Findings {
  const out: Findings = { problems: [], wouldFailUnderEnforce: [], warnings: [] };
  discoveryFindings(t, out);
  mxFindings(t, out);
  policyFindings(t, out);
  if (t.tlsrpt.verdict === 'invalid' || t.tlsrpt.verdict === 'multiple') out.warnings.push({ code: `tlsrpt-${t.tlsrpt.verdict}`, message: `${t.tlsrpt.name}: ${t.tlsrpt.error?.message ?? 'invalid record'}; senders do not report` });
  else if (t.tlsrpt.verdict === 'dns-error') out.warnings.push({ code: 'tlsrpt-dns-error', message: `${t.tlsrpt.name}: ${t.tlsrpt.error?.message ?? 'DNS failure'}` });
  return out;
}

function discoveryFindings(t: Trace, out: Findings): void {
  const { txt, policy, mx } = t;
  if (txt.verdict === 'invalid' || txt.verdict === 'multiple') {
    out.problems.push({ code: txt.verdict === 'multiple' ? 'txt-multiple' : 'txt-invalid', message: `${txt.name}: ${txt.error?.message ?? 'invalid record'}; senders ignore it`, resultType: 'sts-policy-invalid' });
  } else if (txt.verdict === 'dns-error') {
    out.problems.push({ code: 'txt-dns-error', message: `${txt.name}: ${txt.error?.message ?? 'DNS failure'}`, resultType: 'sts-policy-fetch-error' });
  }
  if (policy.fetched && !policy.ok) {
    const invalid = policy.error?.resultType === 'sts-policy-invalid';
    out.problems.push({
      code: invalid ? 'policy-invalid' : policy.error?.code === 'MTASTS_WEBPKI_INVALID' ? 'policy-webpki-invalid' : 'policy-fetch-failed',
      message: `policy ${invalid ? 'is invalid' : 'could not be fetched'}: ${policy.error?.message ?? 'unknown error'}`,
      ...(policy.error?.resultType ? { resultType: policy.error.resultType } : {}),
    });
  }
  if (mx.verdict === 'dns-error') out.problems.push({ code: 'mx-dns-error', message: `MX lookup failed: ${mx.error?.message ?? 'DNS failure'}` });
  if (mx.verdict === 'nxdomain') out.problems.push({ code: 'domain-not-found', message: `${t.domain} does not exist (NXDOMAIN)` });
}

/** Where an MX finding goes: a problem under enforce, "would fail" under testing, a warning without a policy. */
function mxBucket(t: Trace, out: Findings): Finding[] {
  return t.mode === 'enforce' ? out.problems : t.mode === 'testing' ? out.wouldFailUnderEnforce : out.warnings;
}

function mxFindings(t: Trace, out: Findings): void {
  const bucket = mxBucket(t, out);
  for (const entry of t.mx.hosts) {
    if (entry.match === 'invalid-name') bucket.push({ code: 'mx-invalid-name', message: `MX target ${JSON.stringify(entry.host)} is not a valid host name` });
    else if (entry.match === 'not-matched') {
      bucket.push({ code: 'mx-not-matching', message: `MX ${entry.host} is not covered by the ${t.mode} policy: it matches no mx pattern, so senders ${t.mode === 'enforce' ? 'refuse to deliver to it' : 'would refuse it under enforce, and report it'} (RFC 8461 §4.1)`, resultType: 'validation-failure' });
    }
    const tld = entry.match === 'invalid-name' ? undefined : unknownTopLevelDomain(entry.host);
    if (tld !== undefined) out.warnings.push({ code: 'mx-unknown-tld', message: `MX ${entry.host}: .${tld} is not a known top-level domain (a typo?)` });
    const failed = entry.addressError !== undefined || (entry.probe !== undefined && !entry.probe.ok);
    if (failed) {
      const message = entry.addressError !== undefined ? `MX ${entry.host}: ${entry.addressError}` : `MX ${entry.host} (${entry.probe!.address}): ${entry.probe!.reason}`;
      bucket.push({ code: 'probe-failed', message, ...(entry.probe?.resultType ? { resultType: entry.probe.resultType } : {}) });
    }
    const cert = entry.probe?.certificate;
    if (entry.probe?.ok && cert && cert.daysLeft < CERT_EXPIRY_WARNING_DAYS) {
      out.warnings.push({ code: 'certificate-expires-soon', message: `MX ${entry.host}: certificate expires in ${cert.daysLeft} day${cert.daysLeft === 1 ? '' : 's'} (${cert.notAfter})` });
    }
  }
  // RFC 8461 §4.1: with no MX host the policy admits, an enforce sender defers every message (§5.1: re-check first).
  if (t.mode === 'enforce' && t.plan?.noCandidate?.action === 'defer' && t.mx.hosts.length > 0) {
    out.problems.push({ code: 'mx-none-allowed', message: `no MX host matches the enforce policy: senders defer all mail to this domain (RFC 8461 §4.1)` });
  } else if (t.mode === 'testing' && t.mx.hosts.length > 0 && t.mx.hosts.every((h) => h.match !== 'matched')) {
    out.wouldFailUnderEnforce.push({ code: 'mx-none-allowed', message: 'no MX host matches the testing policy: under enforce senders would defer all mail to this domain (RFC 8461 §4.1)' });
  }
}

function policyFindings(t: Trace, out: Findings): void {
  const p = t.policy;
  if (!p.ok || p.mode === undefined) return;
  if (p.maxAge !== undefined && p.maxAge < SHORT_MAX_AGE_SECONDS) {
    out.warnings.push({ code: 'max-age-short', message: `max_age ${p.maxAge} s is below one day: senders soon forget the policy, and a downgrade after it expires goes unnoticed; RFC 8461 §3.2 expects weeks or more (e.g. 1209600)` });
  }
  if (p.mode === 'enforce' && t.tlsrpt.verdict === 'none') {
    out.warnings.push({ code: 'enforce-without-tlsrpt', message: `enforce policy but no TLS-RPT record: nobody learns when senders defer mail because of it (RFC 8460 §3 defines _smtp._tls.${t.domain})` });
  }
  if (p.mode === 'none') return;
  const hosts = t.mx.hosts.filter((h) => h.match !== 'invalid-name').map((h) => h.host);
  for (const pattern of p.mx ?? []) {
    const suffix = wildcardPublicSuffix(pattern);
    if (suffix !== undefined) out.warnings.push({ code: 'mx-pattern-public-suffix', message: `mx pattern ${pattern} covers the public suffix ${suffix}: any host anyone registers there matches it (RFC 8461 §4.1)` });
    const tld = unknownTopLevelDomain(pattern);
    if (tld !== undefined) out.warnings.push({ code: 'mx-pattern-unknown-tld', message: `mx pattern ${pattern}: .${tld} is not a known top-level domain (a typo?)` });
    if ((t.mx.verdict === 'ok' || t.mx.verdict === 'implicit') && hosts.length > 0 && !hosts.some((h) => findMatchingPattern(h, [pattern]) !== undefined)) {
      out.warnings.push({ code: 'mx-pattern-unused', message: `mx pattern ${pattern} matches no current MX host (a stale entry?)` });
    }
  }
}
