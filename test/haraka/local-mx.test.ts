/**
 * Haraka drops an MX whose address is on this machine when `outbound.ini` has `local_mx_ok=false` (its default), and
 * an MX whose address lookup failed, before any connection. The plugin must say that Haraka skipped the hosts, not
 * blame the receiver's policy ("no MX host passed the policy checks"); the message is still deferred, never bounced.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';
import { assertBuilt, disposeHaraka, startHaraka, type RunningHaraka } from './harness.js';

let world: TestWorld;
let haraka: RunningHaraka;
let workDir: string;

beforeAll(async () => {
  assertBuilt();
  world = await createTestWorld();
  workDir = mkdtempSync(join(tmpdir(), 'mta-sts-haraka-local-'));
  const caFile = join(workDir, 'ca.pem');
  writeFileSync(caFile, world.ca.rootPem);
  const [dns] = world.mtaStsOptions().dnsServers;
  const ini = ['[main]', 'lookup_timeout_ms=8000', `mx_port=${world.smtpPort}`, '[engine]', `dns_servers=${dns}`, 'dns_timeout_ms=2000', 'fetch_timeout_ms=3000', `ca_file=${caFile}`, `https_port=${world.httpsPort}`];
  haraka = await startHaraka({ mtaStsIni: ini, localMxOk: false });
}, 30_000);

afterAll(async () => {
  await disposeHaraka(haraka);
  await world?.close();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

describe('Haraka skips every allowed MX itself (local_mx_ok=false)', () => {
  it('deferred, not bounced; the log names Haraka\'s filter and local_mx_ok, not the policy', async () => {
    const mx = await world.addMx('local.test', 'mx1.local.test');
    world.publishPolicy('local.test', { id: '1', mode: 'enforce', mx: ['mx1.local.test'], maxAge: 86400 });
    await haraka.send('rcpt@local.test');
    const event = await haraka.waitFor('local.test', 15_000);
    expect(event.event).toBe('deferred');
    expect(mx.messages).toHaveLength(0);
    await haraka.waitForOutput(/domain=local\.test mode=enforce action=defer: Haraka connected to none of the MX hosts the policy allows \(mx1\.local\.test\).*local_mx_ok=true/);
    expect(haraka.output()).not.toMatch(/domain=local\.test mode=enforce action=defer: no MX host passed the policy checks/);
  }, 30_000);
});
