/**
 * The plugin's fail-closed paths, driven in-process with Haraka's hook calling convention against the loopback
 * world (policy discovery is real; the `hmail` objects stand in for Haraka's `HMailItem`, whose delivery the
 * end-to-end suite covers with a real Haraka).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHarakaPlugin, HARAKA, type HarakaMtaStsPlugin } from '../../src/integrations/haraka/index.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';
import { isSupportedHarakaVersion } from '../../src/integrations/haraka/internals.js';

let world: TestWorld;
let dir: string;
let caFile: string;

beforeAll(async () => {
  world = await createTestWorld();
  dir = mkdtempSync(join(tmpdir(), 'mta-sts-plugin-'));
  caFile = join(dir, 'ca.pem');
  writeFileSync(caFile, world.ca.rootPem);
  await world.addMx('enf.test', 'mx1.enf.test');
  world.publishPolicy('enf.test', { id: '1', mode: 'enforce', mx: ['*.enf.test'], maxAge: 86400 });
  await world.addMx('plain.test', 'mx1.plain.test');
});
afterAll(async () => {
  await world.close();
  rmSync(dir, { recursive: true, force: true });
});

const ini = (extra: string[] = []) => [
  '[main]',
  ...extra,
  '[engine]',
  `dns_servers=${world.mtaStsOptions().dnsServers[0]}`,
  'dns_timeout_ms=2000',
  'fetch_timeout_ms=3000',
  `ca_file=${caFile}`,
  `https_port=${world.httpsPort}`,
];

/** A stand-in for Haraka's plugin object: log methods and `config.get` with a reload callback. */
function fakeHarakaPlugin(lines: string[]) {
  const logs: Array<[string, string]> = [];
  const state = { lines, reload: undefined as undefined | (() => void) };
  const plugin: Record<string, unknown> = {
    config: { get: (_n: string, _t: string, cb: () => void) => ((state.reload = cb), state.lines) },
  };
  for (const level of ['debug', 'info', 'notice', 'warn', 'error', 'crit']) plugin[`log${level}`] = (m: string) => logs.push([level, m]);
  return { plugin, logs, state };
}

/** An hmail with Haraka's methods on its prototype (what the plugin feature-detects). */
class FakeHmail {
  todo = { domain: '', uuid: 'U1' };
  num_failures = 0;
  cfg = { temp_fail_intervals: [3600] };
  get_force_tls() {
    return false;
  }
  try_deliver() {}
  try_deliver_host_on_socket() {}
  temp_fail() {}
  bounce() {}
}

function getMx(plugin: HarakaMtaStsPlugin, self: unknown, hmail: unknown, domain: string) {
  return new Promise<{ code: number | undefined; value: unknown }>((resolve) => plugin.hook_get_mx.call(self, (code, value) => resolve({ code, value }), hmail, domain));
}

function registered(lines: string[], options = {}) {
  const fake = fakeHarakaPlugin(lines);
  const plugin = createHarakaPlugin(options);
  plugin.register.call(fake.plugin);
  return { ...fake, plugin };
}

describe('Haraka versions', () => {
  it(`supported range ${'>=3.0.4 <4'}`, () => {
    expect(['3.0.4', '3.1.0', '3.3.4'].map(isSupportedHarakaVersion)).toEqual([true, true, true]);
    expect(['3.0.3', '2.8.28', '4.0.0', 'x'].map(isSupportedHarakaVersion)).toEqual([false, false, false, false]);
  });
});

describe('Haraka plugin: fail closed', () => {
  it('enforce: answers with the policy-listed MX as {exchange: ip, from_dns: name} and forces TLS on that hmail only', async () => {
    const { plugin, plugin: p } = registered(ini());
    const self = {};
    const hmail = Object.assign(new FakeHmail(), { todo: { domain: 'enf.test', uuid: 'U2' } });
    const { code, value } = await getMx(p, self, hmail, 'enf.test');
    expect(code).toBe(HARAKA.OK);
    expect(value).toEqual([expect.objectContaining({ from_dns: 'mx1.enf.test', exchange: expect.stringMatching(/^127\./), port: 25 })]);
    expect(Object.hasOwn(hmail, 'get_force_tls')).toBe(true);
    expect(hmail.get_force_tls()).toBe(true);
    expect(new FakeHmail().get_force_tls()).toBe(false); // nothing global
    plugin.shutdown.call(self);
  });

  it('no policy: steps aside (CONT, Haraka looks the MX up itself) and leaves the hmail untouched', async () => {
    const { plugin } = registered(ini());
    const hmail = Object.assign(new FakeHmail(), { todo: { domain: 'plain.test', uuid: 'U3' } });
    expect((await getMx(plugin, {}, hmail, 'plain.test')).code).toBeUndefined();
    expect(Object.getOwnPropertyNames(hmail).filter((n) => typeof (hmail as unknown as Record<string, unknown>)[n] === 'function')).toEqual([]);
    plugin.shutdown.call({});
  });

  it('missing Haraka internals: enforce domains are deferred with a critical log; others untouched', async () => {
    const { plugin, logs } = registered(ini());
    const hmail = { todo: { domain: 'enf.test' } }; // no try_deliver_host_on_socket & co (another Haraka major)
    expect((await getMx(plugin, {}, hmail, 'enf.test')).code).toBe(HARAKA.DENYSOFT);
    expect(logs.some(([level, m]) => level === 'crit' && /internals missing/.test(m))).toBe(true);
    expect((await getMx(plugin, {}, { todo: { domain: 'plain.test' } }, 'plain.test')).code).toBeUndefined();
    plugin.shutdown.call({});
  });

  it('a throwing hmail: DENYSOFT (Haraka would otherwise continue without the plugin)', async () => {
    const { plugin, logs } = registered(ini());
    const hmail = new Proxy(new FakeHmail(), {
      get(target, prop, receiver) {
        if (prop === 'todo') throw new Error('boom');
        return Reflect.get(target, prop, receiver);
      },
    });
    expect((await getMx(plugin, {}, hmail, 'enf.test')).code).toBe(HARAKA.DENYSOFT);
    expect(logs.some(([level]) => level === 'crit')).toBe(true);
    plugin.shutdown.call({});
  });

  it('a policy lookup past lookup_timeout_ms: DENYSOFT', async () => {
    await world.addMx('slow.test', 'mx1.slow.test');
    world.publishPolicy('slow.test', { id: '1', mode: 'enforce', mx: ['*.slow.test'], maxAge: 86400, host: { kind: 'hang', maxMs: 2000 } });
    const { plugin } = registered(ini(['lookup_timeout_ms=300']));
    const started = Date.now();
    const { code, value } = await getMx(plugin, {}, Object.assign(new FakeHmail(), { todo: { domain: 'slow.test' } }), 'slow.test');
    expect(code).toBe(HARAKA.DENYSOFT);
    expect(String(value)).toMatch(/MTA-STS/);
    expect(Date.now() - started).toBeLessThan(1500);
    plugin.shutdown.call({});
  });

  it('an invalid mta-sts.ini refuses to load; an invalid reload defers enforce domains until fixed', async () => {
    expect(() => registered(['[engine]', 'dns_timeout=5'])).toThrow(/unknown key \[engine\] dns_timeout/);
    const { plugin, state, logs } = registered(ini());
    state.lines = [...ini(), 'bogus_key=1'];
    state.reload!();
    expect(logs.some(([level, m]) => level === 'crit' && /bogus_key/.test(m))).toBe(true);
    const enf = await getMx(plugin, {}, Object.assign(new FakeHmail(), { todo: { domain: 'enf.test' } }), 'enf.test');
    expect(enf.code).toBe(HARAKA.DENYSOFT);
    expect((await getMx(plugin, {}, Object.assign(new FakeHmail(), { todo: { domain: 'plain.test' } }), 'plain.test')).code).toBeUndefined();
    state.lines = ini();
    state.reload!();
    expect((await getMx(plugin, {}, Object.assign(new FakeHmail(), { todo: { domain: 'enf.test' } }), 'enf.test')).code).toBe(HARAKA.OK);
    plugin.shutdown.call({});
  });

  it('RFC 8461 §5.1: the policy is refetched before the last attempt (not before earlier ones)', async () => {
    await world.addMx('recheck.test', 'mx1.recheck.test');
    world.publishPolicy('recheck.test', { id: '1', mode: 'enforce', mx: ['*.recheck.test'], maxAge: 86400 });
    const { plugin } = registered(ini());
    const fetches = () => world.httpsRequests.filter((r) => r.hostname === 'mta-sts.recheck.test').length;
    const attempt = (numFailures: number) => getMx(plugin, {}, Object.assign(new FakeHmail(), { todo: { domain: 'recheck.test' }, num_failures: numFailures, cfg: { temp_fail_intervals: [60, 60] } }), 'recheck.test');
    expect((await attempt(0)).code).toBe(HARAKA.OK);
    expect((await attempt(1)).code).toBe(HARAKA.OK);
    expect(fetches()).toBe(1); // cached: same TXT id
    // The domain moved to testing without changing its id: only a refetch sees it.
    world.publishPolicy('recheck.test', { id: '1', mode: 'testing', mx: ['*.recheck.test'], maxAge: 86400 });
    expect((await attempt(2)).code).toBeUndefined(); // last attempt: refetched, testing, Haraka delivers
    expect(fetches()).toBe(2);
    plugin.shutdown.call({});
  });
});

describe('Haraka plugin: [engine] policy_db (RFC 8461 §3.3 across restarts)', () => {
  it('a Haraka restart while discovery is blocked still enforces the policy cached in policy_db; without it the restart forgets it', async () => {
    await world.addMx('db.test', 'mx1.db.test');
    world.publishPolicy('db.test', { id: 'd1', mode: 'enforce', mx: ['*.db.test'], maxAge: 86400 });
    const db = join(dir, 'policies.db');
    const hmail = () => Object.assign(new FakeHmail(), { todo: { domain: 'db.test', uuid: 'U9' } });
    const first = registered(ini([]).concat([`policy_db=${db}`]));
    expect((await getMx(first.plugin, {}, hmail(), 'db.test')).code).toBe(HARAKA.OK);
    first.plugin.shutdown.call({});

    world.setPolicyHost('db.test', { kind: 'status', status: 503 });
    world.dns.fail('_mta-sts.db.test', 'servfail');
    const restarted = registered(ini([]).concat([`policy_db=${db}`]));
    const answer = await getMx(restarted.plugin, {}, hmail(), 'db.test');
    expect(answer.code).toBe(HARAKA.OK);
    expect(answer.value).toEqual([expect.objectContaining({ from_dns: 'mx1.db.test' })]);
    restarted.plugin.shutdown.call({});

    // Control: the same restart without policy_db steps aside (Haraka would deliver without MTA-STS).
    const forgetful = registered(ini());
    expect((await getMx(forgetful.plugin, {}, hmail(), 'db.test')).code).toBeUndefined();
    forgetful.plugin.shutdown.call({});
  });

  it('a reload that adds policy_db writes the policies held in memory into it; a reload that changes it keeps the open file until restart', async () => {
    const db = join(dir, 'reload.db');
    const { plugin, state, logs } = registered(ini());
    expect((await getMx(plugin, {}, Object.assign(new FakeHmail(), { todo: { domain: 'enf.test' } }), 'enf.test')).code).toBe(HARAKA.OK);
    state.lines = [...ini(), `policy_db=${db}`];
    state.reload!();
    state.lines = [...ini(), `policy_db=${join(dir, 'other.db')}`];
    state.reload!();
    expect(logs.some(([level, m]) => level === 'warn' && m.includes('still using') && m.includes('reload.db'))).toBe(true);
    plugin.shutdown.call({});
    const { createSqlitePolicyStore } = await import('../../src/index.js');
    const store = createSqlitePolicyStore({ path: db });
    expect(store.get('enf.test')?.policy.mode).toBe('enforce');
    store.close();
  });
});
