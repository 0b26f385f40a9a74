import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMtaSts } from '../../src/engine.js';
import { createDefaultResolver, queryDns, type DnsResolver } from '../../src/discovery/resolver.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';

let world: TestWorld;
beforeAll(async () => {
  world = await createTestWorld();
});
afterAll(async () => {
  await world?.close();
});

describe('the resolver seam', () => {
  it('every name the engine needs (TXT, MX, policy host A/AAAA) goes through the injected resolver', async () => {
    world.publishPolicy('seam.test', { id: 's1', mode: 'enforce', mx: ['mx.seam.test'], maxAge: 86400 });
    world.dns.setRecords('seam.test', { mx: [{ exchange: 'mx.seam.test', priority: 10 }] });
    const inner = createDefaultResolver({ dnsServers: world.dns.servers });
    const asked: string[] = [];
    const counting: DnsResolver = {
      resolveTxt: (n) => (asked.push(`TXT ${n}`), inner.resolveTxt(n)),
      resolveMx: (n) => (asked.push(`MX ${n}`), inner.resolveMx(n)),
      resolve4: (n) => (asked.push(`A ${n}`), inner.resolve4(n)),
      resolve6: (n) => (asked.push(`AAAA ${n}`), inner.resolve6(n)),
    };
    const mta = createMtaSts({ resolver: counting, ca: [world.ca.rootPem], httpsPort: world.httpsPort });
    const plan = await mta.plan('seam.test');
    expect(plan.mode).toBe('enforce');
    expect(asked).toEqual(expect.arrayContaining(['TXT _mta-sts.seam.test', 'MX seam.test', 'A mta-sts.seam.test']));
    await mta.close();
  });

  it('a resolver that never answers is bounded by the DNS deadline', async () => {
    const never = () => new Promise<never>(() => {});
    const started = Date.now();
    const answer = await queryDns(never, { name: 'x.test', type: 'TXT' }, 200);
    expect(answer.kind).toBe('error');
    expect(answer.kind === 'error' && answer.error.code).toBe('MTASTS_DNS_TEMPORARY');
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('NXDOMAIN and NODATA are negative answers; SERVFAIL and REFUSED are temporary', async () => {
    world.dns.setRecords('neg.test', { a: ['192.0.2.1'] });
    world.dns.setRecords('refused.test', { txt: ['x'] });
    world.dns.fail('refused.test', 'refused');
    world.dns.setRecords('sf.test', { txt: ['x'] });
    world.dns.fail('sf.test', 'servfail');
    const r = createDefaultResolver({ dnsServers: world.dns.servers });
    expect(await queryDns(() => r.resolveTxt('nope.test'), { name: 'nope.test', type: 'TXT' }, 2000)).toEqual({ kind: 'not-found', nxdomain: true });
    expect(await queryDns(() => r.resolveTxt('neg.test'), { name: 'neg.test', type: 'TXT' }, 2000)).toEqual({ kind: 'not-found', nxdomain: false });
    expect((await queryDns(() => r.resolveTxt('refused.test'), { name: 'refused.test', type: 'TXT' }, 2000)).kind).toBe('error');
    expect((await queryDns(() => r.resolveTxt('sf.test'), { name: 'sf.test', type: 'TXT' }, 2000)).kind).toBe('error');
  });
});
