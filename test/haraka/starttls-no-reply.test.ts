/**
 * Issue 16 item 3 in a real Haraka: an MX (or a path attacker) that never answers STARTTLS. Haraka itself waits its
 * whole socket timeout (`connect_timeout`, 30 s) and then moves on with nothing reported. With the plugin the reply
 * is awaited `starttls_timeout_ms` (here 2000 ms: room for a compliant MX on a loaded machine), the session is recorded for TLS-RPT as `starttls-not-supported`
 * (RFC 8460 §4.3.1, failure reason `starttls no reply`) and Haraka tries the next MX host; under `enforce` nothing
 * is sent in plaintext and a message no MX host took is deferred, never bounced (RFC 8461 §4.2, §5.1).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';
import { createSqliteTlsRptStore } from '../../src/tlsrpt/index.js';
import type { StoredDomainDay } from '../../src/tlsrpt/store.js';
import { assertBuilt, disposeHaraka, startHaraka, worldIni, type RunningHaraka } from './harness.js';

let world: TestWorld;
let haraka: RunningHaraka | undefined;
let work: string;
let dbFile: string;

beforeAll(async () => {
  assertBuilt();
  world = await createTestWorld();
  work = mkdtempSync(join(tmpdir(), 'mta-sts-haraka-starttls-'));
  dbFile = join(work, 'tlsrpt.db');
  const caFile = join(work, 'ca.pem');
  writeFileSync(caFile, world.ca.rootPem);
  haraka = await startHaraka({
    mtaStsIni: worldIni(world, caFile, dbFile, ['starttls_timeout_ms=2000']),
  });
}, 30_000);

afterAll(async () => {
  await disposeHaraka(haraka);
  await world?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

const enforce = (domain: string) => world.publishPolicy(domain, { id: '1', mode: 'enforce', mx: [`*.${domain}`], maxAge: 86400 });

/** The TLS-RPT failures recorded for a policy domain (polled: the plugin's recorder writes asynchronously). */
async function failures(domain: string): Promise<Array<{ resultType: string; failureReasonCode?: string; receivingIp?: string }>> {
  for (let i = 0; i < 60; i++) {
    try {
      const store = createSqliteTlsRptStore({ path: dbFile, readOnly: true });
      try {
        const keys = (await store.list()).filter((k) => k.policyDomain === domain);
        if (keys.length > 0) {
          const day = (await store.get(keys[0]!)) as StoredDomainDay;
          const found = day.policies.flatMap((p) => p.failures);
          if (found.length > 0) return found;
        }
      } finally {
        await store.close();
      }
    } catch {
      // the plugin has not created the database yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return [];
}

describe('Haraka: an MX that never answers STARTTLS (starttls_timeout_ms)', { timeout: 40_000 }, () => {
  it('RFC 8461 §4.2 / RFC 8460 §4.3.1 enforce, STARTTLS advertised and swallowed: deferred within the bound, nothing sent, starttls-not-supported recorded', async () => {
    const mx = await world.addMx('h-swallow.test', 'mx1.h-swallow.test', { starttlsNoReply: true });
    enforce('h-swallow.test');
    const started = Date.now();
    await haraka!.send('rcpt@h-swallow.test');
    const event = await haraka!.waitFor('h-swallow.test', 25_000);
    // Haraka alone waits its socket timeout (30 s) for the reply.
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(event.event).toBe('deferred');
    expect(mx.starttlsSwallowed).toBe(1);
    expect(mx.mailFrom).toHaveLength(0);
    expect(mx.messages).toHaveLength(0);
    expect(haraka!.events().filter((e) => e.domain === 'h-swallow.test' && e.event === 'bounce')).toHaveLength(0);
    expect(await failures('h-swallow.test')).toEqual([expect.objectContaining({ resultType: 'starttls-not-supported', failureReasonCode: 'starttls no reply', receivingIp: mx.ip })]);
    expect(haraka!.output()).toMatch(/mta-sts: domain=h-swallow\.test mode=enforce mx=mx1\.h-swallow\.test ip=\S+ tls=fail \(starttls-not-supported\): mx1\.h-swallow\.test did not answer STARTTLS \(no reply to STARTTLS after 2000 ms\)/);
  });

  it('§4.2 enforce, a swallowing first MX: Haraka moves on at once and the compliant second MX gets the message over TLS', async () => {
    const bad = await world.addMx('h-swallow2.test', 'mx1.h-swallow2.test', { priority: 10, starttlsNoReply: true });
    const good = await world.addMx('h-swallow2.test', 'mx2.h-swallow2.test', { priority: 20 });
    enforce('h-swallow2.test');
    const started = Date.now();
    await haraka!.send('rcpt@h-swallow2.test');
    const event = await haraka!.waitFor('h-swallow2.test', 25_000);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(event).toMatchObject({ event: 'delivered', secured: true });
    expect(bad).toMatchObject({ starttlsSwallowed: 1, mailFrom: [], messages: [] });
    expect(good.messages).toHaveLength(1);
    expect(good.messages[0]).toMatchObject({ secure: true, sni: 'mx2.h-swallow2.test' });
    expect(await failures('h-swallow2.test')).toEqual([expect.objectContaining({ resultType: 'starttls-not-supported', failureReasonCode: 'starttls no reply', receivingIp: bad.ip })]);
  });

  it('enforce, STARTTLS omitted from EHLO (the MX would swallow it): Haraka never sends it; deferred, starttls-not-supported recorded', async () => {
    const mx = await world.addMx('h-swallow3.test', 'mx1.h-swallow3.test', { starttls: false, starttlsNoReply: true });
    enforce('h-swallow3.test');
    await haraka!.send('rcpt@h-swallow3.test');
    expect(await haraka!.waitFor('h-swallow3.test', 20_000)).toMatchObject({ event: 'deferred' });
    expect(mx).toMatchObject({ starttlsSwallowed: 0, mailFrom: [], messages: [] });
    expect((await failures('h-swallow3.test')).map((f) => f.resultType)).toEqual(['starttls-not-supported']);
  });
});
