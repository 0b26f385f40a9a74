import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedisTlsRptStore } from '../../src/redis/index.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';
import { DEFAULT_AGGREGATION_LIMITS, mergeDomainDayCounts, type DomainDayCounts } from '../../src/tlsrpt/aggregate.js';
import { gunzipTlsRptReport } from '../../src/tlsrpt/report.js';
import { createTlsRptReporter, type TlsRptEvent } from '../../src/tlsrpt/scheduler.js';
import type { TlsRptStoreEvent } from '../../src/tlsrpt/store.js';
import type { TlsRptReport } from '../../src/tlsrpt/types.js';
import { spawnTs } from '../stores/child.js';
import { startRedis, type TestRedis } from './redis-server.js';

let server: TestRedis;
let world: TestWorld;
let dir: string;
const received = new Map<string, TlsRptReport[]>();

beforeAll(async () => {
  server = await startRedis();
  world = await createTestWorld();
  dir = mkdtempSync(join(tmpdir(), 'mta-sts-redis-tlsrpt-'));
  world.addHttpsHost('tlsrpt.collector.test', {
    handler: (_req, res, body) => {
      void gunzipTlsRptReport(body).then(
        (report) => {
          const domain = report.policies[0]?.policy['policy-domain'] ?? '?';
          received.set(domain, [...(received.get(domain) ?? []), report]);
          res.writeHead(200).end();
        },
        () => res.writeHead(400).end(),
      );
    },
  });
});
afterAll(async () => {
  await world?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const YESTERDAY = () => new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
const policy = (domain: string, variant = 0) => ({ type: 'sts' as const, domain, policyString: ['version: STSv1', 'mode: enforce', `mx: mx${variant}.${domain}`, 'max_age: 86400'], mxHost: [`mx${variant}.${domain}`] });
function counts(day: string, domain: string, ok: number, failures: Array<[string, number]>, variant = 0): DomainDayCounts {
  const failed = failures.reduce((n, [, c]) => n + c, 0);
  return { day, policyDomain: domain, policies: [{ policy: policy(domain, variant), successCount: ok, failureCount: failed, failures: failures.map(([host, count]) => ({ resultType: 'certificate-expired' as const, receivingMxHostname: host, count })) }] };
}
const publish = (domain: string) => world.dns.setRecords(`_smtp._tls.${domain}`, { txt: ['v=TLSRPTv1; rua=https://tlsrpt.collector.test/r'] });

describe('createRedisTlsRptStore', () => {
  it('merges atomically with the same caps as the file spool (failure details fold into overflow)', async () => {
    const store = createRedisTlsRptStore({ redis: server.client(), prefix: 'caps:' });
    const limits = { ...DEFAULT_AGGREGATION_LIMITS, maxPoliciesPerDomain: 2, maxFailureDetailsPerPolicy: 2 };
    const day = YESTERDAY();
    const deltas = [
      counts(day, 'c.example', 3, [['a', 1], ['b', 2]]),
      counts(day, 'c.example', 1, [['c', 4], ['a', 1]]),
      counts(day, 'c.example', 2, [['d', 1]], 1),
      counts(day, 'c.example', 5, [['e', 1]], 2), // a third policy: over the cap, dropped
    ];
    let expected: DomainDayCounts | undefined;
    for (const d of deltas) {
      await store.merge(d, limits);
      expected = mergeDomainDayCounts(expected, d, limits);
    }
    const got = await store.get({ day, policyDomain: 'c.example' });
    const sort = (c: DomainDayCounts) => c.policies.map((p) => ({ ...p, failures: [...p.failures].sort((x, y) => `${x.receivingMxHostname}${x.failureReasonCode}`.localeCompare(`${y.receivingMxHostname}${y.failureReasonCode}`)) })).sort((x, y) => JSON.stringify(x.policy).localeCompare(JSON.stringify(y.policy)));
    expect(sort(got as DomainDayCounts)).toEqual(sort(expected as DomainDayCounts));
    expect(await store.list()).toEqual([{ day, policyDomain: 'c.example' }]);
  });

  it('a record expires retentionMs after its UTC day ends; the index forgets it', async () => {
    const redis = server.client();
    const store = createRedisTlsRptStore({ redis, prefix: 'ret:', retentionMs: 2 * 86_400_000 });
    const day = YESTERDAY();
    await store.merge(counts(day, 'r.example', 1, []), DEFAULT_AGGREGATION_LIMITS);
    expect(await redis.call('PEXPIRETIME', `ret:tlsrpt:${day}:r.example`)).toBe(Date.parse(`${day}T00:00:00Z`) + 3 * 86_400_000);
    // A day older than the retention expires at once: Redis drops the record, list() prunes the index.
    await store.merge(counts('2026-01-01', 'old.example', 1, []), DEFAULT_AGGREGATION_LIMITS);
    expect(await redis.exists('ret:tlsrpt:2026-01-01:old.example')).toBe(0);
    expect(await store.list()).toEqual([{ day, policyDomain: 'r.example' }]);
  });

  it('a closed day is claimed by one member at a time: the other sees nothing until it is released', async () => {
    const a = createRedisTlsRptStore({ redis: server.client(), prefix: 'claim:' });
    const b = createRedisTlsRptStore({ redis: server.client(), prefix: 'claim:' });
    const key = { day: YESTERDAY(), policyDomain: 'l.example' };
    await a.merge(counts(key.day, 'l.example', 2, []), DEFAULT_AGGREGATION_LIMITS);
    expect(await a.get(key)).toMatchObject({ policies: [{ successCount: 2 }] });
    expect(await b.get(key)).toBeUndefined();
    await b.setDelivery(key, { uniqueId: 'b', dueAt: 0, attempts: 0, nextAttemptAt: 0 }); // refused: a holds it
    await b.delete(key); // refused
    expect((await a.get(key))?.delivery).toBeUndefined();
    await a.setDelivery(key, { uniqueId: 'a1', dueAt: 1, attempts: 0, nextAttemptAt: 1 });
    expect((await a.get(key))?.delivery?.uniqueId).toBe('a1');
    await a.delete(key);
    expect(await b.get(key)).toBeUndefined();
    expect(await b.list()).toEqual([]);
    // Today's record (an open day) is not claimed: both members can preview it.
    const today = { day: new Date().toISOString().slice(0, 10), policyDomain: 'l.example' };
    await a.merge(counts(today.day, 'l.example', 1, []), DEFAULT_AGGREGATION_LIMITS);
    expect(await a.get(today)).toBeDefined();
    expect(await b.get(today)).toBeDefined();
  });

  it('counts merged after the report was read are not lost: they make a later, separate report', async () => {
    const a = createRedisTlsRptStore({ redis: server.client(), prefix: 'late:' });
    const b = createRedisTlsRptStore({ redis: server.client(), prefix: 'late:' });
    const key = { day: YESTERDAY(), policyDomain: 'late.example' };
    await a.merge(counts(key.day, 'late.example', 5, [['x', 2]]), DEFAULT_AGGREGATION_LIMITS);
    const read = await a.get(key);
    await a.setDelivery(key, { uniqueId: 'first', dueAt: 0, attempts: 0, nextAttemptAt: 0 });
    await b.merge(counts(key.day, 'late.example', 1, [['x', 1]]), DEFAULT_AGGREGATION_LIMITS); // a late member
    await a.delete(key); // what `read` held was reported
    expect(read?.policies[0]).toMatchObject({ successCount: 5, failureCount: 2 });
    const rest = await b.get(key);
    expect(rest?.policies).toEqual([expect.objectContaining({ successCount: 1, failureCount: 1, failures: [expect.objectContaining({ receivingMxHostname: 'x', count: 1 })] })]);
    expect(rest?.delivery).toBeUndefined();
  });

  it('a malformed record is reported, moved aside and read as missing', async () => {
    const redis = server.client();
    const store = createRedisTlsRptStore({ redis, prefix: 'bad:' });
    const events: TlsRptStoreEvent[] = [];
    store.subscribe((e) => events.push(e));
    const day = YESTERDAY();
    await store.merge(counts(day, 'm.example', 1, []), DEFAULT_AGGREGATION_LIMITS);
    const field = (await redis.hkeys(`bad:tlsrpt:${day}:m.example`)).find((f) => f.startsWith('p:')) as string;
    await redis.hset(`bad:tlsrpt:${day}:m.example`, field, '{"type":"dane"}');
    expect(await store.get({ day, policyDomain: 'm.example' })).toBeUndefined();
    expect(events).toEqual([expect.objectContaining({ type: 'corrupt', error: expect.objectContaining({ code: 'TLSRPT_SPOOL_CORRUPT' }) })]);
    expect(await redis.exists(`bad:tlsrpt:corrupt:${day}:m.example`)).toBe(1);
  });

  it('Redis down: merges fail fast (TLSRPT_STORE_FAILED), the recorder keeps the counts, and once Redis is back they are written exactly once', async () => {
    const redis = server.client();
    const store = createRedisTlsRptStore({ redis, prefix: 'down:', commandTimeoutMs: 200 });
    const events: TlsRptEvent[] = [];
    const reporter = createTlsRptReporter({ organizationName: 'O', contactInfo: 'c@sender.test', submitter: 's.test', store, flushDelayMs: 60_000, onEvent: (e) => events.push(e) });
    const at = Date.now() - 86_400_000;
    const record = (domain: string, n: number) => {
      for (let i = 0; i < n; i++) reporter.recorder.record({ policy: policy(domain), success: true, at });
    };
    // Killed: ioredis queues the merge and replays it after reconnecting, while the recorder retries it too.
    record('down.example', 4);
    await server.kill();
    await expect(reporter.recorder.flush()).rejects.toMatchObject({ code: 'TLSRPT_STORE_FAILED' });
    expect(events.some((e) => e.type === 'store-error')).toBe(true);
    record('down.example', 3);
    await server.restart();
    for (let i = 0; i < 50; i++) if (await reporter.recorder.flush().then(() => true, () => false)) break;
    expect((await store.get({ day: YESTERDAY(), policyDomain: 'down.example' }))?.policies[0]?.successCount).toBe(7);
    // Paused: the merge times out but Redis runs it when it resumes.
    record('paused.example', 5);
    server.pause();
    try {
      await expect(reporter.recorder.flush()).rejects.toMatchObject({ code: 'TLSRPT_STORE_FAILED' });
    } finally {
      server.resume();
    }
    record('paused.example', 2);
    for (let i = 0; i < 50; i++) if (await reporter.recorder.flush().then(() => true, () => false)) break;
    expect((await store.get({ day: YESTERDAY(), policyDomain: 'paused.example' }))?.policies[0]?.successCount).toBe(7);
    await reporter.close();
  });

  it('two processes record into Redis: one report with the exact summed counts, sent once', { timeout: 120_000 }, async () => {
    const domain = 'fleet.example';
    publish(domain);
    const caFile = join(dir, 'ca.pem');
    writeFileSync(caFile, world.ca.rootPem);
    const args = (ok: number, failed: number) => [server.url, 'fleet:', world.dns.servers[0] as string, String(world.httpsPort), caFile, domain, String(ok), String(failed)];
    const members = [spawnTs('../redis/fixtures/tlsrpt-member.ts', args(1234, 56)), spawnTs('../redis/fixtures/tlsrpt-member.ts', args(4321, 65))];
    await Promise.all(members.map((m) => m.waitFor(/^recorded$/, 60_000)));
    await server.client().set('fleet:go', '1');
    const results = await Promise.all(members.map(async (m) => JSON.parse((await m.waitFor(/^result /, 60_000)).slice('result '.length)) as { sent: number; failed: number }));
    await Promise.all(members.map((m) => m.exited));
    expect(results.reduce((n, r) => n + r.sent, 0)).toBe(1);
    expect(results.reduce((n, r) => n + r.failed, 0)).toBe(0);
    const reports = received.get(domain) ?? [];
    expect(reports).toHaveLength(1);
    const summary = reports[0]?.policies[0]?.summary;
    expect(summary).toEqual({ 'total-successful-session-count': 1234 + 4321, 'total-failure-session-count': 56 + 65 });
    expect(reports[0]?.policies[0]?.['failure-details']).toEqual([expect.objectContaining({ 'result-type': 'certificate-expired', 'failed-session-count': 121 })]);
    // Nothing left to send.
    expect(await createRedisTlsRptStore({ redis: server.client(), prefix: 'fleet:' }).list()).toEqual([]);
  });

  it('rejects bad options at creation', () => {
    expect(() => createRedisTlsRptStore({} as never)).toThrow(expect.objectContaining({ code: 'MTASTS_INVALID_OPTIONS' }));
    expect(() => createRedisTlsRptStore({ redis: server.client(), reportLockMs: 5 })).toThrow(expect.objectContaining({ code: 'MTASTS_INVALID_OPTIONS' }));
  });
});
