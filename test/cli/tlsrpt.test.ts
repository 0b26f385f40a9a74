/**
 * `mta-sts tlsrpt preview|send` run as a process on a TLS-RPT database written by the tlsrpt module's
 * `createSqliteTlsRptStore`, sending to HTTPS report endpoints of the loopback world.
 */
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';
import { createSqliteTlsRptStore, DEFAULT_AGGREGATION_LIMITS, type PendingReport, type TlsRptReport } from '../../src/tlsrpt/index.js';
import { utcDayKey } from '../../src/tlsrpt/report.js';
import { buildCli, jsonLines, removeBuiltCli, runMtaSts } from './helpers.js';

let world: TestWorld;
let tmp: string;
let netArgs: string[];
const received: Array<{ host: string; contentType: string | undefined; report: TlsRptReport }> = [];

const DAY = 86_400_000;
const yesterday = () => utcDayKey(Date.now() - DAY);
const today = () => utcDayKey(Date.now());

/** Writes counts for (day, domain) into a fresh database, as a reporter would. */
async function makeDb(entries: Array<[day: string, domain: string]>): Promise<string> {
  const path = join(mkdtempSync(join(tmp, 'db-')), 'tlsrpt.db');
  const store = createSqliteTlsRptStore({ path });
  await store.mergeMany(
    entries.map(([day, domain]) => ({
      day,
      policyDomain: domain,
      policies: [
        {
          policy: { type: 'sts' as const, domain, policyString: ['version: STSv1', 'mode: enforce', `mx: mx.${domain}`, 'max_age: 86400'], mxHost: [`mx.${domain}`] },
          successCount: 7,
          failureCount: 2,
          failures: [{ resultType: 'certificate-host-mismatch' as const, receivingMxHostname: `mx.${domain}`, receivingIp: '127.0.0.9', count: 2 }],
        },
      ],
    })),
    DEFAULT_AGGREGATION_LIMITS,
  );
  await store.close();
  return path;
}

/** The records of a database (`<day>/<domain>`), read with SQL. */
function records(path: string): string[] {
  const raw = new Database(path, { readonly: true });
  try {
    return (raw.prepare('SELECT day, policy_domain FROM tlsrpt_policy UNION SELECT day, policy_domain FROM tlsrpt_report ORDER BY 1, 2').all() as Array<{ day: string; policy_domain: string }>).map((r) => `${r.day}/${r.policy_domain}`);
  } finally {
    raw.close();
  }
}

/** The database file's bytes (written back into it when a writer closes), to compare before and after. */
const dbBytes = (path: string): string => readFileSync(path).toString('base64');

beforeAll(async () => {
  await buildCli();
  world = await createTestWorld();
  tmp = mkdtempSync(join(tmpdir(), 'mta-sts-cli-tlsrpt-'));
  writeFileSync(join(tmp, 'ca.pem'), world.ca.rootPem);
  const o = world.mtaStsOptions();
  netArgs = ['--dns-server', o.dnsServers[0]!, '--ca', join(tmp, 'ca.pem'), '--https-port', String(o.httpsPort), '--timeout', '3000', '--allow-internal-destinations', '--submitter', 'mta.sender.test', '--org', 'Sender Test', '--contact', 'tlsrpt@sender.test'];

  // https.test: reports by HTTPS POST, accepted.
  world.dns.addRecords('_smtp._tls.https.test', { txt: ['v=TLSRPTv1; rua=https://reports.https.test/v1/tlsrpt'] });
  world.addHttpsHost('reports.https.test', {
    handler: (req, res, body) => {
      received.push({ host: 'reports.https.test', contentType: req.headers['content-type'], report: JSON.parse(gunzipSync(body).toString('utf8')) as TlsRptReport });
      res.writeHead(201).end();
    },
  });
  // failing.test: the endpoint answers 500.
  world.dns.addRecords('_smtp._tls.failing.test', { txt: ['v=TLSRPTv1; rua=https://reports.failing.test/'] });
  world.addHttpsHost('reports.failing.test', { handler: (_req, res) => res.writeHead(500).end('no') });
  // mailto.test: only a mailto: destination.
  world.dns.addRecords('_smtp._tls.mailto.test', { txt: ['v=TLSRPTv1; rua=mailto:tlsrpt@mailto.test'] });
  world.dns.addRecords('_smtp._tls.mailonly.test', { txt: ['v=TLSRPTv1; rua=mailto:tlsrpt@mailonly.test'] });
  // live.test: reports by HTTPS, for the live-database test.
  world.dns.addRecords('_smtp._tls.live.test', { txt: ['v=TLSRPTv1; rua=https://reports.https.test/v1/tlsrpt'] });
  // norecord.test publishes no TLS-RPT record.
});

afterAll(async () => {
  await world?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  removeBuiltCli();
});

describe.concurrent('mta-sts tlsrpt preview', { timeout: 45_000 }, () => {
  it('shows the pending reports, closed days and the current day, and changes nothing', async () => {
    const db = await makeDb([
      [yesterday(), 'https.test'],
      [today(), 'https.test'],
    ]);
    const before = dbBytes(db);
    const r = await runMtaSts(['tlsrpt', 'preview', '--db', db, '--submitter', 'mta.sender.test']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Database ${db}: 2 pending reports (1 for closed days)`);
    expect(r.stdout).toContain(`https.test  ${yesterday()}  due`);
    expect(r.stdout).toContain(`https.test  ${today()}  current day, still counting`);
    expect(r.stdout).toContain('sessions: 7 successful, 2 failed');
    expect(r.stdout).toContain('certificate-host-mismatch ×2 mx.https.test 127.0.0.9');
    expect(dbBytes(db)).toEqual(before);
  });

  it('--json: one object per report with the RFC 8460 report', async () => {
    const db = await makeDb([[yesterday(), 'https.test']]);
    const r = await runMtaSts(['tlsrpt', 'preview', '--json', '--db', db, '--submitter', 'mta.sender.test', '--org', 'Sender Test']);
    expect(r.code).toBe(0);
    const [pending] = jsonLines<PendingReport>(r.stdout);
    expect(pending).toMatchObject({
      day: yesterday(),
      policyDomain: 'https.test',
      closed: true,
      report: {
        'organization-name': 'Sender Test',
        'contact-info': 'postmaster@mta.sender.test',
        policies: [{ policy: { 'policy-type': 'sts', 'policy-domain': 'https.test' }, summary: { 'total-successful-session-count': 7, 'total-failure-session-count': 2 } }],
      },
    });
  });

  it('an empty database: no reports, exit 0', async () => {
    const db = await makeDb([]);
    const r = await runMtaSts(['tlsrpt', 'preview', '--db', db]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('0 pending reports');
  });
});

describe.concurrent('mta-sts tlsrpt send', { timeout: 45_000 }, () => {
  it('sends closed days by HTTPS POST (gzip), removes them from the database, keeps the current day; exit 0', async () => {
    const db = await makeDb([
      [yesterday(), 'https.test'],
      [today(), 'https.test'],
      [yesterday(), 'norecord.test'],
    ]);
    const r = await runMtaSts(['tlsrpt', 'send', '--db', db, ...netArgs]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`sent +https\\.test ${yesterday()} → https://reports\\.https\\.test/v1/tlsrpt`));
    expect(r.stdout).toMatch(new RegExp(`skipped +norecord\\.test ${yesterday()}: no usable TLS-RPT record`));
    expect(r.stdout).toContain('1 sent, 0 failed, 0 dropped, 1 skipped, 0 kept');
    const got = received.find((x) => x.report['date-range']['start-datetime'].startsWith(yesterday()) && x.report['organization-name'] === 'Sender Test');
    expect(got?.contentType).toBe('application/tlsrpt+gzip');
    expect(got?.report['contact-info']).toBe('tlsrpt@sender.test');
    expect(got?.report['report-id']).toMatch(/@mta\.sender\.test$/);
    expect(records(db)).toEqual([`${today()}/https.test`]);
  });

  it('a failing endpoint: exit 1, the report stays in the database for a retry', async () => {
    const db = await makeDb([[yesterday(), 'failing.test']]);
    const r = await runMtaSts(['tlsrpt', 'send', '--json', '--db', db, ...netArgs]);
    expect(r.code).toBe(1);
    const [event] = jsonLines<{ type: string; policyDomain: string; attempt: number; error: { code: string } }>(r.stdout);
    expect(event).toMatchObject({ type: 'failed', policyDomain: 'failing.test', attempt: 1, error: { code: 'TLSRPT_HTTP_STATUS' } });
    expect(records(db)).toEqual([`${yesterday()}/failing.test`]);
    const preview = await runMtaSts(['tlsrpt', 'preview', '--db', db]);
    expect(preview.stdout).toMatch(/retrying \(1 failed attempt: report POST to https:\/\/reports\.failing\.test\/ answered 500\)/);
  });

  it('mailto:-only reports stay in the database without --smtp', async () => {
    const db = await makeDb([[yesterday(), 'mailto.test']]);
    const r = await runMtaSts(['tlsrpt', 'send', '--db', db, ...netArgs]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/kept +mailto\.test .*: only mailto: destinations \(mailto:tlsrpt@mailto\.test\); give --smtp to send it/);
    expect(records(db)).toEqual([`${yesterday()}/mailto.test`]);
  });
});

describe.concurrent('tlsrpt: usage errors, read-only preview, unsigned mail, identity', { timeout: 45_000 }, () => {
  it('send --smtp "not a url" is a usage error (exit 2) before the database is touched, however often it is run', async () => {
    const db = await makeDb([[yesterday(), 'mailto.test']]);
    const before = dbBytes(db);
    for (let run = 0; run < 8; run++) {
      const r = await runMtaSts(['tlsrpt', 'send', '--db', db, ...netArgs, '--smtp', 'not a url']);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^mta-sts: error: --smtp must be an SMTP URL such as smtp:\/\/relay\.example:587 \(got "not a url"\)$/m);
      expect(r.stdout).toBe('');
    }
    // No delivery attempt was counted, the report is still there, byte for byte.
    expect(dbBytes(db)).toEqual(before);
  });

  it('preview writes nothing, not even to remove a corrupt record (it is reported and left in place)', async () => {
    const db = await makeDb([
      [yesterday(), 'https.test'],
      [yesterday(), 'broken.test'],
    ]);
    const raw = new Database(db);
    raw.prepare("UPDATE tlsrpt_policy SET policy_key = '{ not json' WHERE policy_domain = 'broken.test'").run();
    raw.close();
    const before = dbBytes(db);
    const r = await runMtaSts(['tlsrpt', 'preview', '--db', db, '--submitter', 'mta.sender.test']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('1 pending report');
    expect(r.stderr).toContain(`mta-sts: warning: the record of broken.test ${yesterday()} in ${db} is corrupt and was skipped (left in place)`);
    expect(dbBytes(db)).toEqual(before);
  });

  it("send by mail without DKIM prints the reporter's own warning once (RFC 8460 §5.3)", async () => {
    const db = await makeDb([]);
    const [unsigned, http] = await Promise.all([
      runMtaSts(['tlsrpt', 'send', '--db', db, ...netArgs, '--smtp', 'smtp://127.0.0.1:9']),
      runMtaSts(['tlsrpt', 'send', '--db', db, ...netArgs]),
    ]);
    expect(unsigned.code).toBe(0);
    const warnings = unsigned.stderr.split('\n').filter((l) => /DKIM|unsigned/i.test(l));
    expect(warnings).toEqual([
      'mta-sts: warning: report mail is configured without DKIM: RFC 8460 §5.3 asks for report mail to be DKIM-signed by the reporting domain, and receivers may discard unsigned reports. Set the dkim option ({ domainName, keySelector, privateKey }), or transportSignsDkim when the mail transport signs.',
    ]);
    // Without mail delivery there is nothing to sign: no warning.
    expect(http.stderr).toBe('');
  });

  it('a reporter that cannot be created from the options is a usage error (exit 2), the database unchanged', async () => {
    const db = await makeDb([[yesterday(), 'https.test']]);
    const before = dbBytes(db);
    const r = await runMtaSts(['tlsrpt', 'send', '--db', db, ...netArgs, '--org', ' ']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^mta-sts: error: createTlsRptReporter\(\): .*organizationName/m);
    expect(r.stderr).not.toContain('internal error');
    expect(r.stdout).toBe('');
    expect(dbBytes(db)).toEqual(before);
  });

  it('--dkim-key that is not a private key is a usage error (Nodemailer would send unsigned), the database unchanged', async () => {
    const db = await makeDb([[yesterday(), 'https.test']]);
    writeFileSync(join(tmp, 'not-a-key.pem'), '-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n');
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    writeFileSync(join(tmp, 'dkim.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const before = dbBytes(db);
    const dkim = ['--dkim-domain', 'sender.test', '--dkim-selector', 's1'];
    const bad = await runMtaSts(['tlsrpt', 'send', '--db', db, ...netArgs, ...dkim, '--dkim-key', join(tmp, 'not-a-key.pem')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`mta-sts: error: --dkim-key ${join(tmp, 'not-a-key.pem')} is not a private key (PEM)`);
    expect(dbBytes(db)).toEqual(before);
    const good = await runMtaSts(['tlsrpt', 'send', '--db', db, ...netArgs, ...dkim, '--dkim-key', join(tmp, 'dkim.pem')]);
    expect(good.code).toBe(0);
  });

  it('preview reads the database in place: no temporary copy (it works with an unusable TMPDIR)', async () => {
    const db = await makeDb([[yesterday(), 'https.test']]);
    const before = dbBytes(db);
    const r = await runMtaSts(['tlsrpt', 'preview', '--db', db, '--submitter', 'mta.sender.test'], { env: { TMPDIR: join(tmp, 'no-such-dir', 'tmp') } });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('1 pending report (1 for closed days)');
    expect(dbBytes(db)).toEqual(before);
  });

  it('mailto:-only reports without --smtp: kept by the reporter itself, one _smtp._tls lookup (no lookups of the CLI)', async () => {
    const db = await makeDb([[yesterday(), 'mailonly.test']]);
    const r = await runMtaSts(['tlsrpt', 'send', '--json', '--db', db, ...netArgs]);
    expect(r.code).toBe(0);
    expect(jsonLines(r.stdout)).toEqual([{ type: 'skipped-no-transport', day: yesterday(), policyDomain: 'mailonly.test', uris: ['mailto:tlsrpt@mailonly.test'], kept: true }]);
    expect(world.dns.queries.filter((q) => q.name.toLowerCase() === '_smtp._tls.mailonly.test' && q.type === 'TXT')).toHaveLength(1);
    expect(records(db)).toEqual([`${yesterday()}/mailonly.test`]);
  });

  it('preview --json shows the organization and contact that send puts in the report', async () => {
    const db = await makeDb([[yesterday(), 'https.test']]);
    const who = ['--submitter', 'mta.identity.test', '--org', 'Identity Org', '--contact', 'reports@identity.test'];
    const preview = await runMtaSts(['tlsrpt', 'preview', '--json', '--db', db, ...who]);
    const [shown] = jsonLines<PendingReport & { organizationName: string; contactInfo: string; submitter: string }>(preview.stdout);
    expect(shown).toMatchObject({ organizationName: 'Identity Org', contactInfo: 'reports@identity.test', submitter: 'mta.identity.test' });
    const send = await runMtaSts(['tlsrpt', 'send', '--db', db, ...netArgs.filter((a, i, all) => !['--submitter', '--org', '--contact'].includes(a) && !['--submitter', '--org', '--contact'].includes(all[i - 1]!)), ...who]);
    expect(send.code).toBe(0);
    const got = received.find((x) => x.report['organization-name'] === 'Identity Org');
    expect(got?.report).toMatchObject({ 'organization-name': shown!.report['organization-name'], 'contact-info': shown!.report['contact-info'] });
    expect(got?.report['contact-info']).toBe(shown!.contactInfo);
  });

  it('a submitter under an unknown top-level domain (a typo, a bare host name) gets a warning', async () => {
    const db = await makeDb([]);
    const [typo, bare, fine] = await Promise.all([
      runMtaSts(['tlsrpt', 'preview', '--db', db, '--submitter', 'mta.example.con']),
      runMtaSts(['tlsrpt', 'preview', '--db', db, '--submitter', 'mailhost']),
      runMtaSts(['tlsrpt', 'preview', '--db', db, '--submitter', 'mta.example.co.uk']),
    ]);
    expect(typo.stderr).toContain('mta-sts: warning: the submitter mta.example.con is not under a known top-level domain (.con)');
    expect(bare.stderr).toContain('the submitter mailhost is not under a known top-level domain (.mailhost)');
    expect(fine.stderr).toBe('');
    expect([typo.code, bare.code, fine.code]).toEqual([0, 0, 0]);
  });
});

/** Has a writer stored counts yet (the file exists and holds a record)? */
async function hasRecords(path: string): Promise<boolean> {
  try {
    return records(path).length > 0;
  } catch {
    return false;
  }
}

describe('tlsrpt send against a live database', () => {
  const WRITER = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'live-writer.ts');

  it('an MTA process records into the same database while send runs: sent + remaining = recorded, exactly', { timeout: 120_000 }, async () => {
    const db = join(mkdtempSync(join(tmp, 'live-')), 'tlsrpt.db');
    const child = spawn(process.execPath, ['--import', 'tsx', WRITER, db, '20000', 'live.test'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (t: string) => (out += t));
    child.stderr.setEncoding('utf8').on('data', (t: string) => (out += t));
    let running = true;
    const done = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    void done.then(() => (running = false));
    const sends: number[] = [];
    try {
      // Wait for the first counts, then send over and over while the writer records.
      while (running && !(await hasRecords(db))) await new Promise((resolve) => setTimeout(resolve, 50));
      while (running) {
        const r = await runMtaSts(['tlsrpt', 'send', '--db', db, ...netArgs]);
        expect(r.stderr).toBe('');
        sends.push(r.code ?? -1);
      }
    } finally {
      child.kill('SIGKILL');
    }
    expect(await done, out).toBe(0);
    const recorded = Number(/^done (\d+)/.exec(out)?.[1]);
    expect(sends.length).toBeGreaterThan(1);
    expect(sends.every((code) => code === 0)).toBe(true);
    const sessionsOf = (reports: TlsRptReport[]) => reports.reduce((n, rep) => n + rep.policies.reduce((m, p) => m + p.summary['total-successful-session-count'] + p.summary['total-failure-session-count'], 0), 0);
    const sentDuring = sessionsOf(received.filter((x) => x.report.policies.some((p) => p.policy['policy-domain'] === 'live.test')).map((x) => x.report));
    const preview = createSqliteTlsRptStore({ path: db, readOnly: true });
    const remaining = await preview.get({ day: yesterday(), policyDomain: 'live.test' });
    await preview.close();
    const left = remaining ? remaining.policies.reduce((n, p) => n + p.successCount + p.failureCount, 0) : 0;
    expect(sentDuring).toBeGreaterThan(0);
    expect({ total: sentDuring + left, recorded }, out).toEqual({ total: 20_000, recorded: 20_000 });
  });
});
