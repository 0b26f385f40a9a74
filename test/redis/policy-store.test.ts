import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PolicyStoreEntry } from '../../src/cache/store.js';
import { parsePolicy } from '../../src/policy/policy-file.js';
import { createRedisPolicyStore, type RedisPolicyStoreEvent } from '../../src/redis/index.js';
import { startRedis, type TestRedis } from './redis-server.js';

let server: TestRedis;
let redis: Redis;

beforeAll(async () => {
  server = await startRedis();
  redis = server.client();
});
afterAll(async () => {
  await server?.stop();
});

const TEXT = 'version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmax_age: 86400\r\n';
function entry(domain: string, fetchedAt = Date.now(), text = TEXT): PolicyStoreEntry {
  const policy = parsePolicy(text);
  return { domain, id: 'abc123', policy, text, fetchedAt, expiresAt: fetchedAt + policy.maxAge * 1000 };
}

describe('createRedisPolicyStore', () => {
  it('round-trips a policy; the key expires with the policy (RFC 8461 §3.3: PXAT expiresAt)', async () => {
    const store = createRedisPolicyStore({ redis, prefix: 'rt:' });
    const e = entry('round.example');
    await store.set('round.example', e);
    expect(await store.get('round.example')).toEqual(e);
    expect(await redis.call('PEXPIRETIME', 'rt:policy:round.example')).toBe(e.expiresAt);
    expect(await store.get('other.example')).toBeUndefined();
    await store.delete('round.example');
    expect(await redis.exists('rt:policy:round.example')).toBe(0);
  });

  it('Redis drops the key when max_age runs out', async () => {
    const store = createRedisPolicyStore({ redis, prefix: 'ttl:' });
    const short = 'version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 1\n';
    await store.set('short.example', entry('short.example', Date.now(), short));
    expect(await store.get('short.example')).toBeDefined();
    await new Promise((r) => setTimeout(r, 1100));
    expect(await redis.exists('ttl:policy:short.example')).toBe(0);
    expect(await store.get('short.example')).toBeUndefined();
  });

  it('a withdrawn policy (max_age 0) deletes the shared entry (RFC 8461 §10.2)', async () => {
    const store = createRedisPolicyStore({ redis, prefix: 'wd:' });
    await store.set('w.example', entry('w.example'));
    await store.set('w.example', entry('w.example', Date.now(), 'version: STSv1\nmode: none\nmax_age: 0\n'));
    expect(await redis.exists('wd:policy:w.example')).toBe(0);
  });

  it('ignores malformed, foreign and tampered entries with a warning, never trusting them', async () => {
    const warnings: string[] = [];
    const events: RedisPolicyStoreEvent[] = [];
    const store = createRedisPolicyStore({ redis, prefix: 'bad:', logger: { warn: (m) => warnings.push(m) }, onEvent: (e) => events.push(e) });
    const good = JSON.parse(JSON.stringify({ v: 1, domain: 'm.example', id: 'abc123', text: TEXT, fetchedAt: 1_000, expiresAt: 1_000 + 86_400_000 }));
    const cases: Array<[string, string]> = [
      ['not json', '{"v":1,'],
      ['another format version', JSON.stringify({ ...good, v: 2 })],
      ['filed under another domain', JSON.stringify({ ...good, domain: 'evil.example' })],
      ['lives longer than max_age', JSON.stringify({ ...good, expiresAt: good.fetchedAt + 86_400_001 })],
      ['policy text that does not parse', JSON.stringify({ ...good, text: 'version: STSv1\nmode: enforce\nmax_age: 86400\n' })],
      ['bad id', JSON.stringify({ ...good, id: 'no spaces allowed' })],
      ['an array', '[]'],
    ];
    for (const [, raw] of cases) {
      await redis.set('bad:policy:m.example', raw);
      expect(await store.get('m.example')).toBeUndefined();
    }
    await redis.hset('bad:policy:h.example', 'x', '1'); // a key of the wrong type
    await expect(store.get('h.example')).rejects.toMatchObject({ code: 'MTASTS_STORE_FAILED' });
    expect(events).toHaveLength(cases.length);
    expect(events.every((e) => e.error.code === 'MTASTS_STORE_CORRUPT' && e.key === 'bad:policy:m.example')).toBe(true);
    expect(warnings).toHaveLength(cases.length);
    // The unmodified entry is accepted: the checks above are what rejected the others.
    await redis.set('bad:policy:m.example', JSON.stringify(good));
    expect((await store.get('m.example'))?.policy.mode).toBe('enforce');
  });

  it('every call has a deadline: a paused Redis times out, a killed one fails, and it works again when back', async () => {
    const c = server.client();
    const store = createRedisPolicyStore({ redis: c, prefix: 'to:', commandTimeoutMs: 200 });
    await store.set('t.example', entry('t.example'));
    server.pause();
    try {
      const started = Date.now();
      await expect(store.get('t.example')).rejects.toMatchObject({ code: 'MTASTS_STORE_TIMEOUT' });
      await expect(store.tryLock('fetch:t.example', 1000)).rejects.toMatchObject({ code: 'MTASTS_STORE_TIMEOUT' });
      await expect(store.domains()).rejects.toMatchObject({ code: 'MTASTS_STORE_TIMEOUT' });
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      server.resume();
    }
    await server.kill();
    const started = Date.now();
    await expect(store.get('t.example')).rejects.toMatchObject({ code: expect.stringMatching(/^MTASTS_STORE_(TIMEOUT|FAILED)$/) });
    await expect(store.set('t.example', entry('t.example'))).rejects.toMatchObject({ code: expect.stringMatching(/^MTASTS_STORE_(TIMEOUT|FAILED)$/) });
    expect(Date.now() - started).toBeLessThan(1500);
    await server.restart();
    // ioredis reconnects (and replays the SET it had queued: an abandoned command may still run later).
    let back: unknown = 'not yet';
    for (let i = 0; i < 40 && back === 'not yet'; i++) back = await store.get('never-set.example').catch(() => 'not yet');
    expect(back).toBeUndefined();
    await store.set('t2.example', entry('t2.example'));
    expect((await store.get('t2.example'))?.domain).toBe('t2.example');
  });

  it('leases: SET NX PX with a random token; only the holder unlocks; a lease expires', async () => {
    const a = createRedisPolicyStore({ redis: server.client(), prefix: 'lk:' });
    const b = createRedisPolicyStore({ redis: server.client(), prefix: 'lk:' });
    expect(await a.tryLock('fetch:l.example', 5000)).toBe(true);
    expect(await b.tryLock('fetch:l.example', 5000)).toBe(false);
    expect(await a.tryLock('fetch:l.example', 5000)).toBe(false); // not re-entrant
    await b.unlock('fetch:l.example'); // not b's: no effect
    expect(await redis.exists('lk:lock:fetch:l.example')).toBe(1);
    await a.unlock('fetch:l.example');
    expect(await b.tryLock('fetch:l.example', 150)).toBe(true);
    // b's lease runs out; a takes it; b's late unlock must not release a's lease.
    await new Promise((r) => setTimeout(r, 250));
    expect(await a.tryLock('fetch:l.example', 5000)).toBe(true);
    await b.unlock('fetch:l.example');
    expect(await b.tryLock('fetch:l.example', 5000)).toBe(false);
    expect(await a.tryLock('refresh:l.example', 5000)).toBe(true); // names are independent
    const token = await redis.get('lk:lock:fetch:l.example');
    expect(token).toMatch(/^[0-9a-f]{32}$/);
  });

  it('shares the fetch-failure backoff (RFC 8461 §3.3) with a TTL, validated on read', async () => {
    const warnings: string[] = [];
    const a = createRedisPolicyStore({ redis, prefix: 'ff:', logger: { warn: (m) => warnings.push(m) } });
    const b = createRedisPolicyStore({ redis: server.client(), prefix: 'ff:' });
    const failure = { at: 1_700_000_000_000, id: 'abc123', code: 'MTASTS_FETCH_FAILED', message: 'connection refused' };
    await a.setFetchFailure('f.example', failure, 300_000);
    expect(await b.getFetchFailure('f.example')).toEqual(failure);
    const ttl = Number(await redis.pttl('ff:fail:f.example'));
    expect(ttl).toBeGreaterThan(299_000);
    expect(ttl).toBeLessThanOrEqual(300_000);
    await redis.set('ff:fail:g.example', JSON.stringify({ at: 'yesterday', id: 'x', code: 'X', message: '' }));
    expect(await a.getFetchFailure('g.example')).toBeUndefined();
    expect(warnings).toHaveLength(1);
    expect(await a.getFetchFailure('none.example')).toBeUndefined();
  });

  it('domains() lists its own policies by SCAN, bounded, ignoring other prefixes', async () => {
    const store = createRedisPolicyStore({ redis, prefix: 'sc[1]*:' });
    const other = createRedisPolicyStore({ redis, prefix: 'sc:' });
    for (let i = 0; i < 30; i++) await store.set(`d${i}.example`, entry(`d${i}.example`));
    await other.set('x.example', entry('x.example'));
    expect((await store.domains()).sort()).toEqual(Array.from({ length: 30 }, (_, i) => `d${i}.example`).sort());
    const bounded = createRedisPolicyStore({ redis, prefix: 'sc[1]*:', maxDomains: 7 });
    expect(await bounded.domains()).toHaveLength(7);
  });

  it('rejects bad options at creation with MTASTS_INVALID_OPTIONS', () => {
    expect(() => createRedisPolicyStore({} as never)).toThrow(expect.objectContaining({ code: 'MTASTS_INVALID_OPTIONS' }));
    expect(() => createRedisPolicyStore({ redis, commandTimeoutMs: 0 })).toThrow(expect.objectContaining({ code: 'MTASTS_INVALID_OPTIONS' }));
    expect(() => createRedisPolicyStore({ redis, maxDomains: -1 })).toThrow(expect.objectContaining({ code: 'MTASTS_INVALID_OPTIONS' }));
  });
});
