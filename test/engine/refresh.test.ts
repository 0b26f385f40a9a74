/**
 * Proactive refresh like a careful MTA (RFC 8461 §3.3, §5.1, §10.2): TXT id first, refetch only when it changed or
 * the policy nears expiry; unused domains let go; work spread with jitter and bounded concurrency; backoff kept.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMtaSts, type MtaStsOptions } from '../../src/engine.js';
import type { MemoryPolicyStore } from '../../src/cache/store.js';
import { Refresher } from '../../src/engine/refresher.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';

let world: TestWorld;
beforeAll(async () => {
  world = await createTestWorld();
});
afterAll(async () => {
  await world?.close();
});

const DAY = 86_400_000;
function clock() {
  let t = Date.now();
  return { now: () => t, advance: (ms: number) => (t += ms) };
}
const engine = (extra: Partial<MtaStsOptions> = {}) => createMtaSts({ ...world.mtaStsOptions(), fetchTimeoutMs: 2000, dnsTimeoutMs: 2000, refreshIntervalMs: 0, ...extra });
const fetchesOf = (domain: string) => world.httpsRequests.filter((r) => r.hostname === `mta-sts.${domain}`).length;
const txtQueriesOf = (domain: string) => world.dns.queries.filter((q) => q.name.toLowerCase() === `_mta-sts.${domain}` && q.type === 'TXT').length;
const publish = (domain: string, id: string, maxAge: number) => world.publishPolicy(domain, { id, mode: 'enforce', mx: [`mx.${domain}`], maxAge });

describe('refresh: TXT id first, fetch only when needed', () => {
  it('an unchanged id and a policy far from expiry cost one TXT query and no HTTPS fetch (a day later)', async () => {
    publish('r-same.test', 's1', 7 * 86400);
    const c = clock();
    const mta = engine({ now: c.now });
    await mta.getPolicy('r-same.test');
    const fetches = fetchesOf('r-same.test');
    const txt = txtQueriesOf('r-same.test');
    c.advance(1.1 * DAY);
    expect(await mta.refreshDue()).toBe(0);
    expect(fetchesOf('r-same.test')).toBe(fetches);
    expect(txtQueriesOf('r-same.test')).toBe(txt + 1);
    await mta.close();
  });

  it('a changed id is refetched by the refresher', async () => {
    publish('r-changed.test', 'c1', 7 * 86400);
    const c = clock();
    const mta = engine({ now: c.now });
    await mta.getPolicy('r-changed.test');
    publish('r-changed.test', 'c2', 7 * 86400);
    c.advance(60_000);
    expect(await mta.refreshDue()).toBe(1);
    expect((mta.store as MemoryPolicyStore).peek('r-changed.test')?.id).toBe('c2');
    await mta.close();
  });

  it('a policy past half its max_age is refetched although the id is unchanged', async () => {
    publish('r-aging.test', 'a1', 7 * 86400);
    const c = clock();
    const mta = engine({ now: c.now });
    await mta.getPolicy('r-aging.test');
    const fetches = fetchesOf('r-aging.test');
    c.advance(3.6 * DAY);
    expect(await mta.refreshDue()).toBe(1);
    expect(fetchesOf('r-aging.test')).toBe(fetches + 1);
    expect((mta.store as MemoryPolicyStore).peek('r-aging.test')?.fetchedAt).toBe(c.now());
    await mta.close();
  });

  it('the 5-minute failure backoff holds across refresh passes (RFC 8461 §3.3)', async () => {
    publish('r-backoff.test', 'b1', 7 * 86400);
    const c = clock();
    const mta = engine({ now: c.now });
    await mta.getPolicy('r-backoff.test');
    world.publishPolicy('r-backoff.test', { id: 'b2', mode: 'enforce', mx: ['mx.r-backoff.test'], maxAge: 86400, host: { kind: 'status', status: 503 } });
    expect(await mta.refreshDue()).toBe(0);
    const fetches = fetchesOf('r-backoff.test');
    c.advance(60_000);
    expect(await mta.refreshDue()).toBe(0);
    expect(fetchesOf('r-backoff.test')).toBe(fetches);
    expect((await mta.getPolicy('r-backoff.test')).policy?.id).toBe('b1');
    await mta.close();
  });
});

describe('refresh: last use, purge, recency', () => {
  it('a domain unused for 30 days is dropped; refresh passes do not count as use', async () => {
    publish('r-unused.test', 'u1', 365 * 86400);
    publish('r-used.test', 'u1', 365 * 86400);
    const c = clock();
    const mta = engine({ now: c.now });
    const local = mta.store as MemoryPolicyStore;
    await mta.getPolicy('r-unused.test');
    await mta.getPolicy('r-used.test');
    const usedAt = local.lastUsedAt('r-unused.test');
    for (let day = 1; day <= 31; day++) {
      c.advance(DAY);
      if (day === 20) await mta.getPolicy('r-used.test');
      await mta.refreshDue();
      if (day === 29) expect(local.lastUsedAt('r-unused.test')).toBe(usedAt);
    }
    expect(local.peek('r-unused.test')).toBeUndefined();
    expect(local.peek('r-used.test')).toBeDefined();
    await mta.close();
  });

  it('purgeUnusedAfterMs is configurable', async () => {
    publish('r-purge.test', 'p1', 365 * 86400);
    const c = clock();
    const mta = engine({ now: c.now, purgeUnusedAfterMs: DAY });
    await mta.getPolicy('r-purge.test');
    c.advance(2 * DAY);
    await mta.refreshDue();
    expect((mta.store as MemoryPolicyStore).peek('r-purge.test')).toBeUndefined();
    await mta.close();
  });
});

describe('refresh: spread and bounded', () => {
  it('a timed pass spreads its domains over the interval in random order, at most `concurrency` at a time', async () => {
    const domains = Array.from({ length: 24 }, (_, i) => ({ domain: `d${i}.test`, lastUsedAt: Date.now() }));
    const starts: Array<{ domain: string; at: number }> = [];
    let running = 0;
    let peak = 0;
    const refresher = new Refresher({
      intervalMs: 1000,
      concurrency: 3,
      purgeUnusedAfterMs: DAY,
      now: Date.now,
      logger: {},
      candidates: () => domains,
      purge: () => undefined,
      refreshOne: async (domain) => {
        starts.push({ domain, at: Date.now() });
        peak = Math.max(peak, ++running);
        await new Promise((resolve) => setTimeout(resolve, 40));
        running--;
        return true;
      },
    });
    const t0 = Date.now();
    expect(await refresher.run(500)).toBe(24);
    refresher.close();
    expect(peak).toBeLessThanOrEqual(3);
    expect(starts).toHaveLength(24);
    expect(starts.at(-1)!.at - t0).toBeGreaterThan(250); // spread, not all at once
    expect(starts.map((s) => s.domain)).not.toEqual(domains.map((d) => d.domain)); // jittered order
  });

  it('refreshConcurrency is validated at creation', () => {
    expect(() => createMtaSts({ refreshConcurrency: 0 })).toThrowError(expect.objectContaining({ code: 'MTASTS_INVALID_OPTIONS' }));
    expect(() => createMtaSts({ purgeUnusedAfterMs: -1 })).toThrowError(expect.objectContaining({ code: 'MTASTS_INVALID_OPTIONS' }));
  });
});
