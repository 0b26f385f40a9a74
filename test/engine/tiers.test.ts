/**
 * Two tiers, always: a local in-memory copy in front of the configured store, and fleet coordination through the
 * store's optional methods. Two engines sharing one FleetState model two processes sharing Redis. Real loopback
 * world for DNS and HTTPS; the stores are in-process implementations of the PolicyStore contract.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMtaSts, type MtaStsOptions } from '../../src/engine.js';
import type { StoreErrorEvent } from '../../src/cache/tiered.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';
import { FleetState, FleetStore } from './stores.js';

let world: TestWorld;
beforeAll(async () => {
  world = await createTestWorld();
});
afterAll(async () => {
  await world?.close();
});

const engine = (store: FleetStore, extra: Partial<MtaStsOptions> = {}) =>
  createMtaSts({ ...world.mtaStsOptions(), store, fetchTimeoutMs: 2000, dnsTimeoutMs: 2000, refreshIntervalMs: 0, storeTimeoutMs: 200, ...extra });
const fetchesOf = (domain: string) => world.httpsRequests.filter((r) => r.hostname === `mta-sts.${domain}`).length;
const enforce = (domain: string, id = 'e1', extra: Partial<Parameters<TestWorld['publishPolicy']>[1]> = {}) =>
  world.publishPolicy(domain, { id, mode: 'enforce', mx: [`mx.${domain}`], maxAge: 86400, ...extra });

describe('the local tier in front of the store', () => {
  it('store down: a policy this process has seen keeps applying; the failure is a store-error event, not an exception', async () => {
    enforce('t-down.test');
    const store = new FleetStore();
    const mta = engine(store);
    const events: StoreErrorEvent[] = [];
    mta.on('store-error', (e) => events.push(e));
    await mta.getPolicy('t-down.test');
    store.mode = 'throw';
    world.dns.fail('_mta-sts.t-down.test', 'servfail');
    const r = await mta.getPolicy('t-down.test');
    expect(r).toMatchObject({ status: 'policy', source: 'stale-cache', policy: { mode: 'enforce' } });
    const plan = await mta.plan('t-down.test', ['mx.attacker.test']);
    expect(plan.mode).toBe('enforce');
    world.dns.fail('_mta-sts.t-down.test', null);
    // A new domain while the store is down: fetched and used; the failed write is an event.
    enforce('t-down2.test');
    expect((await mta.getPolicy('t-down2.test')).status).toBe('policy');
    // One event for the failure; while the store rests (circuit breaker) further calls are skipped, not reported.
    expect(events[0]).toMatchObject({ operation: 'get', key: 't-down2.test', timedOut: false }); // t-down.test needed no store call
    expect(String(events[0]!.error)).toContain('store down');
    await mta.close();
  });

  it('store hanging: every call is bounded by storeTimeoutMs and reported as timed out', async () => {
    enforce('t-hang.test');
    const store = new FleetStore();
    store.mode = 'hang';
    const mta = engine(store, { storeTimeoutMs: 300 });
    const events: StoreErrorEvent[] = [];
    mta.on('store-error', (e) => events.push(e));
    const started = Date.now();
    const r = await mta.getPolicy('t-hang.test');
    expect(r).toMatchObject({ status: 'policy', source: 'fetched' });
    expect(Date.now() - started).toBeLessThan(1000); // one timeout, then the breaker skips the store (4 calls × 300 ms without it)
    expect(events.length).toBeGreaterThan(0);
    expect(events.every((e) => e.timedOut)).toBe(true);
    world.dns.fail('_mta-sts.t-hang.test', 'servfail');
    expect(await mta.getPolicy('t-hang.test')).toMatchObject({ status: 'policy', source: 'stale-cache' });
    world.dns.fail('_mta-sts.t-hang.test', null);
    await mta.close();
  });

  it('store wiped: the local copy keeps applying and the refresher writes it back', async () => {
    enforce('t-wiped.test');
    const store = new FleetStore();
    const mta = engine(store);
    await mta.getPolicy('t-wiped.test');
    store.state.entries.clear();
    expect(await mta.getPolicy('t-wiped.test')).toMatchObject({ status: 'policy', source: 'cache' });
    await mta.refreshDue();
    await expect.poll(() => store.state.entries.has('t-wiped.test')).toBe(true);
    await mta.close();
  });

  it('store back after an outage: the writes that failed meanwhile are replayed', async () => {
    enforce('t-back.test');
    enforce('t-back2.test');
    const store = new FleetStore();
    const mta = engine(store);
    store.mode = 'throw';
    await mta.getPolicy('t-back.test');
    expect(store.state.entries.has('t-back.test')).toBe(false);
    store.mode = 'ok';
    await new Promise((resolve) => setTimeout(resolve, 1_100)); // the breaker's rest: 5 × storeTimeoutMs
    await mta.getPolicy('t-back2.test'); // any successful store call
    await expect.poll(() => store.state.entries.has('t-back.test')).toBe(true);
    await mta.close();
  });

  it('a restart with the policy host down is still enforced from the store (RFC 8461 §3.3)', async () => {
    enforce('t-restart.test');
    const state = new FleetState();
    const first = engine(new FleetStore(state));
    await first.getPolicy('t-restart.test');
    await first.close();
    world.setPolicyHost('t-restart.test', { kind: 'status', status: 503 });
    const second = engine(new FleetStore(state));
    expect(await second.getPolicy('t-restart.test')).toMatchObject({ status: 'policy', source: 'cache', policy: { mode: 'enforce' } });
    world.dns.fail('_mta-sts.t-restart.test', 'servfail');
    const third = engine(new FleetStore(state));
    expect(await third.getPolicy('t-restart.test')).toMatchObject({ status: 'policy', source: 'stale-cache', policy: { mode: 'enforce' } });
    world.dns.fail('_mta-sts.t-restart.test', null);
    await second.close();
    await third.close();
  });

  it('an expired stored policy with its host down means no policy (RFC 8461 §3.3)', async () => {
    enforce('t-expired.test', 'x1', { maxAge: 1 });
    const state = new FleetState();
    const first = engine(new FleetStore(state));
    await first.getPolicy('t-expired.test');
    await first.close();
    world.setPolicyHost('t-expired.test', { kind: 'status', status: 503 });
    const second = engine(new FleetStore(state), { now: () => Date.now() + 5_000 });
    const r = await second.getPolicy('t-expired.test');
    expect(r.status).toBe('fetch-error');
    expect(r.policy).toBeUndefined();
    await second.close();
  });

  it('entries the store hands back are validated: foreign, inconsistent or over-long-lived entries are refused', async () => {
    enforce('t-forged.test', 'f1');
    const state = new FleetState();
    const honest = { domain: 't-forged.test', id: 'f1', text: 'version: STSv1\nmode: enforce\nmx: mx.t-forged.test\nmax_age: 86400\n', fetchedAt: Date.now(), expiresAt: Date.now() + 86_400_000, policy: { version: 'STSv1', mode: 'enforce', mx: ['mx.t-forged.test'], maxAge: 86400, extensions: [] } };
    const forgeries = [
      { ...honest, domain: 'other.test' },
      { ...honest, policy: { ...honest.policy, mx: ['mx.attacker.test'] } },
      { ...honest, expiresAt: Date.now() + 10 * 86_400_000 },
      { ...honest, text: 'garbage' },
    ];
    for (const forged of forgeries) {
      state.entries.set('t-forged.test', JSON.stringify(forged));
      const warnings: string[] = [];
      const before = fetchesOf('t-forged.test');
      const mta = engine(new FleetStore(state), { logger: { warn: (m) => warnings.push(m) } });
      const r = await mta.getPolicy('t-forged.test');
      expect(r).toMatchObject({ status: 'policy', source: 'fetched' });
      expect(r.policy?.mx).toEqual(['mx.t-forged.test']);
      expect(fetchesOf('t-forged.test')).toBe(before + 1);
      expect(warnings.some((w) => w.includes('malformed'))).toBe(true);
      await mta.close();
    }
  });
});

describe('fleet coordination through the store', () => {
  it('a second process makes zero policy fetches for a domain the first cached', async () => {
    enforce('f-warm.test');
    const state = new FleetState();
    const a = engine(new FleetStore(state));
    const bStore = new FleetStore(state);
    const b = engine(bStore);
    await a.getPolicy('f-warm.test');
    const fetches = fetchesOf('f-warm.test');
    expect(await b.getPolicy('f-warm.test')).toMatchObject({ status: 'policy', source: 'cache' });
    expect(await b.getPolicy('f-warm.test')).toMatchObject({ status: 'policy', source: 'cache' });
    expect(fetchesOf('f-warm.test')).toBe(fetches);
    expect(bStore.calls.get).toBe(1); // the second lookup is served by b's local tier
    await a.close();
    await b.close();
  });

  it('a cold domain hit by two processes at once is fetched once (fetch lease + bounded wait)', async () => {
    enforce('f-cold.test', 'c1', { host: { kind: 'trickle', intervalMs: 3 } });
    const state = new FleetState();
    const a = engine(new FleetStore(state));
    const b = engine(new FleetStore(state));
    const [ra, rb] = await Promise.all([a.getPolicy('f-cold.test'), b.getPolicy('f-cold.test')]);
    expect(ra.policy?.mode).toBe('enforce');
    expect(rb.policy?.mode).toBe('enforce');
    expect(fetchesOf('f-cold.test')).toBe(1);
    expect(state.locks.has('fetch:f-cold.test')).toBe(false); // released
    await a.close();
    await b.close();
  });

  it('a dead lease holder delays a cold fetch by at most fleetWaitMs', async () => {
    enforce('f-dead.test');
    const state = new FleetState();
    state.locks.set('fetch:f-dead.test', { owner: -1, until: Date.now() + 3_600_000 });
    const mta = engine(new FleetStore(state), { fleetWaitMs: 300 });
    const started = Date.now();
    const r = await mta.getPolicy('f-dead.test');
    const elapsed = Date.now() - started;
    expect(r).toMatchObject({ status: 'policy', source: 'fetched' });
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(1500);
    await mta.close();
  });

  it('the fetch-failure backoff is shared: another member does not retry within five minutes (RFC 8461 §3.3)', async () => {
    enforce('f-backoff.test', 'b1', { host: { kind: 'status', status: 503 } });
    const state = new FleetState();
    const a = engine(new FleetStore(state));
    const b = engine(new FleetStore(state));
    expect((await a.getPolicy('f-backoff.test')).error?.code).toBe('MTASTS_HTTP_STATUS');
    const fetches = fetchesOf('f-backoff.test');
    const r = await b.getPolicy('f-backoff.test');
    expect(r.error?.code).toBe('MTASTS_FETCH_BACKOFF');
    expect(r.status).toBe('fetch-error');
    expect(fetchesOf('f-backoff.test')).toBe(fetches);
    await a.close();
    await b.close();
  });

  it('each domain is refreshed by one member per interval; the other adopts the result', async () => {
    enforce('f-refresh.test', 'r1', { maxAge: 7200 });
    const state = new FleetState();
    let t = Date.now();
    const now = () => t;
    const a = engine(new FleetStore(state), { now, refreshIntervalMs: 600_000 });
    const b = engine(new FleetStore(state), { now, refreshIntervalMs: 600_000 });
    await a.getPolicy('f-refresh.test');
    await b.getPolicy('f-refresh.test');
    const fetches = fetchesOf('f-refresh.test');
    t += 3_700_000; // past half of max_age: due
    const [na, nb] = await Promise.all([a.refreshDue(), b.refreshDue()]);
    expect(na + nb).toBe(1);
    expect(fetchesOf('f-refresh.test')).toBe(fetches + 1);
    // The member that did not refresh adopts the newer entry on its next pass (no fetch).
    await a.refreshDue();
    await b.refreshDue();
    expect(fetchesOf('f-refresh.test')).toBe(fetches + 1);
    for (const mta of [a, b]) expect((await mta.getPolicy('f-refresh.test')).policy?.fetchedAt).toBe(t);
    await a.close();
    await b.close();
  });

  it('a store without the optional fleet methods still works (no coordination)', async () => {
    enforce('f-plain.test');
    const data = new Map<string, unknown>();
    const plain = { get: (d: string) => data.get(d) as never, set: (d: string, e: unknown) => void data.set(d, e), delete: (d: string) => void data.delete(d) };
    const mta = createMtaSts({ ...world.mtaStsOptions(), store: plain, refreshIntervalMs: 0 });
    expect((await mta.getPolicy('f-plain.test')).status).toBe('policy');
    expect(data.has('f-plain.test')).toBe(true);
    expect(() => createMtaSts({ store: {} as never })).toThrowError(expect.objectContaining({ code: 'MTASTS_INVALID_OPTIONS' }));
    await mta.close();
  });
});
