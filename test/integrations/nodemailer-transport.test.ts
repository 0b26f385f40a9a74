/**
 * The direct-to-MX Nodemailer transport against the loopback world's real DNS, HTTPS policy hosts and SMTP MX
 * hosts. Delivery is judged from what the MX servers received (`world.messages`, connection counts), never only
 * from what the transport reports.
 */
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMtaStsTransport, MtaStsDeliveryError, type MtaStsSentMessageInfo, type MtaStsTransportOptions } from '../../src/integrations/nodemailer/index.js';
import type { MtaStsDecision } from '../../src/integrations/hooks.js';
import type { CertVariant, TestWorld } from '../../src/testing/index.js';
import { type MtaSts } from '../../src/engine.js';
import { mail, MemoryRecorder, receivedFor, transportOptions, startWorld, stopWorld, sendError } from './helpers.js';

let world: TestWorld;
let engine: MtaSts;
const transports: Array<{ close(): void }> = [];

beforeAll(async () => {
  ({ world, engine } = await startWorld());
});
afterAll(async () => {
  for (const t of transports) t.close();
  await stopWorld(world, engine);
});

function setup(extra: Partial<MtaStsTransportOptions> = {}) {
  const recorder = new MemoryRecorder();
  const transport = createMtaStsTransport(transportOptions(world, { mtaSts: engine, recorder, ...extra }));
  transports.push(transport);
  const decisions: MtaStsDecision[] = [];
  transport.on('decision', (d: MtaStsDecision) => decisions.push(d));
  const mailer = nodemailer.createTransport(transport);
  return { transport, mailer, recorder, decisions, send: (m: ReturnType<typeof mail>) => mailer.sendMail(m) as Promise<MtaStsSentMessageInfo> };
}


const ENFORCE = (mx: string[], id = 'e1') => ({ id, mode: 'enforce' as const, mx, maxAge: 86400 });
const TESTING = (mx: string[], id = 't1') => ({ id, mode: 'testing' as const, mx, maxAge: 86400 });

describe.concurrent('RFC 8461 §4.2 enforce: TLS 1.2+, trusted, unexpired, valid for the dialled MX name', () => {
  it('§4.2 delivers to a valid MX over TLS >= 1.2 with SNI = the MX host name, connecting by IP', async () => {
    const mx = await world.addMx('valid.test', 'mx1.valid.test');
    world.publishPolicy('valid.test', ENFORCE(['mx1.valid.test']));
    const { send, recorder } = setup();
    const info = await send(mail('alice@valid.test'));

    const received = receivedFor(world, 'valid.test');
    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({ mxHost: 'mx1.valid.test', ip: mx.ip, secure: true, sni: 'mx1.valid.test', recipients: ['alice@valid.test'] });
    expect(['TLSv1.2', 'TLSv1.3']).toContain(received[0]!.tlsVersion);

    expect(info.accepted).toEqual(['alice@valid.test']);
    expect(info.rejected).toEqual([]);
    expect(info.envelope).toEqual({ from: 'sender@sender.example', to: ['alice@valid.test'] });
    expect(info.messageId).toMatch(/^<.+@.+>$/);
    expect(info.response).toMatch(/^250 /);
    expect(info.mtaSts['valid.test']).toMatchObject({ status: 'delivered', mode: 'enforce', policyId: 'e1', mx: 'mx1.valid.test', ip: mx.ip, secure: true, validated: true, tlsVersion: received[0]!.tlsVersion });
    expect(received[0]!.raw.toString()).toContain(info.messageId);

    const outcomes = recorder.of('valid.test');
    expect(outcomes).toHaveLength(1);
    expect(outcomes[0]).toMatchObject({ success: true, policy: { type: 'sts', domain: 'valid.test', mxHost: ['mx1.valid.test'] } });
    expect(outcomes[0]!.policy.policyString).toContain('mode: enforce');
  });

  it('§4.2 STARTTLS stripped: refused, nothing is sent in plaintext', async () => {
    const mx = await world.addMx('stripped.test', 'mx1.stripped.test', { starttls: false });
    world.publishPolicy('stripped.test', ENFORCE(['mx1.stripped.test']));
    const { send, recorder } = setup();
    const error = await sendError(() => send(mail('bob@stripped.test')));

    expect(receivedFor(world, 'stripped.test')).toHaveLength(0);
    expect(mx.messages).toHaveLength(0);
    expect(error.code).toBe('EMTASTS');
    expect(error.attempts).toEqual([expect.objectContaining({ mx: 'mx1.stripped.test', ip: mx.ip, outcome: 'refused', resultType: 'starttls-not-supported' })]);
    expect(recorder.of('stripped.test')).toEqual([expect.objectContaining({ success: false, failure: expect.objectContaining({ resultType: 'starttls-not-supported', receivingMxHostname: 'mx1.stripped.test', receivingIp: mx.ip }) })]);
  });

  const certCases: Array<[CertVariant, string]> = [
    ['self-signed', 'certificate-not-trusted'],
    ['expired', 'certificate-expired'],
    ['wrong-name', 'certificate-host-mismatch'],
    ['cn-only', 'certificate-host-mismatch'],
    ['not-yet-valid', 'validation-failure'],
  ];
  it.each(certCases)('§4.2 a %s certificate is refused (%s), nothing arrives', async (cert, resultType) => {
    const domain = `cert-${cert}.test`;
    const mx = await world.addMx(domain, `mx1.${domain}`, { cert });
    world.publishPolicy(domain, ENFORCE([`mx1.${domain}`]));
    const { send, recorder } = setup();
    const error = await sendError(() => send(mail(`carol@${domain}`)));

    expect(mx.messages).toHaveLength(0);
    expect(receivedFor(world, domain)).toHaveLength(0);
    expect(error).toMatchObject({ code: 'EMTASTS', responseCode: 451, temporary: true });
    expect(error.attempts[0]).toMatchObject({ mx: `mx1.${domain}`, outcome: 'refused', stage: 'tls', resultType });
    expect(recorder.of(domain)[0]).toMatchObject({ success: false, failure: { resultType, receivingMxHostname: `mx1.${domain}`, receivingIp: mx.ip } });
  });

  it('§4.2 an MX that speaks only TLS 1.0/1.1 is refused', async () => {
    const mx = await world.addMx('legacy.test', 'mx1.legacy.test', { tls: 'legacy-only' });
    world.publishPolicy('legacy.test', ENFORCE(['mx1.legacy.test']));
    const { send } = setup();
    const error = await sendError(() => send(mail('dan@legacy.test')));
    expect(mx.messages).toHaveLength(0);
    expect(error.code).toBe('EMTASTS');
    expect(error.attempts[0]).toMatchObject({ outcome: 'refused', resultType: 'validation-failure' });
    expect(error.attempts[0]!.reason).toMatch(/TLS 1\.2/);
  });
});

describe.concurrent('RFC 8461 §4.1 MX host matching', () => {
  it('§4.1 an MX not in the enforce policy is never connected to; the next allowed MX is used', async () => {
    const rogue = await world.addMx('match.test', 'rogue.elsewhere.test', { priority: 5 });
    const good = await world.addMx('match.test', 'mx2.match.test', { priority: 20 });
    world.publishPolicy('match.test', ENFORCE(['mx2.match.test']));
    const { send, recorder } = setup();
    const info = await send(mail('erin@match.test'));

    expect(rogue.connections).toBe(0);
    expect(good.messages).toHaveLength(1);
    expect(good.messages[0]).toMatchObject({ secure: true, sni: 'mx2.match.test' });
    expect(info.mtaSts['match.test']!.attempts).toEqual([
      expect.objectContaining({ mx: 'rogue.elsewhere.test', outcome: 'skipped', resultType: 'validation-failure' }),
      expect.objectContaining({ mx: 'mx2.match.test', outcome: 'delivered' }),
    ]);
    expect(recorder.of('match.test').map((o) => o.success)).toEqual([false, true]);
  });

  it('§4.1 "*.x.test" does not admit "a.b.x.test"', async () => {
    const deep = await world.addMx('x.test', 'a.b.x.test');
    world.publishPolicy('x.test', ENFORCE(['*.x.test']));
    const { send } = setup();
    const error = await sendError(() => send(mail('fay@x.test')));
    expect(deep.connections).toBe(0);
    expect(error.code).toBe('EMTASTS');
    expect(error.attempts).toEqual([expect.objectContaining({ mx: 'a.b.x.test', outcome: 'skipped', resultType: 'validation-failure' })]);
  });
});

describe.concurrent('RFC 8461 §5 / §5.1 enforce failure: defer, never bounce', () => {
  it('§5.1 every MX failing: temporary EMTASTS listing each MX with reason and result type', async () => {
    const a = await world.addMx('allfail.test', 'mx1.allfail.test', { priority: 10, cert: 'expired' });
    const b = await world.addMx('allfail.test', 'mx2.allfail.test', { priority: 20, starttls: false });
    const c = await world.addMx('allfail.test', 'mx3.allfail.test', { priority: 30, cert: 'wrong-name' });
    const d = await world.addMx('allfail.test', 'mx.unlisted.test', { priority: 40 });
    world.publishPolicy('allfail.test', ENFORCE(['*.allfail.test'], 'af1'));
    const { send, decisions } = setup();
    const error = await sendError(() => send(mail(['gus@allfail.test', 'hal@allfail.test'])));

    for (const mx of [a, b, c, d]) expect(mx.messages).toHaveLength(0);
    expect(d.connections).toBe(0);
    expect(error).toBeInstanceOf(MtaStsDeliveryError);
    expect(error).toMatchObject({ name: 'MtaStsDeliveryError', code: 'EMTASTS', responseCode: 451, temporary: true, permanent: false, domain: 'allfail.test', mode: 'enforce', policyId: 'af1' });
    expect(error.response).toMatch(/^451 4\.7\.5 /);
    expect((error as unknown as { rejected: string[] }).rejected).toEqual(['gus@allfail.test', 'hal@allfail.test']);
    expect(error.attempts.map((x) => [x.mx, x.outcome, x.resultType])).toEqual([
      ['mx1.allfail.test', 'refused', 'certificate-expired'],
      ['mx2.allfail.test', 'refused', 'starttls-not-supported'],
      ['mx3.allfail.test', 'refused', 'certificate-host-mismatch'],
      ['mx.unlisted.test', 'skipped', 'validation-failure'],
    ]);
    for (const attempt of error.attempts) expect(attempt.reason.length).toBeGreaterThan(5);
    expect(error.message).toContain('mx1.allfail.test');
    expect(decisions.some((x) => x.stage === 'delivery' && x.action === 'defer' && x.domain === 'allfail.test')).toBe(true);
    // A real error a user sees (printed for the docs when MTA_STS_PRINT_ERROR is set).
    if (process.env.MTA_STS_PRINT_ERROR) console.log(JSON.stringify(error, null, 2));
  });

  it('null MX (RFC 7505): permanent failure, nothing connected', async () => {
    world.dns.setRecords('nullmx.test', { mx: [{ exchange: '.', priority: 0 }] });
    const { send } = setup();
    const error = await sendError(() => send(mail('ivy@nullmx.test')));
    expect(error).toMatchObject({ code: 'ENOMX', temporary: false, responseCode: 556 });
  });

  it('no MX record: the domain itself is the implicit MX (RFC 5321 §5.1)', async () => {
    // The host name implicit.test gets an A record (and a certificate for its name); no MX record for implicit.test.
    const mx = await world.addMx('owner-of-implicit.test', 'implicit.test');
    const { send } = setup();
    const info = await send(mail('jon@implicit.test'));
    expect(mx.messages).toHaveLength(1);
    expect(info.mtaSts['implicit.test']).toMatchObject({ mx: 'implicit.test', mode: 'none', secure: true });
  });
});

describe.concurrent('RFC 8461 §5 testing and none', () => {
  it('§5 testing: an invalid certificate is delivered anyway and reported (certificate-not-trusted)', async () => {
    const mx = await world.addMx('testing.test', 'mx1.testing.test', { cert: 'self-signed' });
    world.publishPolicy('testing.test', TESTING(['mx1.testing.test']));
    const { send, recorder, decisions } = setup();
    const info = await send(mail('kim@testing.test'));
    expect(mx.messages).toHaveLength(1);
    expect(mx.messages[0]).toMatchObject({ secure: true, sni: 'mx1.testing.test' });
    expect(info.mtaSts['testing.test']).toMatchObject({ status: 'delivered', mode: 'testing', validated: false, resultType: 'certificate-not-trusted' });
    expect(recorder.of('testing.test')).toEqual([expect.objectContaining({ success: false, policy: expect.objectContaining({ type: 'sts' }), failure: expect.objectContaining({ resultType: 'certificate-not-trusted', receivingIp: mx.ip }) })]);
    expect(decisions).toContainEqual(expect.objectContaining({ stage: 'session', action: 'report', domain: 'testing.test', resultType: 'certificate-not-trusted' }));
  });

  it('§5 testing: an MX not in the policy is still used and reported (validation-failure)', async () => {
    const mx = await world.addMx('testing-unlisted.test', 'mx.other-place.test');
    world.publishPolicy('testing-unlisted.test', TESTING(['mx1.testing-unlisted.test']));
    const { send, recorder } = setup();
    await send(mail('lee@testing-unlisted.test'));
    expect(mx.messages).toHaveLength(1);
    expect(recorder.of('testing-unlisted.test')[0]).toMatchObject({ success: false, failure: { resultType: 'validation-failure' } });
  });

  it('§5 testing: STARTTLS stripped is delivered in plaintext and reported (starttls-not-supported)', async () => {
    const mx = await world.addMx('testing-plain.test', 'mx1.testing-plain.test', { starttls: false });
    world.publishPolicy('testing-plain.test', TESTING(['mx1.testing-plain.test']));
    const { send, recorder } = setup();
    const info = await send(mail('max@testing-plain.test'));
    expect(mx.messages).toHaveLength(1);
    expect(mx.messages[0]!.secure).toBe(false);
    expect(info.mtaSts['testing-plain.test']).toMatchObject({ secure: false, resultType: 'starttls-not-supported' });
    expect(recorder.of('testing-plain.test')[0]).toMatchObject({ success: false, failure: { resultType: 'starttls-not-supported' } });
  });

  it('§5 testing: a TLS 1.0-only MX fails the handshake; retried in plaintext (like Postfix) and reported', async () => {
    const mx = await world.addMx('testing-legacy.test', 'mx1.testing-legacy.test', { tls: 'legacy-only' });
    world.publishPolicy('testing-legacy.test', TESTING(['mx1.testing-legacy.test']));
    const { send, recorder } = setup();
    const info = await send(mail('ned@testing-legacy.test'));
    expect(mx.messages).toHaveLength(1);
    expect(mx.messages[0]!.secure).toBe(false);
    expect(info.mtaSts['testing-legacy.test']).toMatchObject({ plaintextFallback: true, resultType: 'validation-failure' });
    expect(recorder.of('testing-legacy.test')).toEqual([expect.objectContaining({ success: false, failure: expect.objectContaining({ resultType: 'validation-failure' }) })]);
  });

  it('§5 testing with plaintextFallback: false: the handshake failure is not retried in plaintext', async () => {
    const mx = await world.addMx('testing-nofallback.test', 'mx1.testing-nofallback.test', { tls: 'legacy-only' });
    world.publishPolicy('testing-nofallback.test', TESTING(['mx1.testing-nofallback.test']));
    const { send } = setup({ plaintextFallback: false });
    const error = await sendError(() => send(mail('ola@testing-nofallback.test')));
    expect(mx.messages).toHaveLength(0);
    expect(error).toMatchObject({ code: 'ECONNECTION', temporary: true });
  });

  it('§5 none: delivered as without a policy (opportunistic TLS, certificate not enforced), reported as no-policy-found', async () => {
    const mx = await world.addMx('none.test', 'mx1.none.test', { cert: 'self-signed' });
    world.publishPolicy('none.test', { id: 'n1', mode: 'none', mx: ['mx1.none.test'], maxAge: 86400 });
    const { send, recorder } = setup();
    const info = await send(mail('pat@none.test'));
    expect(mx.messages).toHaveLength(1);
    expect(mx.messages[0]!.secure).toBe(true);
    expect(info.mtaSts['none.test']).toMatchObject({ mode: 'none', secure: true, validated: false });
    expect(recorder.of('none.test')).toEqual([expect.objectContaining({ success: true, policy: { type: 'no-policy-found', domain: 'none.test' } })]);
  });

  it('no policy: opportunistic STARTTLS, plaintext when not offered (no-policy-found failure recorded)', async () => {
    const mx = await world.addMx('nopolicy.test', 'mx1.nopolicy.test', { starttls: false });
    const { send, recorder } = setup();
    await send(mail('quinn@nopolicy.test'));
    expect(mx.messages).toHaveLength(1);
    expect(mx.messages[0]!.secure).toBe(false);
    expect(recorder.of('nopolicy.test')).toEqual([expect.objectContaining({ success: false, policy: { type: 'no-policy-found', domain: 'nopolicy.test' }, failure: expect.objectContaining({ resultType: 'starttls-not-supported' }) })]);
  });

  it('requireTlsEverywhere: no policy, STARTTLS stripped: refused', async () => {
    const mx = await world.addMx('notls-required.test', 'mx1.notls-required.test', { starttls: false });
    const { send } = setup({ requireTlsEverywhere: true });
    const error = await sendError(() => send(mail('ray@notls-required.test')));
    expect(mx.messages).toHaveLength(0);
    expect(error.temporary).toBe(true);
    expect(error.attempts[0]).toMatchObject({ outcome: 'refused', resultType: 'starttls-not-supported' });
  });
});

describe.concurrent('RFC 8461 §3.3 / §5.1 policy freshness', () => {
  it('§3.3 DNS SERVFAIL of the TXT record while an enforce policy is cached: still enforced', async () => {
    const mx = await world.addMx('servfail.test', 'mx1.servfail.test');
    world.publishPolicy('servfail.test', ENFORCE(['mx1.servfail.test'], 'sf1'));
    const { send } = setup();
    await send(mail('sam@servfail.test'));
    expect(mx.messages).toHaveLength(1);

    world.dns.fail('_mta-sts.servfail.test', 'servfail');
    try {
      // Still delivered over validated TLS while the certificate is valid...
      const info = await send(mail('sam@servfail.test', 'second'));
      expect(info.mtaSts['servfail.test']).toMatchObject({ mode: 'enforce', policyId: 'sf1', policySource: 'stale-cache', validated: true });
      // ...and refused once it is not: the SERVFAIL did not switch the policy off.
      mx.setCert('self-signed');
      const error = await sendError(() => send(mail('sam@servfail.test', 'third')));
      expect(error).toMatchObject({ code: 'EMTASTS', mode: 'enforce', policyId: 'sf1' });
      expect(mx.messages).toHaveLength(2);
    } finally {
      world.dns.fail('_mta-sts.servfail.test', null);
      mx.setCert('valid');
    }
  });

  it('§3.1 / §5.1 a changed TXT id: the new policy is fetched and used before the next delivery', async () => {
    const mx1 = await world.addMx('rotate.test', 'mx1.rotate.test', { priority: 10 });
    const mx2 = await world.addMx('rotate.test', 'mx2.rotate.test', { priority: 20 });
    world.publishPolicy('rotate.test', ENFORCE(['mx1.rotate.test'], 'r1'));
    const { send } = setup();
    const first = await send(mail('tia@rotate.test'));
    expect(first.mtaSts['rotate.test']).toMatchObject({ policyId: 'r1', mx: 'mx1.rotate.test' });
    expect(mx1.messages).toHaveLength(1);

    world.publishPolicy('rotate.test', ENFORCE(['mx2.rotate.test'], 'r2'));
    const connectionsBefore = mx1.connections;
    const second = await send(mail('tia@rotate.test', 'after rotation'));
    expect(second.mtaSts['rotate.test']).toMatchObject({ policyId: 'r2', policySource: 'fetched', mx: 'mx2.rotate.test' });
    expect(mx2.messages).toHaveLength(1);
    expect(mx1.connections).toBe(connectionsBefore);
  });
});

describe.concurrent('several recipient domains in one message', () => {
  it('each domain follows its own policy; partial result with rejected, deferred and per-domain errors', async () => {
    const good = await world.addMx('multi-good.test', 'mx1.multi-good.test');
    world.publishPolicy('multi-good.test', ENFORCE(['mx1.multi-good.test']));
    const bad = await world.addMx('multi-bad.test', 'mx1.multi-bad.test', { cert: 'expired' });
    world.publishPolicy('multi-bad.test', ENFORCE(['mx1.multi-bad.test']));
    const plain = await world.addMx('multi-plain.test', 'mx1.multi-plain.test', { starttls: false });
    const { send, recorder } = setup();
    const info = await send(mail(['a@multi-good.test', 'b@multi-bad.test', 'c@multi-plain.test', 'd@multi-good.test']));

    expect(good.messages).toHaveLength(1);
    expect(good.messages[0]).toMatchObject({ secure: true, recipients: ['a@multi-good.test', 'd@multi-good.test'] });
    expect(bad.messages).toHaveLength(0);
    expect(plain.messages).toHaveLength(1);
    expect(plain.messages[0]!.secure).toBe(false);

    expect(info.accepted.sort()).toEqual(['a@multi-good.test', 'c@multi-plain.test', 'd@multi-good.test']);
    expect(info.rejected).toEqual(['b@multi-bad.test']);
    expect(info.deferred).toEqual(['b@multi-bad.test']);
    expect(info.rejectedErrors?.[0]).toMatchObject({ code: 'EMTASTS', domain: 'multi-bad.test' });
    expect(info.mtaSts['multi-good.test']).toMatchObject({ status: 'delivered', mode: 'enforce', validated: true });
    expect(info.mtaSts['multi-bad.test']).toMatchObject({ status: 'failed', mode: 'enforce', error: expect.objectContaining({ code: 'EMTASTS' }) });
    expect(info.mtaSts['multi-plain.test']).toMatchObject({ status: 'delivered', mode: 'none', secure: false });
    expect(recorder.of('multi-good.test')[0]?.success).toBe(true);
    expect(recorder.of('multi-bad.test')[0]?.failure?.resultType).toBe('certificate-expired');
  });

  it('every domain failing: one aggregate error carrying each domain', async () => {
    await world.addMx('agg-a.test', 'mx1.agg-a.test', { cert: 'expired' });
    world.publishPolicy('agg-a.test', ENFORCE(['mx1.agg-a.test']));
    await world.addMx('agg-b.test', 'mx1.agg-b.test', { starttls: false });
    world.publishPolicy('agg-b.test', ENFORCE(['mx1.agg-b.test']));
    const { send } = setup();
    const error = await sendError(() => send(mail(['x@agg-a.test', 'y@agg-b.test'])));
    expect(error).toMatchObject({ code: 'EMTASTS', temporary: true, responseCode: 451 });
    expect(Object.keys(error.domains ?? {})).toEqual(['agg-a.test', 'agg-b.test']);
    expect(error.attempts.map((a) => a.resultType)).toEqual(['certificate-expired', 'starttls-not-supported']);
  });

  it('recipients the MX rejects are reported like Nodemailer does (info.rejected / rejectedErrors)', async () => {
    const mx = await world.addMx('rcpt.test', 'mx1.rcpt.test', { rejectRecipients: ['nobody@rcpt.test'] });
    world.publishPolicy('rcpt.test', ENFORCE(['mx1.rcpt.test']));
    const { send } = setup();
    const info = await send(mail(['yes@rcpt.test', 'nobody@rcpt.test']));
    expect(mx.messages[0]?.recipients).toEqual(['yes@rcpt.test']);
    expect(info.accepted).toEqual(['yes@rcpt.test']);
    expect(info.rejected).toEqual(['nobody@rcpt.test']);
    expect(info.rejectedErrors?.[0]).toMatchObject({ responseCode: 550 });
  });
});

describe('TLS report mail through the transport (RFC 8460 §5.3)', () => {
  it('RFC 8460 §5.3 a report is delivered despite an enforce failure at the reporting domain, and its session is not counted', async () => {
    const { TlsRptAggregator, MemoryTlsRptStore, buildTlsRptReport, gzipTlsRptReport, sendTlsRptMail, tlsRptFileName } = await import('../../src/tlsrpt/index.js');
    const { utcDayRange } = await import('../../src/tlsrpt/report.js');
    const mx = await world.addMx('reports.test', 'mx1.reports.test', { cert: 'expired' });
    world.publishPolicy('reports.test', ENFORCE(['mx1.reports.test'], 'r1'));
    const aggregator = new TlsRptAggregator({ store: new MemoryTlsRptStore() });
    const { mailer, decisions } = setup({ recorder: aggregator });

    // An ordinary message to the same domain is refused (enforce, expired certificate) and counted...
    await sendError(() => mailer.sendMail(mail('someone@reports.test')));
    const counted = aggregator.unflushed().filter((c) => c.policyDomain === 'reports.test');
    expect(counted).toHaveLength(1);

    // ...but the report mail goes through, and adds nothing to the counts.
    const dateRange = utcDayRange('2026-11-22');
    const report = buildTlsRptReport({
      organizationName: 'Sender',
      contactInfo: 'tlsrpt@sender.test',
      dateRange,
      policies: [{ policy: { type: 'sts', domain: 'reports.test', policyString: ['version: STSv1'], mxHost: ['mx1.reports.test'] }, successCount: 0, failureCount: 1, failures: [] }],
    });
    const gz = await gzipTlsRptReport(report);
    await sendTlsRptMail(mailer, report, gz, { from: 'tlsrpt@sender.test', to: 'tlsrpt@reports.test', submitter: 'sender.test', filename: tlsRptFileName({ submitter: 'sender.test', policyDomain: 'reports.test', dateRange, gzip: true }) });
    expect(mx.messages).toHaveLength(1);
    expect(mx.messages[0]?.recipients).toEqual(['tlsrpt@reports.test']);
    expect(JSON.stringify(aggregator.unflushed().filter((c) => c.policyDomain === 'reports.test'))).toBe(JSON.stringify(counted));
    expect(decisions.some((d) => d.domain === 'reports.test' && d.mode === 'testing')).toBe(true);
    await aggregator.close();
  });
});

describe('createMtaStsTransport() validates every option at creation (never as bounced mail)', () => {
  const invalid = (options: Record<string, unknown>) => {
    try {
      createMtaStsTransport(transportOptions(world, { mtaSts: engine, ...options } as Partial<MtaStsTransportOptions>)).close();
    } catch (error) {
      return error as { code: string; message: string; details: Record<string, unknown> };
    }
    throw new Error('expected createMtaStsTransport() to throw');
  };

  it('maxConcurrentDomains: NaN is refused at creation (it used to bounce every message with a permanent EENVELOPE)', () => {
    expect(invalid({ maxConcurrentDomains: Number.NaN })).toMatchObject({ code: 'MTASTS_INVALID_OPTIONS', details: { option: 'maxConcurrentDomains', value: 'NaN' } });
    expect(invalid({ maxConcurrentDomains: Number.NaN }).message).toMatch(/option maxConcurrentDomains must be an integer from 1 to 1000, got NaN/);
  });

  it('maxAddressesPerMx: NaN (it used to fail every message as ENOMX) and other bad limits are refused', () => {
    expect(invalid({ maxAddressesPerMx: Number.NaN })).toMatchObject({ details: { option: 'maxAddressesPerMx' } });
    expect(invalid({ maxSessionsPerDomain: 0 })).toMatchObject({ details: { option: 'maxSessionsPerDomain' } });
    expect(invalid({ port: 0 })).toMatchObject({ details: { option: 'port' } });
    expect(invalid({ connectionTimeoutMs: -1 })).toMatchObject({ details: { option: 'connectionTimeoutMs' } });
    // Nodemailer's own names are refused, pointing to the name this transport uses (units in option names).
    expect(invalid({ connectionTimeout: 5000 }).message).toMatch(/connectionTimeoutMs/);
    expect(invalid({ port: 2525 }).message).toMatch(/smtpPort/);
    expect(invalid({ localAddress: 'localhost' })).toMatchObject({ details: { option: 'localAddress' } });
  });

  it('smart-host options (host, auth, pool, secure) are refused with a pointer to guardTransport()', () => {
    for (const option of ['host', 'auth', 'pool', 'secure']) {
      const value = option === 'auth' ? { user: 'u', pass: 'secret' } : option === 'host' ? 'smtp.example' : true;
      const error = invalid({ [option]: value });
      expect(error).toMatchObject({ code: 'MTASTS_INVALID_OPTIONS', details: { option } });
      expect(error.message).toMatch(/delivers straight to each recipient domain's MX hosts.*guardTransport\(\)/);
      expect(error.message).not.toContain('secret');
    }
    expect(invalid({ tls: { rejectUnauthorized: false } }).message).toMatch(/follow each domain's MTA-STS policy \(RFC 8461 §4\.2\)/);
  });

  it('engine options given to the transport are checked by the engine rules; unknown keys get a suggestion', () => {
    expect(invalid({ ca: 42 }).message).toMatch(/^createMtaStsTransport\(\): option ca must be PEM certificate text/);
    expect(invalid({ dnsServers: '127.0.0.1' })).toMatchObject({ details: { option: 'dnsServers' } });
    expect(invalid({ maxConcurrentDomain: 2 }).message).toMatch(/unknown option maxConcurrentDomain \(did you mean maxConcurrentDomains\?\)/);
    expect(invalid({ timeout: 5 }).message).toMatch(/did you mean .*TimeoutMs/);
  });
});
