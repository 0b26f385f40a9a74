import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMtaSts } from '../../src/engine.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';

let world: TestWorld;
beforeAll(async () => {
  world = await createTestWorld();
});
afterAll(async () => {
  await world?.close();
});

const engine = () => createMtaSts({ ...world.mtaStsOptions(), fetchTimeoutMs: 3000, dnsTimeoutMs: 2000 });

describe('RFC 8461 §4 / §5 delivery planning', () => {
  it('§4.1 enforce: MX hosts that match no pattern are not used; order follows MX preference', async () => {
    world.publishPolicy('plan-enf.test', { id: 'p1', mode: 'enforce', mx: ['mx1.plan-enf.test', '*.backup.plan-enf.test'], maxAge: 86400 });
    world.dns.setRecords('plan-enf.test', {
      mx: [
        { exchange: 'evil.attacker.test', priority: 5 },
        { exchange: 'b1.backup.plan-enf.test', priority: 20 },
        { exchange: 'mx1.plan-enf.test', priority: 10 },
        { exchange: 'a.b.backup.plan-enf.test', priority: 30 },
      ],
    });
    const mta = engine();
    const plan = await mta.plan('plan-enf.test');
    expect(plan.mode).toBe('enforce');
    expect(plan.tlsRequired).toBe(true);
    expect(plan.candidates.map((c) => [c.host, c.allowed])).toEqual([
      ['evil.attacker.test', false],
      ['mx1.plan-enf.test', true],
      ['b1.backup.plan-enf.test', true],
      ['a.b.backup.plan-enf.test', false],
    ]);
    expect(plan.allowed.map((c) => c.host)).toEqual(['mx1.plan-enf.test', 'b1.backup.plan-enf.test']);
    expect(plan.candidates[0]?.reason).toMatch(/not listed/);
    expect(plan.noCandidate).toBeUndefined();
    await mta.close();
  });

  it('§4.2 enforce: TLS options name the MX host (SNI), require TLS 1.2 and a valid certificate', async () => {
    world.publishPolicy('plan-tls.test', { id: 'p1', mode: 'enforce', mx: ['mx.plan-tls.test'], maxAge: 86400 });
    const mta = engine();
    const plan = await mta.plan('plan-tls.test', ['MX.Plan-TLS.test.']);
    const c = plan.allowed[0]!;
    expect(c.host).toBe('mx.plan-tls.test');
    expect(c.requireTls).toBe(true);
    expect(c.requireValidCertificate).toBe(true);
    expect(c.tls).toMatchObject({ servername: 'mx.plan-tls.test', minVersion: 'TLSv1.2', rejectUnauthorized: true });
    expect(typeof c.tls.checkServerIdentity).toBe('function');
    expect(c.tls.ca).toEqual(expect.arrayContaining([world.ca.rootPem]));
    await mta.close();
  });

  it('§5, §5.1 enforce with no permitted MX: defer (temporary), never bounce', async () => {
    world.publishPolicy('plan-none-ok.test', { id: 'p1', mode: 'enforce', mx: ['mx.plan-none-ok.test'], maxAge: 86400 });
    const mta = engine();
    const plan = await mta.plan('plan-none-ok.test', ['other.example.test', 'a.mx.plan-none-ok.test']);
    expect(plan.allowed).toEqual([]);
    expect(plan.noCandidate?.action).toBe('defer');
    await mta.close();
  });

  it('§5 testing: every MX is used; non-matching hosts carry a result type to report', async () => {
    world.publishPolicy('plan-test.test', { id: 'p1', mode: 'testing', mx: ['mx.plan-test.test'], maxAge: 86400 });
    const mta = engine();
    const plan = await mta.plan('plan-test.test', ['other.example.test', 'mx.plan-test.test']);
    expect(plan.mode).toBe('testing');
    expect(plan.tlsRequired).toBe(false);
    expect(plan.allowed.map((c) => c.host)).toEqual(['other.example.test', 'mx.plan-test.test']);
    expect(plan.candidates[0]).toMatchObject({ matched: false, resultType: 'validation-failure' });
    expect(plan.candidates[1]).toMatchObject({ matched: true, requireValidCertificate: false });
    expect(plan.candidates[1]?.tls.rejectUnauthorized).toBe(false);
    await mta.close();
  });

  it('§5 mode none and no policy: behave as without MTA-STS', async () => {
    world.publishPolicy('plan-modenone.test', { id: 'p1', mode: 'none', mx: [], maxAge: 86400 });
    const mta = engine();
    for (const domain of ['plan-modenone.test', 'plan-nopolicy.test']) {
      const plan = await mta.plan(domain, ['whatever.example.test']);
      expect(plan.mode).toBe('none');
      expect(plan.tlsRequired).toBe(false);
      expect(plan.allowed).toHaveLength(1);
      expect(plan.allowed[0]?.matched).toBeUndefined();
    }
    await mta.close();
  });

  it('requireTlsEverywhere makes STARTTLS mandatory without a policy', async () => {
    const mta = createMtaSts({ ...world.mtaStsOptions(), requireTlsEverywhere: true });
    const plan = await mta.plan('plan-nopolicy2.test', ['mx.example.test']);
    expect(plan.tlsRequired).toBe(true);
    expect(plan.allowed[0]?.requireTls).toBe(true);
    await mta.close();
  });

  it('RFC 5321 §5.1 no MX record: the domain itself is the implicit MX, still matched against the policy', async () => {
    world.publishPolicy('implicit.test', { id: 'p1', mode: 'enforce', mx: ['mx.implicit.test'], maxAge: 86400 });
    world.dns.setRecords('implicit.test', { a: ['127.0.0.9'] });
    const mta = engine();
    const plan = await mta.plan('implicit.test');
    expect(plan.implicitMx).toBe(true);
    expect(plan.candidates.map((c) => c.host)).toEqual(['implicit.test']);
    expect(plan.allowed).toEqual([]);
    expect(plan.noCandidate?.action).toBe('defer');
    await mta.close();
  });

  it('RFC 7505 null MX: the domain accepts no mail (bounce)', async () => {
    world.dns.setRecords('nullmx.test', { mx: [{ exchange: '', priority: 0 }] });
    const mta = engine();
    const plan = await mta.plan('nullmx.test');
    expect(plan.nullMx).toBe(true);
    expect(plan.noCandidate?.action).toBe('bounce');
    await mta.close();
  });

  it('a domain that does not exist: bounce', async () => {
    const mta = engine();
    const plan = await mta.plan('no-such-domain.test');
    expect(plan.noCandidate?.action).toBe('bounce');
    await mta.close();
  });

  it('an MX lookup SERVFAIL is a temporary typed error', async () => {
    world.dns.fail('mxservfail.test', 'servfail');
    const mta = engine();
    await expect(mta.plan('mxservfail.test')).rejects.toMatchObject({ code: 'MTASTS_DNS_TEMPORARY', temporary: true });
    world.dns.fail('mxservfail.test', null);
    await mta.close();
  });

  it('the MX list is bounded and de-duplicated', async () => {
    const mta = createMtaSts({ ...world.mtaStsOptions(), maxMxHosts: 3 });
    const plan = await mta.plan('plan-bound.test', ['a.example.test', 'A.example.test.', 'b.example.test', 'c.example.test', 'd.example.test']);
    expect(plan.candidates.map((c) => c.host)).toEqual(['a.example.test', 'b.example.test']);
    await mta.close();
  });
});
