/**
 * Installed as the README says: the package tarball (`npm pack`) is `npm install`ed into a Haraka directory made by
 * `haraka -i`, with the configuration of `examples/haraka/config` (the `mta-sts-sender/haraka` line in
 * `config/plugins`, `mta-sts.ini`), and a real Haraka then enforces a policy on a message.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';
import { assertBuilt, disposeHaraka, harakaInstall, ROOT, startHaraka, type RunningHaraka } from './harness.js';

let world: TestWorld;
let haraka: RunningHaraka | undefined;
let work: string;

const npm = (args: string[], cwd: string) =>
  execFileSync(process.platform === 'win32' ? 'npm.cmd' : 'npm', args, { cwd, encoding: 'utf8', timeout: 90_000, env: { ...process.env, npm_config_loglevel: 'error', npm_config_audit: 'false', npm_config_fund: 'false' } });

beforeAll(async () => {
  assertBuilt();
  world = await createTestWorld();
  work = mkdtempSync(join(tmpdir(), 'mta-sts-install-'));
  npm(['pack', '--pack-destination', work], ROOT);
  const tarball = readdirSync(work).find((f) => f.endsWith('.tgz'))!;
  const dir = harakaInstall();
  cpSync(join(ROOT, 'examples/haraka/config'), join(dir, 'config'), { recursive: true });
  npm(['install', '--prefer-offline', '--no-save', join(work, tarball)], dir);
  const caFile = join(work, 'ca.pem');
  writeFileSync(caFile, world.ca.rootPem);
  // The example's mta-sts.ini, pointed at the test world (DNS server, CA, policy and MX ports).
  haraka = await startHaraka({
    dir,
    linkPackage: false,
    mtaStsIni: [
      '[main]',
      'loglevel=info',
      `mx_port=${world.smtpPort}`,
      '[engine]',
      `dns_servers=${world.mtaStsOptions().dnsServers[0]}`,
      `ca_file=${caFile}`,
      `https_port=${world.httpsPort}`,
    ],
  });
}, 120_000);

afterAll(async () => {
  await disposeHaraka(haraka);
  await world?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('Haraka plugin installed from the package tarball', () => {
  it('the packed plugin is a real install (no link to the repository), found by its config/plugins line', () => {
    expect(existsSync(join(haraka!.dir, 'node_modules/mta-sts-sender/haraka/package.json'))).toBe(true);
    expect(existsSync(join(haraka!.dir, 'node_modules/mta-sts-sender/dist/haraka/index.cjs'))).toBe(true);
    expect(haraka!.output()).toMatch(/\[mta-sts-sender\/haraka\] mta-sts: loaded config\/mta-sts\.ini/);
  });

  it('enforces a policy: compliant MX over TLS, an MX without STARTTLS gets nothing', async () => {
    const good = await world.addMx('inst-good.test', 'mx1.inst-good.test');
    world.publishPolicy('inst-good.test', { id: '1', mode: 'enforce', mx: ['*.inst-good.test'], maxAge: 86400 });
    const plain = await world.addMx('inst-plain.test', 'mx1.inst-plain.test', { starttls: false });
    world.publishPolicy('inst-plain.test', { id: '1', mode: 'enforce', mx: ['*.inst-plain.test'], maxAge: 86400 });
    await haraka!.send('rcpt@inst-good.test');
    await haraka!.send('rcpt@inst-plain.test');
    expect(await haraka!.waitFor('inst-good.test')).toMatchObject({ event: 'delivered', secured: true });
    expect(good.messages[0]).toMatchObject({ secure: true, sni: 'mx1.inst-good.test' });
    expect(await haraka!.waitFor('inst-plain.test')).toMatchObject({ event: 'deferred' });
    expect(plain.mailFrom).toHaveLength(0);
  });
});
