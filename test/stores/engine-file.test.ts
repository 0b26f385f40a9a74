/**
 * The engine with the file store: a restart during an attack on discovery must not forget an enforce policy
 * (RFC 8461 §3.3: a cached policy stays in force until its max_age runs out, whatever DNS and HTTPS say).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFilePolicyStore, type FilePolicyStoreEvent } from '../../src/cache/file-store.js';
import { MemoryPolicyStore } from '../../src/cache/store.js';
import { createMtaSts } from '../../src/engine.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';

let world: TestWorld;
const dir = mkdtempSync(join(tmpdir(), 'mta-sts-engine-file-'));
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

describe('engine + createFilePolicyStore', () => {
  it('a restart while the policy host is down still enforces the policy cached before the restart', async () => {
    const domain = 'restart.test';
    const path = join(dir, 'restart.jsonl');
    world.publishPolicy(domain, { id: 'r1', mode: 'enforce', mx: [`mx.${domain}`], maxAge: 86400 });
    const before = createMtaSts({ ...world.mtaStsOptions(), store: createFilePolicyStore({ path }) });
    expect((await before.getPolicy(domain)).source).toBe('fetched');
    await (before.store as ReturnType<typeof createFilePolicyStore>).close();
    await before.close();

    blockDiscovery(domain);
    const after = createMtaSts({ ...world.mtaStsOptions(), store: createFilePolicyStore({ path }) });
    const lookup = await after.getPolicy(domain);
    expect(lookup).toMatchObject({ status: 'policy', policy: { mode: 'enforce', id: 'r1' } });
    const plan = await after.plan(domain, [`mx.${domain}`, 'mx.attacker.example']);
    expect(plan).toMatchObject({ mode: 'enforce', tlsRequired: true });
    expect(plan.allowed.map((c) => c.host)).toEqual([`mx.${domain}`]);
    await after.close();

    // Control: without the file store, the same restart forgets the policy.
    const forgetful = createMtaSts({ ...world.mtaStsOptions(), store: new MemoryPolicyStore() });
    expect((await forgetful.getPolicy(domain)).status).not.toBe('policy');
    await forgetful.close();
  });

  it('a corrupt file is reported (event + log) and the valid entries still enforce', async () => {
    const domain = 'corrupt.test';
    const path = join(dir, 'corrupt.jsonl');
    world.publishPolicy(domain, { id: 'c1', mode: 'enforce', mx: [`mx.${domain}`], maxAge: 86400 });
    const first = createMtaSts({ ...world.mtaStsOptions(), store: createFilePolicyStore({ path }) });
    await first.getPolicy(domain);
    await (first.store as ReturnType<typeof createFilePolicyStore>).close();
    await first.close();
    // Damage: a half-written line and garbage around the valid entry.
    writeFileSync(path, `${readFileSync(path, 'utf8')}{"v":1,"domain":"other.te\n\u0000\u0000\u0000\n`);

    blockDiscovery(domain);
    const events: FilePolicyStoreEvent[] = [];
    const errors: string[] = [];
    const store = createFilePolicyStore({ path, onEvent: (e) => events.push(e), logger: { error: (m) => errors.push(m) } });
    const engine = createMtaSts({ ...world.mtaStsOptions(), store });
    expect(await engine.getPolicy(domain)).toMatchObject({ status: 'policy', policy: { mode: 'enforce' } });
    await store.ready; // the load-time validation pass has reported what it found
    expect(events.map((e) => e.type)).toContain('corrupt');
    expect(errors.join('\n')).toMatch(/MTASTS_STORE_CORRUPT|invalid entries/);
    await engine.close();
  });

  it('an unwritable cache path never reaches the caller: lookups work from memory', async () => {
    const domain = 'unwritable.test';
    world.publishPolicy(domain, { id: 'u1', mode: 'enforce', mx: [`mx.${domain}`], maxAge: 86400 });
    const events: FilePolicyStoreEvent[] = [];
    const store = createFilePolicyStore({ path: join(dir, 'no-such-dir', 'cache.jsonl'), writeDelayMs: 0, onEvent: (e) => events.push(e) });
    const engine = createMtaSts({ ...world.mtaStsOptions(), store });
    expect(await engine.getPolicy(domain)).toMatchObject({ status: 'policy', source: 'fetched' });
    await store.flush();
    expect(await engine.getPolicy(domain)).toMatchObject({ status: 'policy', source: 'cache' });
    expect(events.some((e) => e.type === 'store-error' && e.operation === 'write')).toBe(true);
    await engine.close();
  });

  it('an expired policy with its host down is no policy (RFC 8461 §3.3), even from the file', async () => {
    const domain = 'expired.test';
    const path = join(dir, 'expired.jsonl');
    world.publishPolicy(domain, { id: 'e1', mode: 'enforce', mx: [`mx.${domain}`], maxAge: 1 });
    const first = createMtaSts({ ...world.mtaStsOptions(), store: createFilePolicyStore({ path }) });
    expect((await first.getPolicy(domain)).status).toBe('policy');
    await (first.store as ReturnType<typeof createFilePolicyStore>).close();
    await first.close();
    await new Promise((r) => setTimeout(r, 1100));
    blockDiscovery(domain);
    const engine = createMtaSts({ ...world.mtaStsOptions(), store: createFilePolicyStore({ path }) });
    const lookup = await engine.getPolicy(domain);
    expect(lookup.status).not.toBe('policy');
    expect((await engine.plan(domain, [`mx.${domain}`])).tlsRequired).toBe(false);
    await engine.close();
  });
});
