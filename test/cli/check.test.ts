/**
 * `mta-sts check` run as a process against the loopback test world: human and JSON output, exit codes, batch mode
 * (file and stdin), --probe verdicts, bad arguments.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';
import type { CheckResult } from '../../src/cli/check.js';
import { buildCli, jsonLines, removeBuiltCli, runMtaSts, runMtaStsFromSource } from './helpers.js';

let world: TestWorld;
let tmp: string;
let caFile: string;
/** Options pointing the CLI at the world (DNS, CA, policy port, SMTP port). */
let worldArgs: string[];

beforeAll(async () => {
  await buildCli();
  world = await createTestWorld();
  tmp = mkdtempSync(join(tmpdir(), 'mta-sts-cli-'));
  caFile = join(tmp, 'world-ca.pem');
  writeFileSync(caFile, world.ca.rootPem);
  const o = world.mtaStsOptions();
  worldArgs = ['--dns-server', o.dnsServers[0]!, '--ca', caFile, '--https-port', String(o.httpsPort), '--smtp-port', String(world.smtpPort), '--timeout', '3000'];

  await world.addMx('good.test', 'mx1.good.test');
  world.publishPolicy('good.test', { id: 'good1', mode: 'enforce', mx: ['mx1.good.test'] });
  world.dns.addRecords('_smtp._tls.good.test', { txt: ['v=TLSRPTv1; rua=mailto:tlsrpt@good.test'] });

  await world.addMx('strip.test', 'mx.strip.test', { starttls: false });
  world.publishPolicy('strip.test', { id: 'strip1', mode: 'enforce', mx: ['mx.strip.test'] });

  await world.addMx('expiredmx.test', 'mx.expiredmx.test', { cert: 'expired' });
  world.publishPolicy('expiredmx.test', { id: 'ex1', mode: 'enforce', mx: ['mx.expiredmx.test'] });

  await world.addMx('wrongcert.test', 'mx.wrongcert.test', { cert: 'wrong-name' });
  world.publishPolicy('wrongcert.test', { id: 'wc1', mode: 'enforce', mx: ['mx.wrongcert.test'] });

  await world.addMx('testing.test', 'mx.elsewhere.test');
  world.publishPolicy('testing.test', { id: 't1', mode: 'testing', mx: ['*.testing.test'] });

  await world.addMx('unlisted.test', 'mx.unlisted-elsewhere.test');
  world.publishPolicy('unlisted.test', { id: 'u1', mode: 'enforce', mx: ['*.unlisted.test'] });

  await world.addMx('nopolicy.test', 'mx.nopolicy.test');

  await world.addMx('charset.test', 'mx.charset.test');
  world.publishPolicy('charset.test', { id: 'cs1', mode: 'enforce', mx: ['mx.charset.test'], host: { kind: 'ok', contentType: 'text/plain; charset=utf-8' } });
  world.dns.addRecords('_mta-sts.charset.test', { txt: ['google-site-verification=abc'] });
  world.publishPolicy('badpolicy.test', { id: 'bp1', mode: 'enforce', mx: [], body: 'version: STSv1\nmode: sometimes\n' });

  await world.addMx('fetch404.test', 'mx.fetch404.test');
  world.publishPolicy('fetch404.test', { id: 'f1', mode: 'enforce', mx: ['mx.fetch404.test'], host: { kind: 'status', status: 404 } });

  await world.addMx('badtxt.test', 'mx.badtxt.test');
  world.publishPolicy('badtxt.test', { id: 'b1', mode: 'enforce', mx: ['mx.badtxt.test'], txt: 'v=STSv1; id=not valid!;' });

  await world.addMx('twotxt.test', 'mx.twotxt.test');
  world.publishPolicy('twotxt.test', { id: 'x1', mode: 'enforce', mx: ['mx.twotxt.test'], txt: ['v=STSv1; id=a1;', 'v=STSv1; id=a2;'] });

  await world.addMx('badrpt.test', 'mx.badrpt.test');
  world.dns.addRecords('_smtp._tls.badrpt.test', { txt: ['v=TLSRPTv1; rua=ftp://nope.test'] });

  await world.addMx('servfail.test', 'mx.servfail.test');
  world.dns.fail('_mta-sts.servfail.test', 'servfail');
});

afterAll(async () => {
  await world?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  removeBuiltCli();
});

describe.concurrent('mta-sts check (one domain, human output)', { timeout: 45_000 }, () => {
  it('an enforce domain: TXT, policy fetch, parsed policy, MX match, TLS-RPT record; exit 0', async () => {
    const r = await runMtaSts(['check', ...worldArgs, 'good.test']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = r.stdout;
    expect(out).toMatch(/^good\.test {2}enforce$/m);
    expect(out).toContain('_mta-sts.good.test');
    expect(out).toContain('"v=STSv1; id=good1;"');
    expect(out).toContain('valid STS record, id good1');
    expect(out).toMatch(/Policy {2}https:\/\/mta-sts\.good\.test:\d+\/\.well-known\/mta-sts\.txt/);
    expect(out).toMatch(/✓ HTTP 200, text\/plain, \d+ bytes, \d+ ms/);
    expect(out).toContain('mode enforce, max_age 86400 (1 d)');
    expect(out).toMatch(/10 mx1\.good\.test +✓ matches mx1\.good\.test/);
    expect(out).toContain('_smtp._tls.good.test');
    expect(out).toContain('reports go to mailto:tlsrpt@good.test');
    expect(out).toContain('Verdict OK: a sender applies mode enforce');
    expect(out).toContain('(MX not probed; add --probe)');
    // NO_COLOR and no terminal: no escape sequences.
    expect(out).not.toMatch(/\x1b\[/);
  });

  it('a domain without a policy is not a problem (exit 0)', async () => {
    const r = await runMtaSts(['check', ...worldArgs, 'nopolicy.test']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^nopolicy\.test {2}none$/m);
    expect(r.stdout).toContain('no STS record: the domain publishes no MTA-STS policy');
    expect(r.stdout).toContain('not fetched (no valid TXT record)');
    expect(r.stdout).toContain('no TLS-RPT record');
  });

  it('a policy that cannot be fetched is a problem (exit 1), with the HTTP status', async () => {
    const r = await runMtaSts(['check', ...worldArgs, 'fetch404.test']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^fetch404\.test {2}broken$/m);
    expect(r.stdout).toContain('MTASTS_HTTP_STATUS: policy host answered HTTP 404');
    expect(r.stdout).toContain('1 problem');
  });

  it('an MX not matching an enforce policy is a problem; under testing it would fail under enforce (two domains, one run)', async () => {
    const r = await runMtaSts(['check', ...worldArgs, 'unlisted.test', 'testing.test']);
    expect(r.code).toBe(1);
    const [enforce, testing] = r.stdout.split(/\n\n(?=\S)/);
    expect(enforce).toMatch(/^unlisted\.test {2}broken$/m);
    expect(enforce).toMatch(/mx\.unlisted-elsewhere\.test +✗ matches no mx pattern of the policy/);
    expect(enforce).toContain('no MX host matches the enforce policy: senders defer all mail');
    expect(testing).toMatch(/^testing\.test {2}would-fail$/m);
    expect(testing).toContain('✗ would fail under enforce: MX mx.elsewhere.test is not covered by the testing policy');
    // Several domains: a summary follows.
    expect(r.stdout).toMatch(/Summary: 2 domains in [\d.]+ s/);
  });

  it('FORCE_COLOR turns colours on, --no-color turns them off again', async () => {
    const [coloured, plain] = await Promise.all([
      runMtaSts(['check', ...worldArgs, 'good.test'], { env: { NO_COLOR: undefined, FORCE_COLOR: '1' } }),
      runMtaSts(['check', '--no-color', ...worldArgs, 'good.test'], { env: { NO_COLOR: undefined, FORCE_COLOR: '1' } }),
    ]);
    expect(coloured.stdout).toMatch(/\x1b\[32menforce\x1b\[39m/);
    expect(plain.stdout).not.toMatch(/\x1b\[/);
  });
});

describe.concurrent('mta-sts check --json', { timeout: 45_000 }, () => {
  it('classifies TXT, DNS and TLS-RPT failures (one run, several domains)', async () => {
    const r = await runMtaSts(['check', '--json', ...worldArgs, 'badtxt.test', 'twotxt.test', 'servfail.test', 'badrpt.test', 'nopolicy.test']);
    expect(r.code).toBe(1);
    const byDomain = new Map(jsonLines<CheckResult>(r.stdout).map((x) => [x.domain, x]));
    expect([...byDomain.keys()]).toEqual(['badtxt.test', 'twotxt.test', 'servfail.test', 'badrpt.test', 'nopolicy.test']);
    // An invalid or duplicated TXT record: a problem, and the policy is not fetched (as a sender would not).
    expect(byDomain.get('badtxt.test')).toMatchObject({ category: 'broken', txt: { verdict: 'invalid' }, policy: { fetched: false }, problems: [{ code: 'txt-invalid' }] });
    expect(byDomain.get('twotxt.test')).toMatchObject({ category: 'broken', txt: { verdict: 'multiple' }, policy: { fetched: false }, problems: [{ code: 'txt-multiple' }] });
    // SERVFAIL is not "no policy".
    expect(byDomain.get('servfail.test')).toMatchObject({ category: 'broken', txt: { verdict: 'dns-error', error: { code: 'MTASTS_DNS_TEMPORARY' } }, problems: [{ code: 'txt-dns-error' }] });
    // An invalid TLS-RPT record is only a warning.
    expect(byDomain.get('badrpt.test')).toMatchObject({ category: 'none', problem: false, tlsrpt: { verdict: 'invalid' }, warnings: [{ code: 'tlsrpt-invalid' }] });
    expect(byDomain.get('nopolicy.test')).toMatchObject({ category: 'none', problem: false, mode: null, txt: { verdict: 'none' }, tlsrpt: { verdict: 'none' } });
  });

  it('prints one JSON object per domain with the whole trace', async () => {
    const r = await runMtaSts(['check', '--json', ...worldArgs, 'good.test', 'fetch404.test']);
    expect(r.code).toBe(1);
    const [good, fetch404] = jsonLines<CheckResult>(r.stdout);
    expect(good).toMatchObject({
      input: 'good.test',
      domain: 'good.test',
      category: 'enforce',
      mode: 'enforce',
      problem: false,
      problems: [],
      txt: { name: '_mta-sts.good.test', verdict: 'valid', id: 'good1', records: ['v=STSv1; id=good1;'] },
      policy: { fetched: true, ok: true, httpStatus: 200, contentType: 'text/plain', mode: 'enforce', maxAge: 86400, mx: ['mx1.good.test'] },
      mx: { verdict: 'ok', hosts: [{ host: 'mx1.good.test', priority: 10, match: 'matched', pattern: 'mx1.good.test' }] },
      tlsrpt: { verdict: 'valid', rua: ['mailto:tlsrpt@good.test'] },
      probed: false,
    });
    expect(good!.policy!.url).toMatch(/^https:\/\/mta-sts\.good\.test:\d+\/\.well-known\/mta-sts\.txt$/);
    expect(good!.policy!.bytes).toBeGreaterThan(0);
    expect(typeof good!.policy!.elapsedMs).toBe('number');
    expect(fetch404).toMatchObject({
      domain: 'fetch404.test',
      category: 'broken',
      mode: null,
      problem: true,
      policy: { fetched: true, ok: false, httpStatus: 404, error: { code: 'MTASTS_HTTP_STATUS', resultType: 'sts-policy-fetch-error' } },
      problems: [{ code: 'policy-fetch-failed', resultType: 'sts-policy-fetch-error' }],
    });
  });
});

describe.concurrent("mta-sts check: the trace is the engine's", { timeout: 45_000 }, () => {
  it('shows the content type and bytes the engine received, also for a policy that does not parse, and every TXT record', async () => {
    const [ok, bad] = await Promise.all([runMtaSts(['check', '--json', ...worldArgs, 'charset.test']), runMtaSts(['check', ...worldArgs, 'badpolicy.test'])]);
    const [result] = jsonLines<CheckResult>(ok.stdout);
    expect(result!.policy).toMatchObject({ fetched: true, ok: true, httpStatus: 200, contentType: 'text/plain; charset=utf-8', bytes: Buffer.byteLength(result!.policy!.text!) });
    expect([...result!.txt!.records].sort()).toEqual(['google-site-verification=abc', 'v=STSv1; id=cs1;']);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/✗ MTASTS_POLICY_INVALID: .*\(HTTP 200, text\/plain, 31 bytes, \d+ ms\)/);
  });
});

describe.concurrent('mta-sts check --probe', { timeout: 45_000 }, () => {
  it('a good MX: STARTTLS, TLS version, certificate valid (exit 0)', async () => {
    const r = await runMtaSts(['check', '--probe', ...worldArgs, 'good.test']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/✓ probe 127\.\d+\.\d+\.\d+:\d+: STARTTLS, TLSv1\.[23] TLS_\w+, certificate valid for mx1\.good\.test/);
    expect(r.stdout).not.toContain('add --probe');
  });

  it('an MX that strips STARTTLS: starttls-not-supported (exit 1)', async () => {
    const r = await runMtaSts(['check', '--probe', '--json', ...worldArgs, 'strip.test']);
    expect(r.code).toBe(1);
    const [result] = jsonLines<CheckResult>(r.stdout);
    const probe = result!.mx!.hosts[0]!.probe!;
    expect(probe).toMatchObject({ starttls: false, ok: false, resultType: 'starttls-not-supported', port: world.smtpPort });
    expect(result!.problems).toEqual([expect.objectContaining({ code: 'probe-failed', resultType: 'starttls-not-supported' })]);
  });

  it('an MX with a certificate for another name: certificate-host-mismatch (exit 1), human output', async () => {
    const r = await runMtaSts(['check', '--probe', ...worldArgs, 'wrongcert.test']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/✗ probe 127\.\d+\.\d+\.\d+:\d+: certificate-host-mismatch: .*ERR_TLS_CERT_ALTNAME_INVALID/);
    expect(r.stdout).toContain('1 problem');
  });

  it('an expired MX certificate: its issuer, not-after, days since expiry, names and the negotiated cipher are shown', async () => {
    const [human, json] = await Promise.all([runMtaSts(['check', '--probe', ...worldArgs, 'expiredmx.test']), runMtaSts(['check', '--probe', '--json', ...worldArgs, 'expiredmx.test'])]);
    expect(human.code).toBe(1);
    expect(human.stdout).toMatch(/✗ probe 127\.\d+\.\d+\.\d+:\d+: certificate-expired: .*\(TLSv1\.[23] TLS_\w+\)/);
    expect(human.stdout).toMatch(/certificate: issuer .*CN=/);
    expect(human.stdout).toMatch(/not after \d{4}-\d{2}-\d{2}T[\d:.]+Z \(✗ expired \d+ days? ago\)/);
    expect(human.stdout).toContain('names mx.expiredmx.test');
    expect(human.stdout).toMatch(/sha256 ([0-9A-F]{2}:){31}[0-9A-F]{2}/);
    const [result] = jsonLines<CheckResult>(json.stdout);
    const probe = result!.mx!.hosts[0]!.probe!;
    expect(probe).toMatchObject({ ok: false, resultType: 'certificate-expired', cipher: expect.stringMatching(/^TLS_/), certificate: { san: ['mx.expiredmx.test'] } });
    expect(probe.certificate!.daysLeft).toBeLessThan(0);
  });

  it('without the world CA the certificate is not trusted', async () => {
    const args = worldArgs.filter((a, i) => a !== '--ca' && worldArgs[i - 1] !== '--ca');
    const r = await runMtaSts(['check', '--probe', '--json', ...args, 'good.test']);
    const [result] = jsonLines<CheckResult>(r.stdout);
    // The policy fetch fails first (its certificate is from the same CA), and the probe says why the MX fails.
    expect(result!.policy).toMatchObject({ ok: false, error: { code: 'MTASTS_WEBPKI_INVALID' } });
    expect(result!.mx!.hosts[0]!.probe).toMatchObject({ ok: false, resultType: 'certificate-not-trusted' });
    expect(r.code).toBe(1);
  });
});

describe.concurrent('mta-sts check --file (batch)', { timeout: 45_000 }, () => {
  const list = ['# domains to check', 'good.test', 'nopolicy.test', 'testing.test', '', 'fetch404.test  # broken', 'GOOD.test.', 'not_a_domain!'].join('\n');

  it('reads a file: one line per domain in input order, a summary table, exit 1 when one is broken', async () => {
    const file = join(tmp, 'domains.txt');
    writeFileSync(file, list);
    const r = await runMtaSts(['check', '--file', file, '--concurrency', '3', ...worldArgs]);
    expect(r.code).toBe(1);
    const lines = r.stdout.split('\n');
    expect(lines.slice(0, 5).map((l) => l.split(/\s+/).slice(0, 2).join(' '))).toEqual([
      'good.test enforce',
      'nopolicy.test none',
      'testing.test would-fail',
      'fetch404.test broken',
      `${file}:8: not_a_domain!`.split(/\s+/).slice(0, 2).join(' '),
    ]);
    expect(lines[4]).toMatch(/ broken +not a valid domain name: "not_a_domain!"$/);
    expect(r.stdout).toMatch(/Summary: 5 domains in [\d.]+ s\n {2}enforce +1 .*\n {2}testing +0 .*\n {2}would-fail +1 .*\n {2}none +1 .*\n {2}broken +2 /);
    // Not a terminal: no progress bar.
    expect(r.stderr).toBe('');
  });

  it('reads standard input with "--file -", JSON lines with --json', async () => {
    const r = await runMtaSts(['check', '--file', '-', '--json', ...worldArgs], { input: 'good.test\nnopolicy.test\n' });
    expect(r.code).toBe(0);
    const results = jsonLines<CheckResult>(r.stdout);
    expect(results.map((x) => [x.domain, x.category])).toEqual([
      ['good.test', 'enforce'],
      ['nopolicy.test', 'none'],
    ]);
  });

  it('domains on the command line and from a file are combined', async () => {
    const r = await runMtaSts(['check', '--json', '--file', '-', ...worldArgs, 'good.test'], { input: 'good.test\ntesting.test\n' });
    expect(r.code).toBe(0);
    expect(jsonLines<CheckResult>(r.stdout).map((x) => x.domain)).toEqual(['good.test', 'testing.test']);
  });
});

describe.concurrent('bad arguments as a process: a clear message on stderr, nothing on stdout, exit 2', { timeout: 45_000 }, () => {
  // The full list of argument errors is in program.test.ts (in process, fast); these check the process wiring.
  const cases: Array<[string, string[], RegExp]> = [
    ['no domain', ['check'], /^mta-sts: error: give at least one domain, or --file <path>$/m],
    ['a non-numeric timeout', ['check', '--timeout', 'soon', 'good.test'], /^mta-sts: error: option '--timeout <ms>' argument 'soon' is invalid\. expected an integer from 1 to 600000\.$/m],
    ['an unknown command', ['frobnicate'], /^mta-sts: error: unknown command 'frobnicate'$/m],
  ];
  for (const [what, args, message] of cases) {
    it(what, async () => {
      const r = await runMtaSts(args);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toContain('(run with --help for usage)');
      expect(r.stdout).toBe('');
    });
  }
});

describe.concurrent('--help and --version', { timeout: 45_000 }, () => {
  it('--help and check --help print usage on stdout, exit 0; check --help says what a problem is', async () => {
    const [top, check] = await Promise.all([runMtaSts(['--help']), runMtaSts(['check', '--help'])]);
    for (const r of [top, check]) {
      expect(r.code).toBe(0);
      expect(r.stderr).toBe('');
    }
    expect(top.stdout).toMatch(/^Usage: mta-sts \[options\] \[command\]/);
    expect(top.stdout).toContain('Exit codes:');
    expect(check.stdout).toMatch(/^Usage: mta-sts check \[options\] \[domain\.\.\.\]/);
    expect(check.stdout).toContain('A domain has a problem (exit code 1)');
    expect(check.stdout).toContain('--dns-server <ip[:port]>');
  });

  it('--version prints the package version (also from the source entry, through tsx)', async () => {
    const [r, fromSource] = await Promise.all([runMtaSts(['--version']), runMtaStsFromSource(['--version'], { timeoutMs: 30_000 })]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    expect(fromSource.code).toBe(0);
    expect(fromSource.stdout).toBe(r.stdout);
  });
});
