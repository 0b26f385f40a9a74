/**
 * The Redis TLS-RPT store against a real redis-server: an evicting `maxmemory-policy` is warned about at start and
 * counts Redis evicts are reported, never lost silently; a Redis that is down fails `close()` within one deadline
 * whatever the number of domains; the at-most-once merge bookkeeping stays a handful of keys; record expiries are
 * judged by Redis's clock. Through the public `/redis` and `/tlsrpt` entry points.
 */
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { createRedisTlsRptStore } from '../../src/redis/index.js';
import { DEFAULT_AGGREGATION_LIMITS, createTlsRptReporter, type TlsRptError, type TlsRptEvent, type TlsRptPolicyRef } from '../../src/tlsrpt/index.js';
import { startRedis, type TestRedis } from './redis-server.js';

const DAY_MS = 86_400_000;
const servers: TestRedis[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});
async function redisServer(args: string[] = []): Promise<TestRedis> {
  const s = await startRedis(args);
  servers.push(s);
  return s;
}

const REPORTER = { organizationName: 'Sender', contactInfo: 'tlsrpt@sender.example', submitter: 'mta.sender.example' };
const policy = (domain: string): TlsRptPolicyRef => ({ type: 'sts', domain, policyString: ['version: STSv1', 'mode: enforce', `mx: mx.${domain}`, 'max_age: 86400'], mxHost: [`mx.${domain}`] });
const yesterdayNoon = (): number => Math.floor(Date.now() / DAY_MS) * DAY_MS - DAY_MS / 2;

async function until(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function scanKeys(redis: Redis, pattern: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = (await redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)) as [string, string[]];
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}

describe('Redis TLS-RPT store: eviction, outages, bounded bookkeeping', () => {
  it('maxmemory 3mb + allkeys-lru: a warning at start (event and log)', async () => {
    const server = await redisServer(['--maxmemory', '3mb', '--maxmemory-policy', 'allkeys-lru']);
    const events: TlsRptEvent[] = [];
    const logged: string[] = [];
    const logger = { warn: (message: string) => logged.push(message) };
    const reporter = createTlsRptReporter({ ...REPORTER, store: createRedisTlsRptStore({ redis: server.client(), prefix: 'w:', logger }), onEvent: (e) => events.push(e) });
    await until('the eviction warning', () => events.some((e) => e.type === 'warning' && e.code === 'TLSRPT_STORE_EVICTION'));
    expect(events.find((e) => e.type === 'warning')).toMatchObject({ message: expect.stringMatching(/allkeys-lru, not noeviction/) });
    expect(logged).toEqual([expect.stringMatching(/^tlsrpt: Redis maxmemory-policy is allkeys-lru, not noeviction/)]);
    await reporter.close();
  });

  it('maxmemory 3mb + allkeys-lru, 30 000 outcomes while a neighbour fills Redis: every session is either reported or reported lost', { timeout: 120_000 }, async () => {
    const server = await redisServer(['--maxmemory', '3mb', '--maxmemory-policy', 'allkeys-lru']);
    const redis = server.client();
    const events: TlsRptEvent[] = [];
    const reporter = createTlsRptReporter({ ...REPORTER, store: createRedisTlsRptStore({ redis, prefix: 'ev:' }), flushDelayMs: 600_000, onEvent: (e) => events.push(e) });

    // Outcomes for 3 000 domains in rounds, while a neighbour sharing the Redis writes 3 MB of its own keys.
    let recorded = 0;
    const filler = 'x'.repeat(4096);
    for (let round = 0; round < 30; round++) {
      for (let i = 0; i < 200; i++) {
        const domain = `d${(round * 100 + i) % 3000}.example`;
        for (let j = 0; j < 4; j++) reporter.recorder.record({ policy: policy(domain), at: yesterdayNoon(), success: true });
        reporter.recorder.record({ policy: policy(domain), at: yesterdayNoon(), success: false, failure: { resultType: 'certificate-expired', receivingMxHostname: `mx.${domain}`, receivingIp: '192.0.2.25' } });
        recorded += 5;
      }
      await reporter.recorder.flush();
      const pipeline = redis.pipeline();
      for (let i = 0; i < 25; i++) pipeline.set(`neighbour:${round}:${i}`, filler);
      await pipeline.exec();
    }
    const pending = await reporter.pending();
    const reported = pending.reduce((n, p) => n + p.report.policies.reduce((m, q) => m + q.summary['total-successful-session-count'] + q.summary['total-failure-session-count'], 0), 0);
    const lost = events.filter((e): e is { type: 'store-error'; error: TlsRptError } => e.type === 'store-error' && e.error.code === 'TLSRPT_COUNTS_LOST');
    const lostSessions = lost.reduce((n, e) => n + Number(e.error.details.sessions), 0);
    const evicted = Number(/evicted_keys:(\d+)/.exec(String(await redis.call('INFO', 'stats')))![1]);
    console.log(`eviction run: ${recorded} recorded, ${reported} reported, ${lostSessions} reported lost in ${lost.length} event(s), unknown: ${lost.some((e) => e.error.details.unknown)}, ${evicted} keys evicted`);
    expect(evicted).toBeGreaterThan(0);
    expect(reported).toBeLessThan(recorded); // Redis did evict counts ...
    expect(lost.length).toBeGreaterThan(0); // ... and the store said so
    if (lost.some((e) => e.error.details.unknown === true)) expect(reported + lostSessions).toBeLessThanOrEqual(recorded);
    else expect(reported + lostSessions).toBe(recorded); // every session accounted for
    await reporter.close();
  });

  it('CONFIG and INFO disabled: the warning says the policy could not be read, and why', async () => {
    const server = await redisServer(['--rename-command', 'CONFIG', '', '--rename-command', 'INFO', '', '--maxmemory-policy', 'allkeys-lru']);
    const redis = new Redis(server.url, { enableReadyCheck: false, maxRetriesPerRequest: null });
    try {
      const store = createRedisTlsRptStore({ redis, prefix: 'cfg:' });
      const events: string[] = [];
      store.subscribe((e) => events.push(`${e.type} ${e.error.code} ${e.error.message}`));
      await store.evictionChecked;
      await until('the warning', () => events.length > 0);
      expect(events[0]).toMatch(/^warning TLSRPT_STORE_EVICTION cannot read the Redis maxmemory-policy \(CONFIG is disabled/);
    } finally {
      redis.disconnect();
    }
  });

  it('noeviction: no warning', async () => {
    const server = await redisServer();
    const store = createRedisTlsRptStore({ redis: server.client(), prefix: 'ok:' });
    const events: unknown[] = [];
    store.subscribe((e) => events.push(e));
    await store.evictionChecked;
    await new Promise((r) => setTimeout(r, 20));
    expect(events).toEqual([]);
  });

  it('Redis down at close(): rejects within one command deadline, whatever the number of domains', { timeout: 30_000 }, async () => {
    const server = await redisServer();
    const store = createRedisTlsRptStore({ redis: server.client(), prefix: 'down:', commandTimeoutMs: 300 });
    const reporter = createTlsRptReporter({ ...REPORTER, store, flushDelayMs: 600_000 });
    for (let i = 0; i < 500; i++) reporter.recorder.record({ policy: policy(`d${i}.example`), success: true });
    await server.kill();
    const t0 = performance.now();
    const closed = reporter.close().then(
      () => undefined,
      (error: unknown) => error as TlsRptError,
    );
    const error = await Promise.race([closed, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 5000).unref())]);
    const elapsed = performance.now() - t0;
    expect(error).not.toBe('hung');
    expect(error).toMatchObject({ code: 'TLSRPT_STORE_FAILED', details: { unpersistedSessions: 500 } });
    expect(elapsed).toBeLessThan(1500);
  });

  it('5 000 outcomes over 300 domains in 50 flushes: the at-most-once bookkeeping is a handful of keys', { timeout: 60_000 }, async () => {
    const server = await redisServer();
    const redis = server.client();
    const reporter = createTlsRptReporter({ ...REPORTER, store: createRedisTlsRptStore({ redis, prefix: 'mk:' }), flushDelayMs: 600_000 });
    for (let i = 0; i < 5000; i++) {
      reporter.recorder.record({ policy: policy(`d${(i * 7) % 300}.example`), success: true });
      if (i % 100 === 99) await reporter.recorder.flush();
    }
    await reporter.close();
    const records = await scanKeys(redis, 'mk:tlsrpt:[0-9]*');
    const other = (await scanKeys(redis, 'mk:*')).filter((k) => !records.includes(k)).sort();
    expect(records).toHaveLength(300);
    // index, checksums, and one merge-number hash for this process and day
    expect(other).toHaveLength(3);
    expect(other.filter((k) => k.startsWith('mk:tlsrpt:seq:'))).toHaveLength(1);
    expect(Number(await redis.call('PTTL', other.find((k) => k.startsWith('mk:tlsrpt:seq:'))!))).toBeLessThanOrEqual(DAY_MS);
  });

  it('record expiries and the index are judged by Redis\'s clock, not a member\'s skewed one', async () => {
    const server = await redisServer();
    const store = createRedisTlsRptStore({ redis: server.client(), prefix: 'clk:', now: () => Date.now() + 10 * DAY_MS });
    const day = new Date(yesterdayNoon()).toISOString().slice(0, 10);
    await store.merge({ day, policyDomain: 'skew.example', policies: [{ policy: policy('skew.example'), successCount: 3, failureCount: 0, failures: [] }] }, DEFAULT_AGGREGATION_LIMITS);
    expect(await store.list()).toEqual([{ day, policyDomain: 'skew.example' }]);
    expect(await store.list()).toEqual([{ day, policyDomain: 'skew.example' }]);
  });
});
