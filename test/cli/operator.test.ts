/**
 * `mta-sts check` as an operator uses it, run as a process against the loopback world: output to a closed pipe or a
 * full disk, hostile list files, one domain per line, e-mail addresses, the "would fail under enforce" category,
 * the probe's certificate details and the trace's warnings.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';
import type { CheckResult } from '../../src/cli/check.js';
import { buildCli, jsonLines, removeBuiltCli, runMtaSts } from './helpers.js';

let world: TestWorld;
let tmp: string;
let main: string;
let worldArgs: string[];

/** Runs a shell line (bash) with `$MAIN` set to the built CLI; resolves with its stdout, stderr and exit code. */
function sh(line: string, timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', line], { env: { ...process.env, NO_COLOR: '1', MAIN: main, NODE: process.execPath }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Math.round(performance.now() - started) });
    });
  });
}

beforeAll(async () => {
  main = await buildCli();
  world = await createTestWorld();
  tmp = mkdtempSync(join(tmpdir(), 'mta-sts-cli-op-'));
  const caFile = join(tmp, 'world-ca.pem');
  writeFileSync(caFile, world.ca.rootPem);
  worldArgs = ['--dns-server', world.dns.servers[0]!, '--ca', caFile, '--https-port', String(world.httpsPort), '--smtp-port', String(world.smtpPort), '--timeout', '3000'];

  await world.addMx('good.test', 'mx1.good.test');
  world.publishPolicy('good.test', { id: 'g1', mode: 'enforce', mx: ['mx1.good.test'], maxAge: 1_209_600 });
  world.dns.addRecords('_smtp._tls.good.test', { txt: ['v=TLSRPTv1; rua=mailto:tlsrpt@good.test'] });

  await world.addMx('expired-testing.test', 'mx.expired-testing.test', { cert: 'expired' });
  world.publishPolicy('expired-testing.test', { id: 't1', mode: 'testing', mx: ['mx.expired-testing.test'], maxAge: 1_209_600 });

  // Everything the trace warns about, in one enforce policy.
  await world.addMx('sloppy.test', 'mx.sloppy.test');
  await world.addMx('sloppy.test', 'mx.sloppy.con', { priority: 20 });
  world.publishPolicy('sloppy.test', { id: 's1', mode: 'enforce', mx: ['mx.sloppy.test', 'mx.sloppy.con', '*.co.uk', 'mx.old.sloppy.test'], maxAge: 3600 });
});

afterAll(async () => {
  await world?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  removeBuiltCli();
});

describe.concurrent('output errors (RFC-free plumbing: the process and its streams)', { timeout: 60_000 }, () => {
  it('EPIPE: `mta-sts check … | head -1` ends quietly, exit 0, nothing on stderr', async () => {
    const list = join(tmp, 'many.txt');
    writeFileSync(list, Array.from({ length: 400 }, (_, i) => `d${i}.missing.test`).join('\n'));
    const r = await sh(`"$NODE" "$MAIN" check --json --concurrency 2 --file ${list} ${worldArgs.join(' ')} 2>${tmp}/epipe.err | head -1 >/dev/null; echo "status=\${PIPESTATUS[0]}"; cat ${tmp}/epipe.err`);
    expect(r.stdout).toMatch(/^status=0\n$/);
  });

  it('another output error (> /dev/full): one line on stderr, exit 2', async () => {
    const r = await sh(`"$NODE" "$MAIN" check ${worldArgs.join(' ')} good.test > /dev/full`);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('mta-sts: cannot write the output: ENOSPC\n');
  });
});

describe.concurrent('domain lists', { timeout: 60_000 }, () => {
  for (const device of ['/dev/zero', '/dev/urandom']) {
    it(`--file ${device} is refused once 64 MiB have been read (a device has no size)`, async () => {
      const r = await runMtaSts(['check', '--file', device, ...worldArgs], { timeoutMs: 30_000 });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`mta-sts: error: ${device} is larger than 67108864 bytes`);
      expect(r.stdout).toBe('');
    });
  }

  it('one domain per line: a line with spaces is one invalid entry (with its line), not three domains', async () => {
    const file = join(tmp, 'spaces.txt');
    writeFileSync(file, '# list\nnot a domain\ngood.test\n');
    const r = await runMtaSts(['check', '--json', '--file', file, ...worldArgs]);
    expect(r.code).toBe(1);
    const results = jsonLines<CheckResult>(r.stdout);
    expect(results.map((x) => x.input)).toEqual(['not a domain', 'good.test']);
    expect(results[0]).toMatchObject({ source: `${file}:2`, category: 'broken', problems: [{ code: 'invalid-domain', message: '"not a domain" is not a domain name: one domain per line, without spaces' }] });
  });

  it('an e-mail address gets "did you mean", the same on the command line and in a file', async () => {
    const file = join(tmp, 'emails.txt');
    writeFileSync(file, 'postmaster@good.test\n');
    const [args, list] = await Promise.all([runMtaSts(['check', '--json', ...worldArgs, 'user@good.test']), runMtaSts(['check', '--json', '--file', file, ...worldArgs])]);
    const message = (x: string) => `"${x}" is an e-mail address, not a domain name; did you mean good.test?`;
    expect([args.code, list.code]).toEqual([1, 1]);
    expect(jsonLines<CheckResult>(args.stdout)).toEqual([expect.objectContaining({ input: 'user@good.test', category: 'broken', problems: [{ code: 'invalid-domain', message: message('user@good.test') }] })]);
    expect(jsonLines<CheckResult>(list.stdout)).toEqual([expect.objectContaining({ input: 'postmaster@good.test', category: 'broken', problems: [{ code: 'invalid-domain', message: message('postmaster@good.test') }] })]);
    const human = await runMtaSts(['check', ...worldArgs, 'user@good.test']);
    expect(human.stdout).toContain('did you mean good.test?');
  });
});

describe.concurrent('testing mode: "would fail under enforce"', { timeout: 60_000 }, () => {
  it('a testing domain whose MX fails the probe is its own category in the summary; exit 0 without the flag', async () => {
    const r = await runMtaSts(['check', '--probe', '--file', '-', ...worldArgs], { input: 'good.test\nexpired-testing.test\n' });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^expired-testing\.test +would-fail +MX mx\.expired-testing\.test .*CERT_HAS_EXPIRED/m);
    expect(r.stdout).toMatch(/ {2}testing +0 .*\n {2}would-fail +1 +policy in testing mode; would fail under enforce/);
  });

  it('--testing-as-enforce counts it toward the exit code', async () => {
    const r = await runMtaSts(['check', '--probe', '--json', '--testing-as-enforce', ...worldArgs, 'expired-testing.test']);
    expect(r.code).toBe(1);
    const [result] = jsonLines<CheckResult>(r.stdout);
    expect(result).toMatchObject({ category: 'would-fail', problem: true, problems: [], wouldFailUnderEnforce: [{ code: 'probe-failed', resultType: 'certificate-expired' }] });
  });
});

describe.concurrent('--probe details and trace warnings', { timeout: 60_000 }, () => {
  it('shows the certificate issuer, not-after date, days left, names, the TLS version and cipher', async () => {
    const [human, json] = await Promise.all([runMtaSts(['check', '--probe', ...worldArgs, 'good.test']), runMtaSts(['check', '--probe', '--json', ...worldArgs, 'good.test'])]);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/STARTTLS, TLSv1\.3 TLS_AES_\w+, certificate valid for mx1\.good\.test/);
    expect(human.stdout).toMatch(/certificate: issuer O=mta-sts-sender testing, CN=mta-sts-sender test root CA\n +not after \d{4}-\d\d-\d\dT[\d:.]+Z \(\d+ days left\)\n +names mx1\.good\.test/);
    const cert = jsonLines<CheckResult>(json.stdout)[0]!.mx!.hosts[0]!.probe!.certificate!;
    expect(cert).toMatchObject({ issuer: expect.stringContaining('test root CA'), san: ['mx1.good.test'] });
    expect(cert.daysLeft).toBe(Math.floor((Date.parse(cert.notAfter) - Date.now()) / 86_400_000));
  });

  it('warns about a short max_age, enforce without TLS-RPT, unused and public-suffix patterns, unknown TLDs', async () => {
    const r = await runMtaSts(['check', '--json', ...worldArgs, 'sloppy.test']);
    const [result] = jsonLines<CheckResult>(r.stdout);
    const codes = result!.warnings.map((w) => `${w.code} ${w.message.split(':')[0]}`);
    expect(codes).toEqual(
      expect.arrayContaining([
        'mx-unknown-tld MX mx.sloppy.con',
        'max-age-short max_age 3600 s is below one day',
        'enforce-without-tlsrpt enforce policy but no TLS-RPT record',
        'mx-pattern-unknown-tld mx pattern mx.sloppy.con',
        'mx-pattern-public-suffix mx pattern *.co.uk covers the public suffix co.uk',
        'mx-pattern-unused mx pattern mx.old.sloppy.test matches no current MX host (a stale entry?)',
      ]),
    );
    expect(codes.filter((c) => c.startsWith('mx-pattern-unused'))).toHaveLength(2); // *.co.uk, mx.old.sloppy.test
    // Warnings only: the domain is fine for senders.
    expect(result).toMatchObject({ category: 'enforce', problem: false });
    expect(r.code).toBe(0);
  });

  it('an MX not covered by the policy is named as such', async () => {
    await world.addMx('uncovered.test', 'mx.other.test');
    world.publishPolicy('uncovered.test', { id: 'u1', mode: 'enforce', mx: ['mx.uncovered.test'] });
    const r = await runMtaSts(['check', ...worldArgs, 'uncovered.test']);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('MX mx.other.test is not covered by the enforce policy: it matches no mx pattern, so senders refuse to deliver to it (RFC 8461 §4.1)');
  });
});
