/**
 * Cached lookups without I/O (RFC 8461 §3.3 with `txtCheckIntervalMs`): a fresh cached policy whose TXT record was
 * checked recently is answered without DNS; past the interval, after `forget()` or once expired, discovery runs again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMtaSts, type DiscoveryTraceStep } from '../../src/engine.js';
import { MemoryPolicyStore } from '../../src/cache/store.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';

let world: TestWorld;
beforeAll(async () => {
  world = await createTestWorld();
  world.publishPolicy('hot.test', { id: 'h1', mode: 'enforce', mx: ['mx.hot.test'], maxAge: 3600 });
});
afterAll(async () => {
  await world?.close();
});

const txtQueries = () => world.dns.queries.filter((q) => q.name === '_mta-sts.hot.test' && q.type === 'TXT').length;

describe('cached lookups with txtCheckIntervalMs', () => {
  it('answer from the cache without DNS within the interval, and discover again after it, after forget() and after expiry', async () => {
    let clock = Date.now();
    const mta = createMtaSts({ ...world.mtaStsOptions(), txtCheckIntervalMs: 60_000, now: () => clock });
    try {
      world.dns.clearQueryLog();
      expect((await mta.getPolicy('hot.test')).source).toBe('fetched');
      for (let i = 0; i < 100; i++) {
        const hit = await mta.getPolicy('HOT.test.');
        expect(hit).toMatchObject({ status: 'policy', source: 'cache', txtId: 'h1', policy: { mode: 'enforce', id: 'h1' } });
      }
      expect(txtQueries()).toBe(1);
      clock += 61_000; // past the interval: the TXT record is checked again
      expect((await mta.getPolicy('hot.test')).source).toBe('cache');
      expect(txtQueries()).toBe(2);
      await mta.forget('hot.test');
      expect((await mta.getPolicy('hot.test')).source).toBe('fetched');
      expect(txtQueries()).toBe(3);
      clock += 3_600_000; // the policy expired (§3.3): never served from the cache
      const after = await mta.getPolicy('hot.test');
      expect(after.source).toBe('fetched');
      expect(after.policy?.expiresAt).toBeGreaterThan(clock);
    } finally {
      await mta.close();
    }
  });

  it('a caller editing the returned policy does not change the next answer', async () => {
    const mta = createMtaSts({ ...world.mtaStsOptions(), txtCheckIntervalMs: 60_000 });
    try {
      await mta.getPolicy('hot.test');
      const first = await mta.getPolicy('hot.test');
      expect(() => {
        (first.policy as { mode: string }).mode = 'none';
      }).toThrow(TypeError); // results are frozen
      expect((await mta.getPolicy('hot.test')).policy?.mode).toBe('enforce');
    } finally {
      await mta.close();
    }
  });

  it('are answered at once, without the discovery promises, keeping the last use, the trace step and frozen results', async () => {
    let clock = Date.now();
    const mta = createMtaSts({ ...world.mtaStsOptions(), txtCheckIntervalMs: 60_000, now: () => clock });
    try {
      await mta.getPolicy('hot.test');
      // Resolved before two microtask turns: no discovery (whose promise chain takes several turns) ran.
      let settled: unknown;
      void mta.getPolicy('hot.test').then((r) => (settled = r));
      await Promise.resolve();
      await Promise.resolve();
      expect(settled).toMatchObject({ status: 'policy', source: 'cache', txtId: 'h1' });
      expect(Object.isFrozen(settled)).toBe(true);
      expect(Object.isFrozen((settled as { policy: object }).policy)).toBe(true);
      // The use is recorded for the refresher (RFC 8461 §5.1: refresh what is in use, purge what is not).
      clock += 30_000;
      await mta.getPolicy('hot.test');
      expect((mta.store as MemoryPolicyStore).lastUsedAt('hot.test')).toBe(clock);
      // A tracer still sees the cache decision.
      const steps: DiscoveryTraceStep[] = [];
      const traced = await mta.getPolicy('hot.test', { trace: (step) => steps.push(step) });
      expect(traced.source).toBe('cache');
      expect(steps).toEqual([{ step: 'cache', decision: 'cached', source: 'cache', id: 'h1', expiresAt: traced.policy!.expiresAt }]);
      // An aborted signal still answers the cached policy as stale-cache (RFC 8461 §3.3), not the fast path.
      const aborted = await mta.getPolicy('hot.test', { signal: AbortSignal.abort() });
      expect(aborted).toMatchObject({ status: 'policy', source: 'stale-cache', error: { code: 'MTASTS_ABORTED' } });
    } finally {
      await mta.close();
    }
  });
});
