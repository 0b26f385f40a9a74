/**
 * Shared DNS answers: a burst of deliveries to one cold domain asks DNS once per name (single flight plus a short,
 * bounded reuse of positive MX/A/AAAA answers); failures are never reused. Queries are counted at the test world's
 * DNS server and policy GETs at its HTTPS server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMtaSts } from '../../src/engine.js';
import { resolveAddresses } from '../../src/discovery/lookup.js';
import { createDefaultResolver, type DnsResolver } from '../../src/discovery/resolver.js';
import { shareAnswers } from '../../src/discovery/shared-answers.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';

let world: TestWorld;
beforeAll(async () => {
  world = await createTestWorld();
});
afterAll(async () => {
  await world?.close();
});

const count = (name: string, type: string) => world.dns.queries.filter((q) => q.name === name && q.type === type).length;

describe('a burst to one cold domain (RFC 5321 §5.1 MX lookups shared)', () => {
  it('1,000 concurrent plans + MX address lookups: 1 TXT, 1 policy GET, 1 MX, 1 A per name, 0 failures', async () => {
    await world.addMx('burst.test', 'mx.burst.test');
    world.publishPolicy('burst.test', { id: 'b1', mode: 'enforce', mx: ['mx.burst.test'], maxAge: 86400 });
    world.dns.clearQueryLog();
    const gets = world.httpsRequests.length;
    const mta = createMtaSts(world.mtaStsOptions());
    try {
      const outcomes = await Promise.allSettled(
        Array.from({ length: 1000 }, async () => {
          const plan = await mta.plan('burst.test');
          const candidate = plan.allowed[0];
          if (plan.mode !== 'enforce' || !candidate) throw new Error(`unexpected plan: ${plan.mode}`);
          return resolveAddresses(mta.resolver, candidate.host, 10_000);
        }),
      );
      const failed = outcomes.filter((o) => o.status === 'rejected');
      expect(failed).toEqual([]);
      expect(count('_mta-sts.burst.test', 'TXT')).toBe(1);
      expect(world.httpsRequests.length - gets).toBe(1);
      expect(count('burst.test', 'MX')).toBe(1);
      expect(count('mta-sts.burst.test', 'A')).toBe(1);
      expect(count('mx.burst.test', 'A')).toBe(1);
      expect(count('mx.burst.test', 'AAAA')).toBe(1);
    } finally {
      await mta.close();
    }
  }, 60_000);

  it('a SERVFAIL is not reused: the next lookup asks again and succeeds', async () => {
    await world.addMx('flaky.test', 'mx.flaky.test');
    world.dns.fail('flaky.test', 'servfail', 'MX');
    const mta = createMtaSts(world.mtaStsOptions());
    try {
      await expect(mta.plan('flaky.test')).rejects.toMatchObject({ code: 'MTASTS_DNS_TEMPORARY' });
      world.dns.fail('flaky.test', null, 'MX');
      const plan = await mta.plan('flaky.test');
      expect(plan.candidates.map((c) => c.host)).toEqual(['mx.flaky.test']);
      expect(count('flaky.test', 'MX')).toBe(2);
    } finally {
      await mta.close();
    }
  });
});

describe('shareAnswers', () => {
  function counting(inner: DnsResolver) {
    const asked: string[] = [];
    const resolver: DnsResolver = {
      resolveTxt: (n) => (asked.push(`TXT ${n}`), inner.resolveTxt(n)),
      resolveMx: (n) => (asked.push(`MX ${n}`), inner.resolveMx(n)),
      resolve4: (n) => (asked.push(`A ${n}`), inner.resolve4(n)),
      resolve6: (n) => (asked.push(`AAAA ${n}`), inner.resolve6(n)),
    };
    return { asked, resolver };
  }

  it('reuses a positive answer only for answerTtlMs, and never a TXT answer', async () => {
    world.dns.setRecords('reuse.test', { a: ['192.0.2.7'], txt: ['hello'] });
    const { asked, resolver } = counting(createDefaultResolver({ dnsServers: world.dns.servers, deadlineMs: 2000 }));
    const shared = shareAnswers(resolver, { answerTtlMs: 150 });
    expect(await shared.resolve4('reuse.test')).toEqual(['192.0.2.7']);
    expect(await shared.resolve4('REUSE.test')).toEqual(['192.0.2.7']); // names are case-insensitive
    await shared.resolveTxt('reuse.test');
    await shared.resolveTxt('reuse.test');
    expect(asked).toEqual(['A reuse.test', 'TXT reuse.test', 'TXT reuse.test']);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await shared.resolve4('reuse.test');
    expect(asked.filter((q) => q.startsWith('A '))).toHaveLength(2);
  });

  it('negative answers are not reused (NXDOMAIN, NODATA)', async () => {
    const { asked, resolver } = counting(createDefaultResolver({ dnsServers: world.dns.servers, deadlineMs: 2000 }));
    const shared = shareAnswers(resolver, { answerTtlMs: 60_000 });
    await expect(shared.resolveMx('nowhere.test')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    await expect(shared.resolveMx('nowhere.test')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    expect(asked).toEqual(['MX nowhere.test', 'MX nowhere.test']);
  });

  it('concurrent callers share one query; each gets its own copy of the answer', async () => {
    world.dns.setRecords('copy.test', { mx: [{ exchange: 'a.copy.test', priority: 10 }, { exchange: 'b.copy.test', priority: 20 }] });
    const { asked, resolver } = counting(createDefaultResolver({ dnsServers: world.dns.servers, deadlineMs: 2000 }));
    const shared = shareAnswers(resolver);
    const [first, second] = await Promise.all([shared.resolveMx('copy.test'), shared.resolveMx('copy.test')]);
    expect(asked).toEqual(['MX copy.test']);
    first!.length = 0;
    expect(second).toHaveLength(2);
    expect(await shared.resolveMx('copy.test')).toHaveLength(2);
  });

  it('a resolver that throws synchronously is a rejected query, not an exception', async () => {
    const throwing: DnsResolver = {
      resolveTxt: () => {
        throw new Error('boom');
      },
      resolveMx: () => Promise.resolve([]),
      resolve4: () => Promise.resolve([]),
      resolve6: () => Promise.resolve([]),
    };
    await expect(shareAnswers(throwing).resolveTxt('x.test')).rejects.toThrow('boom');
  });
});
