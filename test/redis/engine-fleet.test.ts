/**
 * A fleet of engines sharing one Redis (RFC 8461 §3.3, §5.1): what the fleet must guarantee end to end.
 *
 * Several of these need the engine's two-tier cache and fleet coordination (a local in-memory copy in front of the
 * store, store-call timeouts, repopulation, `tryLock` / `getFetchFailure` use): the Redis store implements the
 * optional `PolicyStore` members they rely on. Each engine here has its own Redis client and store instance, as
 * separate MTAs would.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMtaSts, type MtaSts, type MtaStsOptions } from '../../src/engine.js';
import { createRedisPolicyStore } from '../../src/redis/index.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';
import { spawnTs } from '../stores/child.js';
import { startRedis, type TestRedis } from './redis-server.js';

let server: TestRedis;
let world: TestWorld;
const engines: MtaSts[] = [];

beforeAll(async () => {
  server = await startRedis();
  world = await createTestWorld();
});
afterAll(async () => {
  await Promise.all(engines.map((e) => e.close()));
  await world?.close();
  await server?.stop();
});

/** One fleet member: its own Redis connection and store, a shared prefix. */
function member(prefix: string, extra: Partial<MtaStsOptions> = {}): MtaSts {
  const engine = createMtaSts({ ...world.mtaStsOptions(), store: createRedisPolicyStore({ redis: server.client(), prefix, commandTimeoutMs: 300 }), ...extra });
  engines.push(engine);
  return engine;
}

const fetchesOf = (domain: string) => world.httpsRequests.filter((r) => r.hostname === `mta-sts.${domain}`).length;
function blockDiscovery(domain: string): void {
  world.setPolicyHost(domain, { kind: 'status', status: 503 });
  world.dns.fail(`_mta-sts.${domain}`, 'servfail');
}
function publish(domain: string, maxAge = 86400): void {
  world.publishPolicy(domain, { id: 'p1', mode: 'enforce', mx: [`mx.${domain}`], maxAge });
}

describe('engines sharing a Redis policy store', () => {
  it('the second member makes zero policy fetches for a domain the first cached', async () => {
    const domain = 'shared.test';
    publish(domain);
    const a = member('f1:');
    const b = member('f1:');
    expect((await a.getPolicy(domain)).source).toBe('fetched');
    const before = fetchesOf(domain);
    expect(await b.getPolicy(domain)).toMatchObject({ status: 'policy', policy: { mode: 'enforce' } });
    expect(fetchesOf(domain) - before).toBe(0);
  });

  it('a cold domain looked up by two members at once is fetched once (fleet lease fetch:<domain>)', async () => {
    const domain = 'cold.test';
    publish(domain);
    const a = member('f2:');
    const b = member('f2:');
    const [ra, rb] = await Promise.all([a.getPolicy(domain), b.getPolicy(domain)]);
    expect(ra).toMatchObject({ status: 'policy', policy: { mode: 'enforce' } });
    expect(rb).toMatchObject({ status: 'policy', policy: { mode: 'enforce' } });
    expect(fetchesOf(domain)).toBe(1);
  });

  it('two processes: the second makes zero fetches for a domain the first cached; a cold domain hit by both at once is fetched once', { timeout: 120_000 }, async () => {
    const warm = 'warm-proc.test';
    const cold = 'cold-proc.test';
    publish(warm);
    publish(cold);
    const redis = server.client();
    const options = JSON.stringify(world.mtaStsOptions());
    type Result = Array<{ domain: string; status: string; source: string; mode?: string }>;
    const run = async (prefix: string, groups: string[][]): Promise<Result[]> => {
      const members = groups.map((domains) => spawnTs('../redis/fixtures/policy-member.ts', [server.url, prefix, options, ...domains]));
      await redis.set(`${prefix}go`, '1');
      const out = await Promise.all(members.map(async (m) => JSON.parse((await m.waitFor(/^result /, 60_000)).slice('result '.length)) as Result));
      await Promise.all(members.map((m) => m.exited));
      return out;
    };
    // The first process caches the warm domain; the second finds it in Redis.
    const [first] = await run('p1:', [[warm]]);
    expect(first?.[0]).toMatchObject({ status: 'policy', source: 'fetched', mode: 'enforce' });
    const fetched = fetchesOf(warm);
    const [second] = await run('p1:', [[warm]]);
    expect(second?.[0]).toMatchObject({ status: 'policy', mode: 'enforce' });
    expect(fetchesOf(warm) - fetched).toBe(0);
    // Both processes look up the cold domain at the same moment.
    const both = await run('p2:', [[cold], [cold]]);
    for (const r of both) expect(r[0]).toMatchObject({ status: 'policy', mode: 'enforce' });
    expect(fetchesOf(cold)).toBe(1);
  });

  it('Redis killed mid-run: deliveries stay enforced, nothing throws, and Redis is repopulated when it returns', { timeout: 30_000 }, async () => {
    const domain = 'outage.test';
    publish(domain);
    const redis = server.client();
    const a = member('f3:');
    expect((await a.getPolicy(domain)).status).toBe('policy');
    blockDiscovery(domain); // the attacker blocks discovery while Redis is down
    await server.kill();
    try {
      const started = Date.now();
      const lookup = await a.getPolicy(domain);
      expect(lookup).toMatchObject({ status: 'policy', policy: { mode: 'enforce' } });
      const plan = await a.plan(domain, [`mx.${domain}`, 'mx.attacker.example']);
      expect(plan).toMatchObject({ mode: 'enforce', tlsRequired: true });
      expect(plan.allowed.map((c) => c.host)).toEqual([`mx.${domain}`]);
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await server.restart();
    }
    // The restarted Redis is empty; the member writes its copy back (on a store read, e.g. by the refresher).
    let repopulated = 0;
    for (let i = 0; i < 100 && repopulated === 0; i++) {
      await a.getPolicy(domain);
      await a.refreshDue();
      repopulated = await redis.exists(`f3:policy:${domain}`).catch(() => 0);
      if (repopulated === 0) await new Promise((r) => setTimeout(r, 100));
    }
    expect(repopulated).toBe(1);
    // A new member now gets the policy from Redis, with discovery still blocked.
    expect(await member('f3:').getPolicy(domain)).toMatchObject({ status: 'policy', policy: { mode: 'enforce' } });
  });

  it('a paused (slow) Redis: lookups answer from the local copy within the store timeout', async () => {
    const domain = 'slow.test';
    publish(domain);
    const a = member('f4:');
    expect((await a.getPolicy(domain)).status).toBe('policy');
    blockDiscovery(domain);
    server.pause();
    try {
      const started = Date.now();
      expect(await a.getPolicy(domain)).toMatchObject({ status: 'policy', policy: { mode: 'enforce' } });
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      server.resume();
    }
  });

  it('proactive refresh (RFC 8461 §5.1) is done by one member per domain per interval', async () => {
    const domain = 'refresh.test';
    publish(domain);
    let offset = 0;
    const now = () => Date.now() + offset;
    const a = member('f5:', { now, refreshIntervalMs: 0 });
    const b = member('f5:', { now, refreshIntervalMs: 0 });
    expect((await a.getPolicy(domain)).source).toBe('fetched');
    const before = fetchesOf(domain);
    offset = 13 * 3_600_000; // past half of max_age: due for refresh
    await Promise.all([a.refreshDue(), b.refreshDue()]);
    expect(fetchesOf(domain) - before).toBe(1);
  });

  it('the 5-minute fetch-failure backoff (RFC 8461 §3.3) is shared by the fleet', async () => {
    const domain = 'backoff.test';
    publish(domain);
    world.setPolicyHost(domain, { kind: 'status', status: 500 });
    const a = member('f6:');
    const b = member('f6:');
    expect((await a.getPolicy(domain)).status).toBe('fetch-error');
    expect(fetchesOf(domain)).toBe(1);
    const rb = await b.getPolicy(domain);
    expect(rb.status).toBe('fetch-error');
    expect(rb.error?.code).toBe('MTASTS_FETCH_BACKOFF');
    expect(fetchesOf(domain)).toBe(1);
  });

  it('an expired policy with its host down is no policy (RFC 8461 §3.3): Redis dropped it with max_age', async () => {
    const domain = 'expired-fleet.test';
    publish(domain, 1);
    const a = member('f7:');
    expect((await a.getPolicy(domain)).status).toBe('policy');
    await new Promise((r) => setTimeout(r, 1100));
    blockDiscovery(domain);
    const b = member('f7:');
    expect((await b.getPolicy(domain)).status).not.toBe('policy');
    expect((await a.getPolicy(domain)).status).not.toBe('policy');
  });

  it('a tampered shared entry is never trusted: the member fetches the real policy', async () => {
    const domain = 'tampered.test';
    publish(domain);
    const redis = server.client();
    const forged = { v: 1, domain, id: 'p1', text: 'version: STSv1\r\nmode: enforce\r\nmx: mx.attacker.example\r\nmax_age: 60\r\n', fetchedAt: Date.now(), expiresAt: Date.now() + 31_536_000_000 };
    await redis.set(`f8:policy:${domain}`, JSON.stringify(forged));
    const lookup = await member('f8:').getPolicy(domain);
    expect(lookup).toMatchObject({ status: 'policy', source: 'fetched', policy: { mx: [`mx.${domain}`] } });
  });
});
