/** The local tier is bounded by bytes as well as by entries (a 64 KiB policy costs about 64 KB, not one slot). */
import { describe, expect, it } from 'vitest';
import { createMtaSts } from '../../src/engine.js';
import { MemoryPolicyStore, policySizeBytes, type PolicyStoreEntry } from '../../src/cache/store.js';

const BIG = `version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 86400\nx: ${'a'.repeat(65_000)}\n`;
const entry = (domain: string, text = BIG): PolicyStoreEntry => ({ domain, id: '1', text, fetchedAt: 0, expiresAt: 86_400_000, policy: { version: 'STSv1', mode: 'enforce', mx: ['mx.example.test'], maxAge: 86400, extensions: [] } });

describe('MemoryPolicyStore bounds', () => {
  it('the default store holds at most 64 MiB of policies (2,000 policies of 64 KiB do not all stay)', () => {
    const store = new MemoryPolicyStore();
    for (let i = 0; i < 2000; i++) store.set(`d${i}.test`, entry(`d${i}.test`));
    expect(store.sizeBytes).toBeLessThanOrEqual(64 * 1024 * 1024);
    expect(store.size).toBeLessThan(2000);
    expect(store.size).toBeGreaterThan(400);
    expect(store.peek('d1999.test')).toBeDefined(); // the most recent stay
    expect(store.peek('d0.test')).toBeUndefined();
  });

  it('the entry bound still applies to small policies', () => {
    const store = new MemoryPolicyStore({ max: 10 });
    for (let i = 0; i < 50; i++) store.set(`s${i}.test`, entry(`s${i}.test`, 'version: STSv1\nmode: none\nmax_age: 1\n'));
    expect(store.size).toBe(10);
  });

  it('the entry bound keeps the most recently used, and costs no memory up front (no slots preallocated)', () => {
    const before = process.memoryUsage();
    const store = new MemoryPolicyStore({ max: 1_000_000 });
    store.set('first.test', entry('first.test', 'version: STSv1\nmode: none\nmax_age: 1\n'));
    const after = process.memoryUsage();
    // Preallocating a million slots takes about 24 MB (key, value, next and prev arrays); one entry takes bytes.
    expect(after.heapUsed + after.arrayBuffers - (before.heapUsed + before.arrayBuffers)).toBeLessThan(4 * 1024 * 1024);
    const small = new MemoryPolicyStore({ max: 3 });
    for (const d of ['a', 'b', 'c']) small.set(`${d}.test`, entry(`${d}.test`, d));
    small.touch('a.test', 1); // a is now the most recently used; b the least
    small.set('d.test', entry('d.test', 'd'));
    expect([...small.domains()].sort()).toEqual(['a.test', 'c.test', 'd.test']);
  });

  it('the size estimate grows with the policy text', () => {
    expect(policySizeBytes(entry('a.test'))).toBeGreaterThan(2 * 65_000);
    expect(policySizeBytes(entry('a.test', 'short'))).toBeLessThan(1024);
  });

  it('the engine sizes its local tier from cacheMaxBytes / cacheMaxEntries, and rejects bad bounds at creation', async () => {
    const mta = createMtaSts({ cacheMaxBytes: 1024 * 1024 });
    const local = mta.store as MemoryPolicyStore;
    expect(local).toBeInstanceOf(MemoryPolicyStore);
    for (let i = 0; i < 100; i++) local.set(`e${i}.test`, entry(`e${i}.test`));
    expect(local.sizeBytes).toBeLessThanOrEqual(1024 * 1024);
    expect(local.size).toBeLessThan(10);
    await mta.close();
    expect(() => createMtaSts({ cacheMaxEntries: 0 })).toThrowError(expect.objectContaining({ code: 'MTASTS_INVALID_OPTIONS' }));
    expect(() => createMtaSts({ cacheMaxBytes: 1000 })).toThrowError(expect.objectContaining({ code: 'MTASTS_INVALID_OPTIONS' }));
    expect(() => new MemoryPolicyStore({ maxSizeBytes: Number.NaN })).toThrowError(expect.objectContaining({ code: 'MTASTS_INVALID_OPTIONS' }));
    expect(() => createMtaSts({ store: new MemoryPolicyStore(), cacheMaxEntries: 5 })).toThrowError(expect.objectContaining({ code: 'MTASTS_INVALID_OPTIONS' }));
  });

  it('refresh replaces an entry without renewing its recency or last use', () => {
    const store = new MemoryPolicyStore({ max: 2 });
    store.set('old.test', entry('old.test', 'a'));
    store.touch('old.test', 100);
    store.set('new.test', entry('new.test', 'b'));
    store.touch('new.test', 200);
    expect(store.replace('old.test', { ...entry('old.test', 'c'), fetchedAt: 500 })).toBe(true);
    expect(store.lastUsedAt('old.test')).toBe(100);
    store.set('third.test', entry('third.test', 'd'));
    expect(store.peek('old.test')).toBeUndefined(); // still the least recently used
    expect(store.peek('new.test')).toBeDefined();
    expect(store.replace('gone.test', entry('gone.test'))).toBe(false);
    expect(store.peek('gone.test')).toBeUndefined();
  });
});
