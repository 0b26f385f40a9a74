/**
 * The plugin in a real Haraka (3.3.x, started as a process), delivering to the loopback world's MX hosts. Every case
 * is judged by what the MX host received (messages, MAIL FROM commands, TLS version, SNI, connections) and by the
 * outcome Haraka reports (delivered / deferred / bounce).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';
import { createSqliteTlsRptStore } from '../../src/tlsrpt/index.js';
import type { StoredDomainDay } from '../../src/tlsrpt/store.js';
import { assertBuilt, disposeHaraka, startHaraka, worldIni, type RunningHaraka } from './harness.js';
import { writeFileSync } from 'node:fs';

let world: TestWorld;
let haraka: RunningHaraka;
let dbFile: string;
let caFile: string;
let workDir: string;

beforeAll(async () => {
  assertBuilt();
  world = await createTestWorld();
  workDir = mkdtempSync(join(tmpdir(), 'mta-sts-haraka-e2e-'));
  dbFile = join(workDir, 'tlsrpt.db');
  caFile = join(workDir, 'ca.pem');
  writeFileSync(caFile, world.ca.rootPem);
  haraka = await startHaraka({ mtaStsIni: worldIni(world, caFile, dbFile, ['lookup_timeout_ms=8000']) });
}, 30_000);

afterAll(async () => {
  await disposeHaraka(haraka);
  await world?.close();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

const enforce = (domain: string, mx: string[] = [`*.${domain}`]) => world.publishPolicy(domain, { id: '1', mode: 'enforce', mx, maxAge: 86400 });

async function tlsrptRecord(domain: string): Promise<StoredDomainDay | undefined> {
  for (let i = 0; i < 40; i++) {
    try {
      const store = createSqliteTlsRptStore({ path: dbFile, readOnly: true });
      try {
        const keys = (await store.list()).filter((k) => k.policyDomain === domain);
        if (keys.length > 0) return await store.get(keys[0]!);
      } finally {
        await store.close();
      }
    } catch {
      // not created yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return undefined;
}

describe('Haraka outbound under MTA-STS (real Haraka, judged at the MX)', () => {
  it('enforce, compliant MX: delivered over TLS 1.2+ with SNI = MX name; TLS-RPT success', async () => {
    const mx = await world.addMx('good.test', 'mx1.good.test');
    enforce('good.test');
    await haraka.send('rcpt@good.test');
    const event = await haraka.waitFor('good.test');
    expect(event.event).toBe('delivered');
    expect(mx.messages).toHaveLength(1);
    expect(mx.messages[0]).toMatchObject({ secure: true, sni: 'mx1.good.test' });
    expect(['TLSv1.2', 'TLSv1.3']).toContain(mx.messages[0]!.tlsVersion);
    const counts = await tlsrptRecord('good.test');
    expect(counts?.policies[0]).toMatchObject({ successCount: 1, failureCount: 0 });
  });

  /** The message was deferred (not bounced, not stuck) and reached no MX host: no MAIL FROM at all. */
  async function expectDeferredUntouched(domain: string, hosts: Array<{ mailFrom: readonly unknown[]; messages: readonly unknown[] }>) {
    const event = await haraka.waitFor(domain);
    expect(event.event).toBe('deferred');
    for (const h of hosts) {
      expect(h.mailFrom).toHaveLength(0);
      expect(h.messages).toHaveLength(0);
    }
    expect(haraka.events().filter((e) => e.domain === domain && e.event === 'bounce')).toHaveLength(0);
  }

  async function failureTypes(domain: string): Promise<string[]> {
    const counts = await tlsrptRecord(domain);
    return (counts?.policies ?? []).flatMap((p) => p.failures.map((f) => f.resultType));
  }

  it('RFC 8461 §4.2 enforce, MX without STARTTLS: nothing arrives, deferred; TLS-RPT starttls-not-supported', async () => {
    const mx = await world.addMx('nostarttls.test', 'mx1.nostarttls.test', { starttls: false });
    enforce('nostarttls.test');
    await haraka.send('rcpt@nostarttls.test');
    await expectDeferredUntouched('nostarttls.test', [mx]);
    expect(mx.connections).toBe(1);
    expect(await failureTypes('nostarttls.test')).toEqual(['starttls-not-supported']);
    // RFC 8460 §4.4 failure details: MX name and IP, sending IP.
    const failure = (await tlsrptRecord('nostarttls.test'))!.policies[0]!.failures[0]!;
    expect(failure).toMatchObject({ resultType: 'starttls-not-supported', receivingMxHostname: 'mx1.nostarttls.test', receivingIp: mx.ip, sendingMtaIp: expect.stringMatching(/^127\./) });
    expect((await tlsrptRecord('nostarttls.test'))!.policies[0]!.policy).toMatchObject({ type: 'sts', domain: 'nostarttls.test', mxHost: ['*.nostarttls.test'] });
  });

  for (const [cert, resultType] of [
    ['wrong-name', 'certificate-host-mismatch'],
    ['expired', 'certificate-expired'],
    ['self-signed', 'certificate-not-trusted'],
  ] as const) {
    it(`RFC 8461 §4.2 enforce, ${cert} certificate: no MAIL FROM reaches the MX, deferred; TLS-RPT ${resultType}`, async () => {
      const domain = `cert-${cert}.test`;
      const mx = await world.addMx(domain, `mx1.${domain}`, { cert });
      enforce(domain);
      await haraka.send(`rcpt@${domain}`);
      await expectDeferredUntouched(domain, [mx]);
      expect(await failureTypes(domain)).toEqual([resultType]);
    });
  }

  it('RFC 8461 §4.2 enforce, plaintext-only first MX then a compliant one: delivered to the compliant MX only', async () => {
    const plain = await world.addMx('plainfirst.test', 'mx1.plainfirst.test', { priority: 10, starttls: false });
    const good = await world.addMx('plainfirst.test', 'mx2.plainfirst.test', { priority: 20 });
    enforce('plainfirst.test');
    await haraka.send('rcpt@plainfirst.test');
    const event = await haraka.waitFor('plainfirst.test');
    expect(event).toMatchObject({ event: 'delivered', secured: true });
    expect(plain.mailFrom).toHaveLength(0);
    expect(good.messages).toHaveLength(1);
    expect(good.messages[0]).toMatchObject({ secure: true, sni: 'mx2.plainfirst.test' });
  });

  it('RFC 8461 §4.2 enforce, wrong-certificate first MX then a compliant one: delivered to the compliant MX only', async () => {
    const bad = await world.addMx('badfirst.test', 'mx1.badfirst.test', { priority: 10, cert: 'wrong-name' });
    const good = await world.addMx('badfirst.test', 'mx2.badfirst.test', { priority: 20 });
    enforce('badfirst.test');
    await haraka.send('rcpt@badfirst.test');
    expect(await haraka.waitFor('badfirst.test')).toMatchObject({ event: 'delivered', secured: true });
    expect(bad.mailFrom).toHaveLength(0);
    expect(good.messages).toHaveLength(1);
  });

  it('RFC 8461 §5.1 enforce, 554 to STARTTLS: deferred, never bounced (no DSN)', async () => {
    const mx = await world.addMx('s554.test', 'mx1.s554.test', { starttlsRejectCode: 554 });
    enforce('s554.test');
    await haraka.send('rcpt@s554.test');
    await expectDeferredUntouched('s554.test', [mx]);
    expect(await failureTypes('s554.test')).toEqual(['starttls-not-supported']);
  });

  it('RFC 8461 §5.1 enforce, 502 to EHLO: deferred (not stuck, no HELO fallback to plaintext)', async () => {
    const mx = await world.addMx('e502.test', 'mx1.e502.test', { ehloRejectCode: 502 });
    enforce('e502.test');
    await haraka.send('rcpt@e502.test');
    await expectDeferredUntouched('e502.test', [mx]);
  });

  it('RFC 8461 §4.2 enforce, TLS 1.1-only MX: deferred', async () => {
    const mx = await world.addMx('tls11.test', 'mx1.tls11.test', { tls: 'legacy-only' });
    enforce('tls11.test');
    await haraka.send('rcpt@tls11.test');
    await expectDeferredUntouched('tls11.test', [mx]);
  });

  it('RFC 8461 §4.1 enforce, MX not in the policy: never contacted; the listed one gets the mail', async () => {
    const evil = await world.addMx('notlisted.test', 'mx.notlisted-evil.test', { priority: 1 });
    const good = await world.addMx('notlisted.test', 'mx1.notlisted.test', { priority: 10 });
    enforce('notlisted.test', ['mx1.notlisted.test']);
    await haraka.send('rcpt@notlisted.test');
    expect(await haraka.waitFor('notlisted.test')).toMatchObject({ event: 'delivered' });
    expect(evil.connections).toBe(0);
    expect(good.messages).toHaveLength(1);
  });

  it('RFC 8461 §5 testing, wrong-name certificate: delivered as Haraka would; TLS-RPT records the failure', async () => {
    const mx = await world.addMx('testing.test', 'mx1.testing.test', { cert: 'wrong-name' });
    world.publishPolicy('testing.test', { id: '1', mode: 'testing', mx: ['*.testing.test'], maxAge: 86400 });
    await haraka.send('rcpt@testing.test');
    expect(await haraka.waitFor('testing.test')).toMatchObject({ event: 'delivered' });
    expect(mx.messages).toHaveLength(1);
    expect(await failureTypes('testing.test')).toEqual(['certificate-host-mismatch']);
  });

  it('RFC 8461 §5 testing, MX without STARTTLS: delivered in plaintext; TLS-RPT starttls-not-supported', async () => {
    const mx = await world.addMx('testing-plain.test', 'mx1.testing-plain.test', { starttls: false });
    world.publishPolicy('testing-plain.test', { id: '1', mode: 'testing', mx: ['*.testing-plain.test'], maxAge: 86400 });
    await haraka.send('rcpt@testing-plain.test');
    expect(await haraka.waitFor('testing-plain.test')).toMatchObject({ event: 'delivered' });
    expect(mx.messages[0]?.secure).toBe(false);
    expect(await failureTypes('testing-plain.test')).toEqual(['starttls-not-supported']);
  });

  it('no policy, MX with a self-signed certificate: delivered (nothing global changed)', async () => {
    const mx = await world.addMx('nopolicy.test', 'mx1.nopolicy.test', { cert: 'self-signed' });
    await haraka.send('rcpt@nopolicy.test');
    expect(await haraka.waitFor('nopolicy.test')).toMatchObject({ event: 'delivered', secured: true });
    expect(mx.messages).toHaveLength(1);
    expect(mx.messages[0]?.secure).toBe(true);
  });

  it('mta-sts.ini is reloaded on change; an invalid one defers enforce domains (critical log) until fixed', async () => {
    const mx = await world.addMx('reload.test', 'mx1.reload.test');
    enforce('reload.test');
    haraka.writeConfig('mta-sts.ini', [...worldIni(world, caFile, dbFile, ['lookup_timeout_ms=8000']), '[engine]', 'dns_timout_ms=5'].join('\n'));
    // Haraka reloads a changed config file after a 5 s quiet period.
    await haraka.waitForOutput(/\[CRIT\].*mta-sts\.ini: line \d+: unknown key \[engine\] dns_timout_ms/, 20_000);
    await haraka.send('first@reload.test');
    expect(await haraka.waitFor('reload.test')).toMatchObject({ event: 'deferred' });
    expect(mx.mailFrom).toHaveLength(0);
    haraka.writeConfig('mta-sts.ini', worldIni(world, caFile, dbFile, ['lookup_timeout_ms=8000']).join('\n'));
    await haraka.waitForOutput(/mta-sts: reloaded config\/mta-sts\.ini/, 20_000);
    await haraka.send('second@reload.test');
    const until = Date.now() + 10_000;
    while (mx.messages.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(mx.messages.map((m) => m.recipients)).toEqual([['second@reload.test']]);
  }, 60_000);

  it('logs each decision through Haraka with domain, MX, mode and reason', () => {
    const out = haraka.output();
    expect(out).toMatch(/\[mta-sts-sender\/haraka\] mta-sts: domain=good\.test mode=enforce action=deliver/);
    expect(out).toMatch(/\[mta-sts-sender\/haraka\] mta-sts: domain=nostarttls\.test mode=enforce mx=mx1\.nostarttls\.test ip=\S+ tls=fail \(starttls-not-supported\)/);
    expect(out).toMatch(/mta-sts: domain=nostarttls\.test mode=enforce action=defer/);
    expect(out).toMatch(/mta-sts: Haraka 3\.3\.\d+ \(supported: >=3\.0\.4 <4\)/);
  });
});
