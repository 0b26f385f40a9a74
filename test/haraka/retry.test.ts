/**
 * RFC 8461 §5.1 in a real Haraka: before the attempt after which Haraka would bounce (here every attempt, with
 * `temp_fail_intervals=none`), the plugin refetches the policy, so a domain that moved from `enforce` to `testing`
 * without changing its TXT id is not bounced on the strength of the stale cached policy.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';
import { assertBuilt, disposeHaraka, startHaraka, type RunningHaraka } from './harness.js';

let world: TestWorld;
let haraka: RunningHaraka | undefined;
let work: string;

beforeAll(async () => {
  assertBuilt();
  world = await createTestWorld();
  work = mkdtempSync(join(tmpdir(), 'mta-sts-retry-'));
  const caFile = join(work, 'ca.pem');
  writeFileSync(caFile, world.ca.rootPem);
  haraka = await startHaraka({
    tempFailIntervals: 'none',
    mtaStsIni: ['[main]', `mx_port=${world.smtpPort}`, '[engine]', `dns_servers=${world.mtaStsOptions().dnsServers[0]}`, `ca_file=${caFile}`, `https_port=${world.httpsPort}`],
  });
}, 30_000);

afterAll(async () => {
  await disposeHaraka(haraka);
  await world?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('Haraka: the policy is re-checked before the last attempt (RFC 8461 §5.1)', () => {
  it('enforce still in force after the re-check: the final failure may bounce; a policy changed since is honoured', async () => {
    const mx = await world.addMx('recheck.test', 'mx1.recheck.test', { starttls: false });
    world.publishPolicy('recheck.test', { id: '1', mode: 'enforce', mx: ['*.recheck.test'], maxAge: 86400 });
    const fetches = () => world.httpsRequests.filter((r) => r.hostname === 'mta-sts.recheck.test').length;
    await haraka!.send('first@recheck.test');
    expect(await haraka!.waitFor('recheck.test')).toMatchObject({ event: 'bounce' });
    expect(mx.mailFrom).toHaveLength(0);
    const before = fetches();
    // Same TXT id: a plain lookup would keep the cached enforce policy.
    world.publishPolicy('recheck.test', { id: '1', mode: 'testing', mx: ['*.recheck.test'], maxAge: 86400 });
    await haraka!.send('second@recheck.test');
    const until = Date.now() + 10_000;
    while (mx.messages.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(fetches()).toBeGreaterThan(before);
    expect(mx.messages.map((m) => m.recipients)).toEqual([['second@recheck.test']]);
  });
});
