import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMtaSts } from '../../src/engine.js';
import { MemoryPolicyStore, type PolicyStoreEntry, type PolicyStore } from '../../src/cache/store.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';

let world: TestWorld;
beforeAll(async () => {
  world = await createTestWorld();
});
afterAll(async () => {
  await world?.close();
});

const fetchesOf = (domain: string) => world.httpsRequests.filter((r) => r.hostname === `mta-sts.${domain}`).length;

/** A store that keeps JSON strings, as a shared (Redis-like) store would. */
class JsonStore implements PolicyStore {
  readonly data = new Map<string, string>();
  async get(domain: string) {
    const raw = this.data.get(domain);
    return raw === undefined ? undefined : (JSON.parse(raw) as PolicyStoreEntry);
  }
  async set(domain: string, entry: PolicyStoreEntry) {
    this.data.set(domain, JSON.stringify(entry));
  }
  async delete(domain: string) {
    this.data.delete(domain);
  }
  async domains() {
    return [...this.data.keys()];
  }
}

describe('policy stores', () => {
  it('the memory store is bounded (least recently used evicted)', () => {
    const store = new MemoryPolicyStore({ max: 2 });
    const entry = (domain: string): PolicyStoreEntry => ({ domain, id: '1', text: '', fetchedAt: 0, expiresAt: 1, policy: { version: 'STSv1', mode: 'none', mx: [], maxAge: 0, extensions: [] } });
    store.set('a.test', entry('a.test'));
    store.set('b.test', entry('b.test'));
    store.get('a.test');
    store.set('c.test', entry('c.test'));
    expect(store.size).toBe(2);
    expect(store.get('b.test')).toBeUndefined();
    expect([...store.domains()].sort()).toEqual(['a.test', 'c.test']);
  });

  it('a fleet shares one store: a second engine uses the policy the first fetched', async () => {
    world.publishPolicy('fleet.test', { id: 'f1', mode: 'enforce', mx: ['mx.fleet.test'], maxAge: 86400 });
    const shared = new JsonStore();
    const a = createMtaSts({ ...world.mtaStsOptions(), store: shared });
    const b = createMtaSts({ ...world.mtaStsOptions(), store: shared });
    expect((await a.getPolicy('fleet.test')).source).toBe('fetched');
    const r = await b.getPolicy('fleet.test');
    expect(r.source).toBe('cache');
    expect(r.policy?.mode).toBe('enforce');
    expect(fetchesOf('fleet.test')).toBe(1);
    await a.close();
    await b.close();
  });

  it('a store that throws does not fail the lookup (and never downgrades a fetched policy)', async () => {
    world.publishPolicy('brokenstore.test', { id: 'b1', mode: 'enforce', mx: ['mx.brokenstore.test'], maxAge: 86400 });
    const broken: PolicyStore = {
      get: () => Promise.reject(new Error('store down')),
      set: () => {
        throw new Error('store down');
      },
      delete: () => undefined,
    };
    const warnings: string[] = [];
    const mta = createMtaSts({ ...world.mtaStsOptions(), store: broken, logger: { warn: (m) => warnings.push(m) } });
    const r = await mta.getPolicy('brokenstore.test');
    expect(r.status).toBe('policy');
    expect(r.policy?.mode).toBe('enforce');
    expect(warnings.length).toBeGreaterThan(0);
    await mta.close();
  });

  it('forget() drops a cached policy', async () => {
    world.publishPolicy('forget.test', { id: 'f1', mode: 'enforce', mx: ['mx.forget.test'], maxAge: 86400 });
    const mta = createMtaSts(world.mtaStsOptions());
    await mta.getPolicy('forget.test');
    expect(await mta.store.get('forget.test')).toBeDefined();
    await mta.forget('FORGET.test.');
    expect(await mta.store.get('forget.test')).toBeUndefined();
    await mta.close();
  });
});

describe('malformed store entries', () => {
  it('an entry of the wrong shape is ignored with a warning, and the policy is fetched', async () => {
    world.publishPolicy('malformed.test', { id: 'm1', mode: 'enforce', mx: ['mx.malformed.test'], maxAge: 86400 });
    const store = new JsonStore();
    store.data.set('malformed.test', JSON.stringify({ id: 'm1', policy: { mode: 'enforce' } }));
    const warnings: string[] = [];
    const mta = createMtaSts({ ...world.mtaStsOptions(), store, logger: { warn: (m) => warnings.push(m) } });
    const r = await mta.getPolicy('malformed.test');
    expect(r).toMatchObject({ status: 'policy', source: 'fetched' });
    expect(r.policy?.mx).toEqual(['mx.malformed.test']);
    expect(warnings.some((w) => w.includes('malformed'))).toBe(true);
    await mta.close();
  });
});
