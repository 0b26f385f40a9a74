/**
 * The engine with the SQLite policy store: a restart during an attack on discovery must not forget an enforce
 * policy (RFC 8461 §3.3: a cached policy stays in force until its max_age runs out, whatever DNS and HTTPS say), a
 * damaged file must not stop enforcement, and processes sharing one file fetch each policy once.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMtaSts, createSqlitePolicyStore, MemoryPolicyStore, type SqlitePolicyStoreEvent, type StoreErrorEvent } from '../../src/index.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';
import { spawnTs, type TsChild } from './child.js';

let world: TestWorld;
const dir = mkdtempSync(join(tmpdir(), 'mta-sts-engine-sqlite-'));
beforeAll(async () => {
  world = await createTestWorld();
});
afterAll(async () => {
  await world?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The attack: the policy host answers 503 and the TXT lookup fails (SERVFAIL). */
function blockDiscovery(domain: string): void {
  world.setPolicyHost(domain, { kind: 'status', status: 503 });
  world.dns.fail(`_mta-sts.${domain}`, 'servfail');
}
const fetchesOf = (domain: string) => world.httpsRequests.filter((r) => r.hostname === `mta-sts.${domain}`).length;

describe('engine + createSqlitePolicyStore', () => {
  it('a restart while the policy host is down still enforces the policy cached before the restart', async () => {
    const domain = 'restart.test';
    const path = join(dir, 'restart.db');
    world.publishPolicy(domain, { id: 'r1', mode: 'enforce', mx: [`mx.${domain}`], maxAge: 86400 });
    const beforeStore = createSqlitePolicyStore({ path });
    const before = createMtaSts({ ...world.mtaStsOptions(), store: beforeStore });
    expect((await before.getPolicy(domain)).source).toBe('fetched');
    await before.close();
    beforeStore.close();

    blockDiscovery(domain);
    const store = createSqlitePolicyStore({ path });
    const after = createMtaSts({ ...world.mtaStsOptions(), store });
    const lookup = await after.getPolicy(domain);
    expect(lookup).toMatchObject({ status: 'policy', policy: { mode: 'enforce', id: 'r1' } });
    const plan = await after.plan(domain, [`mx.${domain}`, 'mx.attacker.example']);
    expect(plan).toMatchObject({ mode: 'enforce', tlsRequired: true });
    expect(plan.allowed.map((c) => c.host)).toEqual([`mx.${domain}`]);
    await after.close();
    store.close();

    // Control: without the SQLite store, the same restart forgets the policy.
    const forgetful = createMtaSts({ ...world.mtaStsOptions(), store: new MemoryPolicyStore() });
    expect((await forgetful.getPolicy(domain)).status).not.toBe('policy');
    await forgetful.close();
  });

  it('a corrupt file at start does not throw: it is moved aside with an event, and the policy is enforced, also after the next restart', async () => {
    const domain = 'corrupt.test';
    const path = join(dir, 'corrupt.db');
    world.publishPolicy(domain, { id: 'c1', mode: 'enforce', mx: [`mx.${domain}`], maxAge: 86400 });
    writeFileSync(path, 'SQLite format 3\u0000'.padEnd(8192, '\u00ff')); // an SQLite header over garbage pages
    const events: SqlitePolicyStoreEvent[] = [];
    const errors: string[] = [];
    const store = createSqlitePolicyStore({ path, onEvent: (e) => events.push(e), logger: { error: (m) => errors.push(m) } });
    const engine = createMtaSts({ ...world.mtaStsOptions(), store });
    expect(await engine.getPolicy(domain)).toMatchObject({ status: 'policy', source: 'fetched', policy: { mode: 'enforce' } });
    expect(events.map((e) => e.type)).toContain('corrupt');
    expect(errors.join('\n')).toMatch(/moved to .*corrupt\.db\.corrupt-/);
    expect(readdirSync(dir).some((f) => f.startsWith('corrupt.db.corrupt-'))).toBe(true);

    blockDiscovery(domain);
    expect(await engine.getPolicy(domain)).toMatchObject({ status: 'policy', policy: { mode: 'enforce' } });
    await engine.close();
    store.close();
    const nextStore = createSqlitePolicyStore({ path });
    const next = createMtaSts({ ...world.mtaStsOptions(), store: nextStore });
    expect(await next.getPolicy(domain)).toMatchObject({ status: 'policy', source: 'stale-cache', policy: { mode: 'enforce', id: 'c1' } });
    await next.close();
    nextStore.close();
  });

  it('a database path that cannot be opened never reaches the caller: lookups work from memory, the failures are store-error events', async () => {
    const domain = 'unwritable.test';
    world.publishPolicy(domain, { id: 'u1', mode: 'enforce', mx: [`mx.${domain}`], maxAge: 86400 });
    const path = join(dir, 'no-such-dir', 'policies.db');
    const store = createSqlitePolicyStore({ path });
    const engine = createMtaSts({ ...world.mtaStsOptions(), store, storeTimeoutMs: 200 });
    const storeErrors: StoreErrorEvent[] = [];
    engine.on('store-error', (e) => storeErrors.push(e));
    expect(await engine.getPolicy(domain)).toMatchObject({ status: 'policy', source: 'fetched' });
    blockDiscovery(domain);
    expect(await engine.getPolicy(domain)).toMatchObject({ status: 'policy', source: 'stale-cache' });
    expect(storeErrors.length).toBeGreaterThan(0);
    expect((storeErrors[0]?.error as { code?: string }).code).toBe('MTASTS_STORE_FAILED');
    expect(existsSync(path)).toBe(false);
    await engine.close();
    store.close();
  });

  it('an expired policy with its host down is no policy (RFC 8461 §3.3), even from the database', async () => {
    const domain = 'expired.test';
    const path = join(dir, 'expired.db');
    world.publishPolicy(domain, { id: 'e1', mode: 'enforce', mx: [`mx.${domain}`], maxAge: 1 });
    const firstStore = createSqlitePolicyStore({ path });
    const first = createMtaSts({ ...world.mtaStsOptions(), store: firstStore });
    expect((await first.getPolicy(domain)).status).toBe('policy');
    await first.close();
    firstStore.close();
    await new Promise((r) => setTimeout(r, 1100));
    blockDiscovery(domain);
    const store = createSqlitePolicyStore({ path });
    const engine = createMtaSts({ ...world.mtaStsOptions(), store });
    expect((await engine.getPolicy(domain)).status).not.toBe('policy');
    expect((await engine.plan(domain, [`mx.${domain}`])).tlsRequired).toBe(false);
    await engine.close();
    store.close();
  });
});

describe('two processes sharing one database file (WAL)', () => {
  const children: TsChild[] = [];
  afterAll(() => {
    for (const c of children) c.child.kill('SIGKILL');
  });
  const start = (path: string, domain: string): TsChild => {
    const child = spawnTs('./fixtures/sqlite-engine.ts', [path, domain, JSON.stringify(world.mtaStsOptions())]);
    children.push(child);
    return child;
  };
  const resultOf = async (child: TsChild) => JSON.parse((await child.waitFor(/^result /, 60_000)).slice('result '.length)) as { status: string; source: string; mode: string; events: string[] };

  it('the second process makes zero fetches for a policy the first cached, while the first still has the file open', { timeout: 90_000 }, async () => {
    const domain = 'two-warm.test';
    const path = join(dir, 'two-warm.db');
    world.publishPolicy(domain, { id: 'w1', mode: 'enforce', mx: [`mx.${domain}`], maxAge: 86400 });
    writeFileSync(`${path}.go`, '');
    const a = start(path, domain);
    expect(await resultOf(a)).toMatchObject({ status: 'policy', source: 'fetched', mode: 'enforce' });
    const fetches = fetchesOf(domain);
    expect(fetches).toBe(1);
    const b = start(path, domain);
    expect(await resultOf(b)).toMatchObject({ status: 'policy', source: 'cache', mode: 'enforce', events: ['opened'] });
    expect(fetchesOf(domain)).toBe(fetches);
  });

  it('a cold domain looked up by both processes at once is fetched once (the fetch lease is a row in the shared file)', { timeout: 90_000 }, async () => {
    const domain = 'two-cold.test';
    const path = join(dir, 'two-cold.db');
    world.publishPolicy(domain, { id: 'k1', mode: 'enforce', mx: [`mx.${domain}`], maxAge: 86400, host: { kind: 'trickle', intervalMs: 5 } });
    const a = start(path, domain);
    const b = start(path, domain);
    await Promise.all([a.waitFor(/^ready$/, 60_000), b.waitFor(/^ready$/, 60_000)]);
    writeFileSync(`${path}.go`, '');
    const [ra, rb] = await Promise.all([resultOf(a), resultOf(b)]);
    expect([ra.source, rb.source].sort()).toEqual(['cache', 'fetched']);
    expect(ra.mode).toBe('enforce');
    expect(rb.mode).toBe('enforce');
    expect(fetchesOf(domain)).toBe(1);
  });
  it('processes creating the same new file at the same moment all open it (the schema is created once, under the write lock)', { timeout: 120_000 }, async () => {
    // Two files, four processes each, all started at once (before the fix about one file in three failed to open in one process).
    const paths = [0, 1].map((k) => join(dir, `created-${k}.db`));
    const kids = paths.flatMap((path) =>
      ['p0', 'p1', 'p2', 'p3'].map((name) => {
        const child = spawnTs('./fixtures/sqlite-open.ts', [path, name]);
        children.push(child);
        return child;
      }),
    );
    await Promise.all(kids.map((k) => k.waitFor(/^ready$/, 90_000)));
    for (const path of paths) writeFileSync(`${path}.go`, '');
    const events = await Promise.all(kids.map(async (k) => JSON.parse((await k.waitFor(/^events /, 60_000)).slice('events '.length)) as string[]));
    expect(events).toEqual(kids.map(() => ['opened']));
    for (const path of paths) {
      const store = createSqlitePolicyStore({ path });
      expect(store.domains().sort()).toEqual(['p0.example', 'p1.example', 'p2.example', 'p3.example']);
      store.close();
    }
  });
});
