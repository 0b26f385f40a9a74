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
import { FileSpoolStore } from '../../src/tlsrpt/store.js';
import type { StoredDomainDay } from '../../src/tlsrpt/store.js';
import { assertBuilt, disposeHaraka, startHaraka, type RunningHaraka } from './harness.js';
import { writeFileSync } from 'node:fs';

let world: TestWorld;
let haraka: RunningHaraka;
let spoolDir: string;
let caFile: string;
let workDir: string;

export function iniFor(world: TestWorld, caFile: string, spoolDir: string): string[] {
  const [dns] = world.mtaStsOptions().dnsServers;
  return [
    '[main]',
    'loglevel=debug',
    'lookup_timeout_ms=8000',
    `mx_port=${world.smtpPort}`,
    '[engine]',
    `dns_servers=${dns}`,
    'dns_timeout_ms=2000',
    'fetch_timeout_ms=3000',
    `ca_file=${caFile}`,
    `policy_port=${world.policyPort}`,
    '[tlsrpt]',
    'enabled=true',
    'organization_name=Haraka Test',
    'contact_info=tlsrpt@haraka-sender.test',
    'submitter=haraka-sender.test',
    `spool_dir=${spoolDir}`,
    'flush_delay_ms=0',
  ];
}

beforeAll(async () => {
  assertBuilt();
  world = await createTestWorld();
  workDir = mkdtempSync(join(tmpdir(), 'mta-sts-haraka-e2e-'));
  spoolDir = join(workDir, 'tlsrpt');
  caFile = join(workDir, 'ca.pem');
  writeFileSync(caFile, world.ca.rootPem);
  haraka = await startHaraka({ mtaStsIni: iniFor(world, caFile, spoolDir) });
}, 30_000);

afterAll(async () => {
  await disposeHaraka(haraka);
  await world?.close();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

const enforce = (domain: string, mx: string[] = [`*.${domain}`]) => world.publishPolicy(domain, { id: '1', mode: 'enforce', mx, maxAge: 86400 });

async function tlsrptRecord(domain: string): Promise<StoredDomainDay | undefined> {
  const store = new FileSpoolStore(spoolDir);
  for (let i = 0; i < 40; i++) {
    const keys = (await store.list()).filter((k) => k.policyDomain === domain);
    if (keys.length > 0) return store.get(keys[0]!);
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
});
