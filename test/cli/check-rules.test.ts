/**
 * The judgement of `mta-sts check` on a given trace (pure): certificate expiry warnings, and where MX findings go
 * for each mode. The process-level behaviour is in operator.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { CERT_EXPIRY_WARNING_DAYS, judge, type Trace } from '../../src/cli/check-rules.js';
import type { MxHostTrace } from '../../src/cli/check-types.js';

function trace(mode: Trace['mode'], host: MxHostTrace): Trace {
  return {
    domain: 'example.test',
    mode,
    txt: { name: '_mta-sts.example.test', records: [], verdict: mode ? 'valid' : 'none' },
    policy: mode ? { url: 'https://mta-sts.example.test/.well-known/mta-sts.txt', fetched: true, ok: true, mode, maxAge: 1_209_600, mx: ['mx.example.test'] } : { url: '', fetched: false, ok: false },
    mx: { verdict: 'ok', hosts: [host] },
    tlsrpt: { name: '_smtp._tls.example.test', verdict: 'valid', rua: ['mailto:r@example.test'] },
    plan: undefined,
    probed: true,
  };
}

const probe = (daysLeft: number, ok = true) => ({
  address: '127.0.0.2',
  port: 25,
  starttls: true,
  ok,
  tlsVersion: 'TLSv1.3',
  certificate: { subject: 'CN=mx.example.test', issuer: 'CN=CA', notAfter: '2027-01-01T00:00:00.000Z', daysLeft, san: ['mx.example.test'] },
  reason: ok ? 'ok' : 'certificate-expired',
  elapsedMs: 1,
});

describe('certificate expiry', () => {
  it(`warns when a valid certificate expires within ${CERT_EXPIRY_WARNING_DAYS} days, not before`, () => {
    const soon = judge(trace('enforce', { host: 'mx.example.test', priority: 10, match: 'matched', pattern: 'mx.example.test', probe: probe(CERT_EXPIRY_WARNING_DAYS - 1) }));
    expect(soon.warnings).toEqual([{ code: 'certificate-expires-soon', message: 'MX mx.example.test: certificate expires in 13 days (2027-01-01T00:00:00.000Z)' }]);
    const later = judge(trace('enforce', { host: 'mx.example.test', priority: 10, match: 'matched', pattern: 'mx.example.test', probe: probe(CERT_EXPIRY_WARNING_DAYS) }));
    expect(later.warnings).toEqual([]);
  });
});

describe('MX findings by mode', () => {
  const failed = { host: 'mx.example.test', priority: 10, match: 'matched' as const, pattern: 'mx.example.test', probe: { ...probe(30, false), resultType: 'certificate-expired' as const } };
  it.each([
    ['enforce', 'problems'],
    ['testing', 'wouldFailUnderEnforce'],
    [null, 'warnings'],
  ] as const)('a failed probe under %s is in %s', (mode, bucket) => {
    const findings = judge(trace(mode, failed));
    expect(findings[bucket]).toEqual([expect.objectContaining({ code: 'probe-failed', resultType: 'certificate-expired' })]);
  });
});
