/**
 * Shared DNS answers: a burst of deliveries to one cold domain asks DNS once per name (single flight, whatever the
 * TTL, plus a short reuse of positive MX/A/AAAA answers, never beyond their TTL); failures are never reused. Queries are counted at the test world's
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
      // The second argument ({ ttl: true }) is passed on: node:dns then reports TTLs.
      resolve4: ((n: string, o?: { ttl: true }) => (asked.push(`A ${n}`), (inner.resolve4 as (n: string, o?: { ttl: true }) => Promise<string[]>)(n, o))) as DnsResolver['resolve4'],
      resolve6: ((n: string, o?: { ttl: true }) => (asked.push(`AAAA ${n}`), (inner.resolve6 as (n: string, o?: { ttl: true }) => Promise<string[]>)(n, o))) as DnsResolver['resolve6'],
    };
    return { asked, resolver };
  }

  it('reuses a positive answer for at most answerTtlMs, and never a TXT answer', async () => {
    world.dns.setRecords('reuse.test', { a: ['192.0.2.7'], txt: ['hello'], ttl: 60 });
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

  it('RFC 1035 §3.2.1: a TTL 0 answer is never reused, but concurrent callers still share the one query in flight', async () => {
    world.dns.setRecords('zero.test', { a: ['192.0.2.8'], aaaa: ['2001:db8::8'] });
    const { asked, resolver } = counting(createDefaultResolver({ dnsServers: world.dns.servers, deadlineMs: 2000 }));
    const shared = shareAnswers(resolver, { answerTtlMs: 60_000 });
    const burst = await Promise.all(Array.from({ length: 50 }, () => shared.resolve6('zero.test')));
    expect(burst.every((answer) => answer[0] === '2001:db8::8')).toBe(true);
    await shared.resolve4('zero.test');
    await shared.resolve4('zero.test');
    await shared.resolve6('zero.test');
    expect(asked).toEqual(['AAAA zero.test', 'A zero.test', 'A zero.test', 'AAAA zero.test']);
  });

  it('reuses an answer no longer than its TTL, the lowest of the RRset (RFC 2181 §5.2); a TTL with its top bit set counts as 0 (§8)', async () => {
    const ttls: Record<string, number[]> = { 'one.test': [1, 60], 'msb.test': [2 ** 31, 2 ** 31], 'long.test': [60] };
    const asked: string[] = [];
    const records = (name: string) => (ttls[name] ?? []).map((ttl, i) => ({ address: `192.0.2.${i + 1}`, ttl }));
    const inner: DnsResolver = {
      resolveTxt: () => Promise.resolve([]),
      resolveMx: (name) => (asked.push(`MX ${name}`), Promise.resolve((ttls[name] ?? []).map((ttl) => ({ exchange: `mx.${name}`, priority: 10, ttl })))),
      resolve4: ((name: string, options?: { ttl?: boolean }) => (asked.push(`A ${name}`), Promise.resolve(options?.ttl ? records(name) : records(name).map((r) => r.address)))) as DnsResolver['resolve4'],
      resolve6: () => Promise.resolve([]),
    };
    const shared = shareAnswers(inner, { answerTtlMs: 60_000 });
    for (const name of Object.keys(ttls)) {
      expect(await shared.resolve4(name)).toEqual(records(name).map((r) => r.address)); // addresses, never the TTL records
      await shared.resolve4(name);
      await shared.resolveMx(name);
      await shared.resolveMx(name);
    }
    expect(asked).toEqual(['A one.test', 'MX one.test', 'A msb.test', 'A msb.test', 'MX msb.test', 'MX msb.test', 'A long.test', 'MX long.test']);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await shared.resolve4('one.test');
    await shared.resolveMx('one.test');
    await shared.resolve4('long.test');
    expect(asked.slice(8)).toEqual(['A one.test', 'MX one.test']);
  });

  it('a resolver that reports no TTL: A/AAAA answers are not reused; MX answers are, for answerTtlMs, marked as reused', async () => {
    const { asked, resolver } = counting(createDefaultResolver({ dnsServers: world.dns.servers, deadlineMs: 2000 }));
    world.dns.setRecords('nottl.test', { a: ['192.0.2.9'], mx: [{ exchange: 'mx.nottl.test', priority: 10 }], ttl: 60 });
    const plain: DnsResolver = { ...resolver, resolve4: (name) => resolver.resolve4(name) }; // drops `{ ttl: true }`
    const shared = shareAnswers(plain, { answerTtlMs: 60_000 });
    await shared.resolve4('nottl.test');
    await shared.resolve4('nottl.test');
    const first = await shared.resolveMxAnswer('nottl.test');
    expect(first).toMatchObject({ reused: false, label: undefined, records: [{ exchange: 'mx.nottl.test', priority: 10 }] });
    first.setLabel('v1');
    expect(await shared.resolveMxAnswer('nottl.test')).toMatchObject({ reused: true, label: 'v1' });
    expect(await shared.resolveMxAnswer('nottl.test', { fresh: true })).toMatchObject({ reused: false, label: undefined });
    expect(await shared.resolveMxAnswer('nottl.test')).toMatchObject({ reused: true, label: undefined });
    expect(asked).toEqual(['A nottl.test', 'A nottl.test', 'MX nottl.test', 'MX nottl.test']);
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
