/**
 * Optional peer dependencies (`nodemailer`, `smtp-server`, `node-forge`, `dns-packet`) that are not installed:
 * every factory that needs one says which package to install, at creation, with `MTASTS_MISSING_PEER` (never a raw
 * `ERR_MODULE_NOT_FOUND` at import, nor a failure a day later when the first TLS report is due).
 *
 * Real, not simulated: the sources are copied into a temporary application whose `node_modules` holds every
 * installed package except the four peers, and a child Node process runs the factories there.
 */
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PEERS = new Set(['nodemailer', 'smtp-server', 'node-forge', 'dns-packet', 'better-sqlite3']);

const SCRIPT = `
const out = {};
const outcome = async (fn) => {
  try {
    await fn();
    return 'ok';
  } catch (e) {
    return { code: e.code, package: e.details?.package, message: e.message };
  }
};
const nodemailer = await import('./src/integrations/nodemailer/index.ts');
const smtpTransport = { name: 'SMTP', options: { host: 'mx1.example.test', port: 25 }, send() {} };
out.transport = await outcome(() => nodemailer.createMtaStsTransport({ dnsServers: ['127.0.0.1'] }).close());
out.guard = await outcome(() => nodemailer.guardTransport(smtpTransport, { dnsServers: ['127.0.0.1'] }).unguard());
const hooks = await import('./src/integrations/hooks.ts');
out.hooks = await outcome(() => hooks.createMtaStsHooks({ dnsServers: ['127.0.0.1'] }).close());
const tlsrpt = await import('./src/tlsrpt/index.ts');
const identity = { organizationName: 'Org', contactInfo: 'tlsrpt@sender.test', submitter: 'sender.test' };
out.reporterByMail = await outcome(() => tlsrpt.createTlsRptReporter({ ...identity, mailTransport: { host: 'smtp.sender.test' } }).close());
out.reporterHttpsOnly = await outcome(() => tlsrpt.createTlsRptReporter(identity).close());
const testing = await import('./src/testing/index.ts');
out.world = await outcome(() => testing.createTestWorld());
out.ca = await outcome(() => testing.createTestCa());
console.log(JSON.stringify(out));
`;

let app: string;

beforeAll(async () => {
  app = await mkdtemp(path.join(tmpdir(), 'mta-sts-peers-'));
  await cp(path.join(ROOT, 'src'), path.join(app, 'src'), { recursive: true });
  await writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'app-without-peers', private: true, type: 'module' }));
  await writeFile(path.join(app, 'check.mjs'), SCRIPT);
  const modules = path.join(app, 'node_modules');
  await mkdir(modules);
  // Every installed package as a link, except the four peers.
  for (const entry of await readdir(path.join(ROOT, 'node_modules'))) {
    if (PEERS.has(entry) || entry.startsWith('.')) continue;
    await symlink(path.join(ROOT, 'node_modules', entry), path.join(modules, entry));
  }
});

afterAll(async () => {
  if (app) await rm(app, { recursive: true, force: true });
});

describe('missing optional peers: say what to install, at creation', () => {
  it('each factory that needs a missing peer throws MTASTS_MISSING_PEER naming it; the others work', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'check.mjs'], { cwd: app, timeout: 30_000 });
    const out = JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, { code?: string; package?: string; message?: string } | 'ok'>;
    expect(out.transport).toMatchObject({ code: 'MTASTS_MISSING_PEER', package: 'nodemailer', message: expect.stringMatching(/^createMtaStsTransport\(\) needs the optional peer dependency nodemailer .*npm install nodemailer/) });
    expect(out.guard).toMatchObject({ code: 'MTASTS_MISSING_PEER', package: 'nodemailer' });
    expect(out.hooks).toBe('ok');
    expect(out.reporterByMail).toMatchObject({ code: 'MTASTS_MISSING_PEER', package: 'nodemailer', message: expect.stringMatching(/createTlsRptReporter\(\) with mailTransport/) });
    expect(out.reporterHttpsOnly).toBe('ok');
    // Every missing package of the world in one error, one install line.
    expect(out.world).toMatchObject({ code: 'MTASTS_MISSING_PEER', package: 'node-forge dns-packet smtp-server', message: expect.stringMatching(/npm install node-forge dns-packet smtp-server$/) });
    expect(out.ca).toMatchObject({ code: 'MTASTS_MISSING_PEER', package: 'node-forge', message: expect.stringMatching(/npm install node-forge/) });
  }, 60_000);

  it('mta-sts world names every missing package in one plain line, exit 2, and leaves no temporary directory', async () => {
    const tmp = await mkdtemp(path.join(tmpdir(), 'mta-sts-peers-tmp-'));
    try {
      const result = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'world'], { cwd: app, timeout: 30_000, env: { ...process.env, TMPDIR: tmp, NO_COLOR: '1' } }).then(
        () => ({ code: 0, stderr: '' }),
        (error: { code?: number; stderr?: string }) => ({ code: error.code, stderr: error.stderr ?? '' }),
      );
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/^mta-sts: error: mta-sts world: .*npm install node-forge dns-packet smtp-server\n/);
      expect(result.stderr).not.toMatch(/internal error|\n\s+at /);
      expect((await readdir(tmp)).filter((name) => name.startsWith('mta-sts'))).toEqual([]); // tsx keeps its own cache here
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }, 60_000);
});
