/**
 * What real sessions put into TLS reports: the Nodemailer transport against the loopback test world (real DNS,
 * real policy hosts, real MX hosts with broken certificates), recorded by a real aggregator and built into the
 * RFC 8460 §4.4 report. Checks `sending-mta-ip` (§4.4), `failure-reason-code` (§4.3), the invalid policy text
 * (§4.4 `policy-string` "including any errors") and the `+fallback-to-cached-policy` mark.
 */
import { isIP } from 'node:net';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMtaStsTransport, type MtaStsTransportOptions } from '../../src/integrations/nodemailer/index.js';
import type { CertVariant } from '../../src/testing/index.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';
import { buildTlsRptReport, utcDayKey, utcDayRange } from '../../src/tlsrpt/report.js';
import { TlsRptAggregator } from '../../src/tlsrpt/recorder.js';
import { MemoryTlsRptStore } from '../../src/tlsrpt/store.js';
import type { SessionOutcome, TlsRptReport, TlsRptRecorder } from '../../src/tlsrpt/types.js';
import { schemaErrors } from './helpers.js';

let world: TestWorld;
const transports: Array<{ close(): void }> = [];

beforeAll(async () => {
  world = await createTestWorld();
});
afterAll(async () => {
  for (const t of transports) t.close();
  await world.close();
});

class Recorder implements TlsRptRecorder {
  readonly outcomes: SessionOutcome[] = [];
  record(outcome: SessionOutcome): void {
    this.outcomes.push(outcome);
  }
}

function transport(recorder: TlsRptRecorder, extra: Partial<MtaStsTransportOptions> = {}) {
  const t = createMtaStsTransport({
    ...world.mtaStsOptions(),
    fetchTimeoutMs: 3000,
    dnsTimeoutMs: 2000,
    smtpPort: world.smtpPort,
    name: 'sender.example',
    connectionTimeoutMs: 2000,
    greetingTimeoutMs: 2000,
    socketTimeoutMs: 5000,
    recorder,
    ...extra,
  });
  transports.push(t);
  const mailer = nodemailer.createTransport(t);
  return (to: string) => mailer.sendMail({ from: 'a@sender.example', to, subject: 's', text: 't' }).then(
    () => 'sent',
    () => 'failed',
  );
}

/** The §4.4 report of everything recorded for `domain`, through the real aggregator. */
async function reportOf(outcomes: SessionOutcome[], domain: string): Promise<TlsRptReport> {
  const store = new MemoryTlsRptStore();
  const agg = new TlsRptAggregator({ store });
  for (const o of outcomes) agg.record(o);
  await agg.close();
  const day = utcDayKey(Date.now());
  const counts = await store.get({ day, policyDomain: domain });
  expect(counts).toBeDefined();
  const report = buildTlsRptReport({ organizationName: 'o', contactInfo: 'c@o.test', reportId: 'r', dateRange: utcDayRange(day), policies: counts!.policies });
  expect(schemaErrors(report)).toBe('');
  return report;
}

const ENFORCE = (mx: string[], id = 'e1') => ({ id, mode: 'enforce' as const, mx, maxAge: 86400 });

describe('RFC 8460 §4.4 sending-mta-ip and §4.3 failure-reason-code of TLS handshake failures', () => {
  const cases: Array<[CertVariant | 'legacy', string, RegExp]> = [
    ['expired', 'certificate-expired', /^CERT_HAS_EXPIRED$/],
    ['wrong-name', 'certificate-host-mismatch', /^ERR_TLS_CERT_ALTNAME_INVALID$/],
    ['self-signed', 'certificate-not-trusted', /^(DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE)$/],
    ['not-yet-valid', 'validation-failure', /^CERT_NOT_YET_VALID$/],
    ['legacy', 'validation-failure', /^ERR_SSL_/],
  ];
  it.each(cases)('a %s MX under enforce: the failure detail has sending-mta-ip and the TLS code', async (variant, resultType, code) => {
    const domain = `rc-${variant}.test`;
    const mx = await world.addMx(domain, `mx1.${domain}`, variant === 'legacy' ? { tls: 'legacy-only' } : { cert: variant });
    world.publishPolicy(domain, ENFORCE([`mx1.${domain}`]));
    const recorder = new Recorder();
    expect(await transport(recorder)(`x@${domain}`)).toBe('failed');
    const report = await reportOf(recorder.outcomes, domain);
    const detail = report.policies[0]!['failure-details']![0]!;
    expect(detail).toMatchObject({ 'result-type': resultType, 'receiving-ip': mx.ip, 'receiving-mx-hostname': `mx1.${domain}`, 'failed-session-count': 1 });
    expect(isIP(detail['sending-mta-ip'] ?? '')).toBeGreaterThan(0);
    expect(detail['failure-reason-code']).toMatch(code);
  });

  it('§4.1 an MX host not listed in the enforce policy: "mx not in policy"', async () => {
    await world.addMx('rc-unlisted.test', 'mx.elsewhere-rc.test');
    world.publishPolicy('rc-unlisted.test', ENFORCE(['mx1.rc-unlisted.test']));
    const recorder = new Recorder();
    expect(await transport(recorder)('x@rc-unlisted.test')).toBe('failed');
    const report = await reportOf(recorder.outcomes, 'rc-unlisted.test');
    expect(report.policies[0]!['failure-details']).toEqual([
      { 'result-type': 'validation-failure', 'receiving-mx-hostname': 'mx.elsewhere-rc.test', 'failure-reason-code': 'mx not in policy', 'failed-session-count': 1 },
    ]);
  });

  it('an MX that does not offer STARTTLS: "starttls not offered"', async () => {
    await world.addMx('rc-plain.test', 'mx1.rc-plain.test', { starttls: false });
    world.publishPolicy('rc-plain.test', ENFORCE(['mx1.rc-plain.test']));
    const recorder = new Recorder();
    await transport(recorder)('x@rc-plain.test');
    const report = await reportOf(recorder.outcomes, 'rc-plain.test');
    expect(report.policies[0]!['failure-details']![0]).toMatchObject({ 'result-type': 'starttls-not-supported', 'failure-reason-code': expect.stringMatching(/^starttls (not offered|refused 5\d\d)$/) });
  });
});

describe('RFC 8460 §4.3.2 policy failures carry their reason; §4.4 policy-string of an invalid policy', () => {
  const cases: Array<[string, Parameters<TestWorld['setPolicyHost']>[1], string, string]> = [
    ['404', { kind: 'status', status: 404 }, 'sts-policy-fetch-error', 'http status 404'],
    ['500', { kind: 'status', status: 500 }, 'sts-policy-fetch-error', 'http status 500'],
    ['cert', { kind: 'cert', cert: 'expired' }, 'sts-webpki-invalid', 'CERT_HAS_EXPIRED'],
    ['redirect', { kind: 'redirect', status: 301 }, 'sts-policy-fetch-error', 'http redirect 301'],
    ['ctype', { kind: 'wrong-content-type' }, 'sts-policy-invalid', 'content type text/html'],
  ];
  it.each(cases)('policy host %s', async (name, behaviour, resultType, reason) => {
    const domain = `pf-${name}.test`;
    await world.addMx(domain, `mx1.${domain}`);
    world.publishPolicy(domain, { ...ENFORCE([`mx1.${domain}`]), host: behaviour });
    const recorder = new Recorder();
    expect(await transport(recorder)(`x@${domain}`)).toBe('sent');
    const report = await reportOf(recorder.outcomes, domain);
    expect(report.policies[0]!.policy['policy-type']).toBe('sts');
    expect(report.policies[0]!['failure-details']![0]).toMatchObject({ 'result-type': resultType, 'failure-reason-code': reason });
  });

  it('an unparsable policy: "policy syntax error", and the fetched text as policy-string', async () => {
    await world.addMx('pf-syntax.test', 'mx1.pf-syntax.test');
    const body = 'version: STSv1\nmode: enforce\nmx: mx1.pf-syntax.test\nmax_age: soon\n';
    world.publishPolicy('pf-syntax.test', { ...ENFORCE(['mx1.pf-syntax.test']), body });
    const recorder = new Recorder();
    expect(await transport(recorder)('x@pf-syntax.test')).toBe('sent');
    const report = await reportOf(recorder.outcomes, 'pf-syntax.test');
    expect(report.policies[0]!.policy).toEqual({ 'policy-type': 'sts', 'policy-domain': 'pf-syntax.test', 'policy-string': ['version: STSv1', 'mode: enforce', 'mx: mx1.pf-syntax.test', 'max_age: soon'] });
    expect(report.policies[0]!['failure-details']![0]).toMatchObject({ 'result-type': 'sts-policy-invalid', 'failure-reason-code': 'policy syntax error' });
  });

  it('an oversized invalid policy text is bounded in the report', async () => {
    await world.addMx('pf-big.test', 'mx1.pf-big.test');
    const body = `version: STSv1\n${'junk line that is not a policy field\n'.repeat(1500)}`;
    world.publishPolicy('pf-big.test', { ...ENFORCE(['mx1.pf-big.test']), body });
    const recorder = new Recorder();
    await transport(recorder)('x@pf-big.test');
    const report = await reportOf(recorder.outcomes, 'pf-big.test');
    const text = report.policies[0]!.policy['policy-string']!.join('\n');
    expect(text.length).toBeGreaterThan(1000);
    expect(text.length).toBeLessThanOrEqual(8192);
  });
});

describe('RFC 8461 §3.3 delivery under a cached policy whose refresh failed: +fallback-to-cached-policy', () => {
  it('the session is reported with the refresh failure and the mark; mail still flows under the cached policy', async () => {
    const mx = await world.addMx('stale.test', 'mx1.stale.test');
    world.publishPolicy('stale.test', ENFORCE(['mx1.stale.test'], 'v1'));
    const recorder = new Recorder();
    const send = transport(recorder);
    expect(await send('x@stale.test')).toBe('sent');
    // A new policy id is announced but its host answers 404: the cached v1 policy keeps applying.
    world.publishPolicy('stale.test', { ...ENFORCE(['mx1.stale.test'], 'v2'), host: { kind: 'status', status: 404 } });
    expect(await send('y@stale.test')).toBe('sent');
    expect(mx.messages).toHaveLength(2);
    const report = await reportOf(recorder.outcomes, 'stale.test');
    expect(report.policies).toHaveLength(1);
    expect(report.policies[0]!.policy['policy-string']).toContain('mode: enforce');
    expect(report.policies[0]!.summary).toEqual({ 'total-successful-session-count': 1, 'total-failure-session-count': 1 });
    expect(report.policies[0]!['failure-details']).toEqual([
      { 'result-type': 'sts-policy-fetch-error', 'receiving-mx-hostname': 'mx1.stale.test', 'receiving-ip': mx.ip, 'sending-mta-ip': expect.any(String), 'failure-reason-code': 'http status 404 +fallback-to-cached-policy', 'failed-session-count': 1 },
    ]);
  });
});
