/**
 * No failure of ours or of the network may plan below an unexpired cached policy (RFC 8461 §3.3, §10.2), an
 * attacker must not be able to bounce mail to an enforce domain (§5.1), and results cannot edit the cache.
 * Real loopback world: DNS server, HTTPS policy hosts with a test CA.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMtaSts, type MtaStsOptions } from '../../src/engine.js';
import { createMtaStsHooks } from '../../src/integrations/hooks.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';
import { FleetStore, type StoreMode } from './stores.js';

let world: TestWorld;
beforeAll(async () => {
  world = await createTestWorld();
});
afterAll(async () => {
  await world?.close();
});

const engine = (extra: Partial<MtaStsOptions> = {}) => createMtaSts({ ...world.mtaStsOptions(), fetchTimeoutMs: 2000, dnsTimeoutMs: 2000, refreshIntervalMs: 0, ...extra });
const enforce = (domain: string, id = 'orig') => world.publishPolicy(domain, { id, mode: 'enforce', mx: [`mx.${domain}`], maxAge: 86400 });

describe('RFC 8461 §3.3 / §10.2: a caller\'s abort never switches a cached policy off', () => {
  it('getPolicy aborted while the TXT answer is delayed returns the cached enforce policy (stale-cache, MTASTS_ABORTED)', async () => {
    enforce('abort-cached.test');
    const mta = engine();
    expect((await mta.getPolicy('abort-cached.test')).status).toBe('policy');
    world.dns.fail('_mta-sts.abort-cached.test', 'timeout');
    const started = Date.now();
    const r = await mta.getPolicy('abort-cached.test', { signal: AbortSignal.timeout(50) });
    expect(Date.now() - started).toBeLessThan(1000);
    expect(r).toMatchObject({ status: 'policy', source: 'stale-cache', policy: { mode: 'enforce', id: 'orig' } });
    expect(r.error?.code).toBe('MTASTS_ABORTED');
    const plan = await mta.plan('abort-cached.test', ['mx.attacker.test'], { signal: AbortSignal.timeout(50) });
    expect(plan.mode).toBe('enforce');
    expect(plan.allowed).toEqual([]);
    expect(plan.noCandidate?.action).toBe('defer');
    world.dns.fail('_mta-sts.abort-cached.test', null);
    await mta.close();
  });

  it('the same through hooks.planDelivery({ mxHosts, signal }): enforce, the attacker\'s MX refused', async () => {
    enforce('abort-hooks.test');
    const mta = engine();
    const hooks = createMtaStsHooks({ mtaSts: mta });
    await mta.getPolicy('abort-hooks.test');
    world.dns.fail('_mta-sts.abort-hooks.test', 'timeout');
    const plan = await hooks.planDelivery('abort-hooks.test', { mxHosts: ['mx.attacker.test'], signal: AbortSignal.timeout(50) });
    expect(plan.mode).toBe('enforce');
    expect(plan.allowed).toEqual([]);
    expect(plan.lookup).toMatchObject({ source: 'stale-cache', error: { code: 'MTASTS_ABORTED' } });
    world.dns.fail('_mta-sts.abort-hooks.test', null);
    await mta.close();
  });

  it('a signal aborted before the call also returns the cached policy', async () => {
    enforce('abort-before.test');
    const mta = engine();
    await mta.getPolicy('abort-before.test');
    const r = await mta.getPolicy('abort-before.test', { signal: AbortSignal.abort() });
    expect(r).toMatchObject({ status: 'policy', source: 'stale-cache', error: { code: 'MTASTS_ABORTED' } });
    await mta.close();
  });

  it('without a cached policy an abort is a temp-error', async () => {
    enforce('abort-cold.test');
    world.dns.fail('_mta-sts.abort-cold.test', 'timeout');
    const mta = engine();
    const r = await mta.getPolicy('abort-cold.test', { signal: AbortSignal.timeout(30) });
    expect(r).toMatchObject({ status: 'temp-error', source: 'fetched', error: { code: 'MTASTS_ABORTED' } });
    world.dns.fail('_mta-sts.abort-cold.test', null);
    await mta.close();
  });

  it('an exception inside discovery (the injected clock throws once) keeps the cached policy', async () => {
    enforce('crash.test');
    let t = Date.now();
    let throwOnce = false;
    const mta = engine({
      now: () => {
        if (throwOnce) {
          throwOnce = false;
          throw new Error('clock failure');
        }
        return t;
      },
    });
    await mta.getPolicy('crash.test');
    t += 1000;
    throwOnce = true;
    const r = await mta.getPolicy('crash.test');
    expect(r).toMatchObject({ status: 'policy', source: 'stale-cache', policy: { mode: 'enforce' } });
    expect(r.error?.message).toContain('clock failure');
    await mta.close();
  });

  it('a logger that throws fails nothing', async () => {
    enforce('badlogger.test');
    const boom = () => {
      throw new Error('logger down');
    };
    const mta = engine({ logger: { debug: boom, info: boom, warn: boom, error: boom } });
    expect((await mta.getPolicy('badlogger.test')).status).toBe('policy');
    world.dns.fail('_mta-sts.badlogger.test', 'servfail');
    expect(await mta.getPolicy('badlogger.test')).toMatchObject({ status: 'policy', source: 'stale-cache' });
    world.dns.fail('_mta-sts.badlogger.test', null);
    await mta.close();
  });
});

type FailureKind = 'txt-servfail' | 'txt-timeout' | 'txt-nxdomain' | 'txt-invalid' | 'txt-multiple' | 'https-404' | 'https-500' | 'https-timeout' | 'https-bad-cert' | 'policy-invalid' | 'none';
type SignalKind = 'none' | 'aborted-before' | 'aborted-during';

/** Breaks discovery of `domain` in the world (a changed id where HTTPS is what fails). */
function breakDiscovery(domain: string, kind: FailureKind): void {
  const name = `_mta-sts.${domain}`;
  const changed = (host: Parameters<TestWorld['setPolicyHost']>[1], body?: string) =>
    world.publishPolicy(domain, { id: 'changed', mode: 'none', mx: [], maxAge: 86400, host, ...(body ? { body } : {}) });
  switch (kind) {
    case 'txt-servfail': return world.dns.fail(name, 'servfail');
    case 'txt-timeout': return world.dns.fail(name, 'timeout');
    case 'txt-nxdomain': return world.dns.removeName(name);
    case 'txt-invalid': return world.dns.setRecords(name, { txt: ['v=STSv1; id=!!!'] });
    case 'txt-multiple': return world.dns.setRecords(name, { txt: ['v=STSv1; id=x1', 'v=STSv1; id=x2'] });
    case 'https-404': return changed({ kind: 'status', status: 404 });
    case 'https-500': return changed({ kind: 'status', status: 500 });
    case 'https-timeout': return changed({ kind: 'hang' });
    case 'https-bad-cert': return changed({ kind: 'cert', cert: 'self-signed' });
    case 'policy-invalid': return changed({ kind: 'ok' }, 'version: STSv1\nmode: none\n');
    case 'none': return;
  }
}

const signalOf = (kind: SignalKind): AbortSignal | undefined => (kind === 'none' ? undefined : kind === 'aborted-before' ? AbortSignal.abort() : AbortSignal.timeout(40));

let run = 0;
describe('property: getPolicy / plan never plan below a cached unexpired policy', () => {
  it('over failure kinds × store failures × signals (RFC 8461 §3.3, §10.2)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<FailureKind>('txt-servfail', 'txt-timeout', 'txt-nxdomain', 'txt-invalid', 'txt-multiple', 'https-404', 'https-500', 'https-timeout', 'https-bad-cert', 'policy-invalid', 'none'),
        fc.constantFrom<StoreMode>('ok', 'throw', 'hang'),
        fc.constantFrom<SignalKind>('none', 'aborted-before', 'aborted-during'),
        async (kind, storeMode, signalKind) => {
          const domain = `prop${run++}.test`;
          enforce(domain);
          const store = new FleetStore();
          const mta = engine({ store, storeTimeoutMs: 150, dnsTimeoutMs: 300, fetchTimeoutMs: 300 });
          try {
            expect((await mta.getPolicy(domain)).policy?.mode).toBe('enforce');
            breakDiscovery(domain, kind);
            store.mode = storeMode;
            const lookup = await mta.getPolicy(domain, { signal: signalOf(signalKind) } as never);
            expect(lookup.status, `${kind}/${storeMode}/${signalKind}`).toBe('policy');
            expect(lookup.policy).toMatchObject({ mode: 'enforce', id: 'orig' });
            const signal = signalOf(signalKind);
            const plan = await mta.plan(domain, ['mx.attacker.test', `mx.${domain}`], signal ? { signal } : {});
            expect(plan.mode, `${kind}/${storeMode}/${signalKind}`).toBe('enforce');
            expect(plan.allowed.map((c) => c.host)).toEqual([`mx.${domain}`]);
          } finally {
            world.dns.fail(`_mta-sts.${domain}`, null);
            await mta.close();
          }
        },
      ),
      { numRuns: 30, seed: 8461 },
    );
  }, 60_000);
});

describe('RFC 8461 §5.1 / §3.3: spoofed NXDOMAIN or null MX never bounce mail to an enforce domain', () => {
  it('NXDOMAIN for the MX query with an enforce policy cached: defer, citing §5.1 and §3.3', async () => {
    enforce('nx-enforce.test');
    const mta = engine();
    await mta.getPolicy('nx-enforce.test');
    world.unpublishPolicy('nx-enforce.test'); // the attacker answers NXDOMAIN for every name of the domain
    const plan = await mta.plan('nx-enforce.test');
    expect(plan.mode).toBe('enforce');
    expect(plan.noCandidate?.action).toBe('defer');
    expect(plan.noCandidate?.reason).toMatch(/NXDOMAIN.*RFC 8461 §5\.1, §3\.3/);
    await mta.close();
  });

  it('a null MX with an enforce policy cached: defer', async () => {
    enforce('nullmx-enforce.test');
    world.dns.setRecords('nullmx-enforce.test', { mx: [{ exchange: '', priority: 0 }] });
    const mta = engine();
    await mta.getPolicy('nullmx-enforce.test');
    const plan = await mta.plan('nullmx-enforce.test');
    expect(plan.nullMx).toBe(true);
    expect(plan.noCandidate?.action).toBe('defer');
    expect(plan.noCandidate?.reason).toMatch(/null MX.*RFC 8461 §5\.1, §3\.3/);
    await mta.close();
  });

  it('without a policy (or under testing) a null MX and NXDOMAIN still bounce (RFC 7505)', async () => {
    world.publishPolicy('nullmx-testing.test', { id: 't1', mode: 'testing', mx: ['mx.nullmx-testing.test'], maxAge: 86400 });
    world.dns.setRecords('nullmx-testing.test', { mx: [{ exchange: '', priority: 0 }] });
    world.dns.setRecords('nullmx-none.test', { mx: [{ exchange: '', priority: 0 }] });
    const mta = engine();
    expect((await mta.plan('nullmx-testing.test')).noCandidate?.action).toBe('bounce');
    expect((await mta.plan('nullmx-none.test')).noCandidate?.action).toBe('bounce');
    expect((await mta.plan('no-such-domain-at-all.test')).noCandidate?.action).toBe('bounce');
    await mta.close();
  });
});

describe('returned policy data is immutable', () => {
  it('a caller cannot edit the cached policy through a result', async () => {
    enforce('frozen.test');
    const mta = engine();
    const first = await mta.getPolicy('frozen.test');
    expect(Object.isFrozen(first)).toBe(true);
    expect(Object.isFrozen(first.policy)).toBe(true);
    expect(() => (first.policy!.mx as string[]).push('mx.attacker.test')).toThrow(TypeError);
    expect(() => ((first.policy as { mode: string }).mode = 'none')).toThrow(TypeError);
    const again = await mta.getPolicy('frozen.test');
    expect(again.policy?.mx).toEqual(['mx.frozen.test']);
    const plan = await mta.plan('frozen.test', ['mx.attacker.test']);
    expect(plan.allowed).toEqual([]);
    await mta.close();
  });
});
