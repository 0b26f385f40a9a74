/** `config/mta-sts.ini`: strict parsing (a typo must never quietly weaken MTA-STS). */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseHarakaConfig } from '../../src/integrations/haraka/config.js';
import { MtaStsError } from '../../src/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'mta-sts-ini-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function rejects(lines: string[], message: RegExp) {
  let error: unknown;
  try {
    parseHarakaConfig(lines);
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(MtaStsError);
  expect((error as { code: string }).code).toBe('MTASTS_INVALID_OPTIONS');
  expect((error as Error).message).toMatch(message);
}

describe('mta-sts.ini', () => {
  it('an absent or empty file gives every default', () => {
    expect(parseHarakaConfig([])).toEqual({ logLevel: 'info', lookupTimeoutMs: 20_000, starttlsTimeoutMs: 5_000, engine: {} });
    expect(parseHarakaConfig(['; comment', '', '# another', '[main]'])).toEqual({ logLevel: 'info', lookupTimeoutMs: 20_000, starttlsTimeoutMs: 5_000, engine: {} });
  });

  it('reads engine options, log level and TLS-RPT settings', () => {
    const ca = join(dir, 'ca.pem');
    writeFileSync(ca, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    const key = join(dir, 'dkim.key');
    writeFileSync(key, 'KEY');
    const config = parseHarakaConfig([
      '[main]',
      'loglevel = WARN',
      'lookup_timeout_ms=5000 ; inline comment',
      'starttls_timeout_ms=1500',
      '[engine]',
      'dns_servers=127.0.0.1:53, 192.0.2.1',
      'dns_timeout_ms=2000',
      'system_roots=false',
      `ca_file=${ca}`,
      'policy_db=/var/lib/haraka/mta-sts-policies.db ; SQLite',
      '[tlsrpt]',
      'enabled=yes',
      'organization_name=Example Inc.',
      'contact_info=tlsrpt@example.com',
      'submitter=mta.example.com',
      'db=/var/lib/haraka/tlsrpt.db',
      'mail_host=relay.example.com',
      'mail_port=587',
      'dkim_domain=example.com',
      'dkim_selector=s1',
      `dkim_private_key_file=${key}`,
    ]);
    expect(config).toMatchObject({
      logLevel: 'warn',
      lookupTimeoutMs: 5000,
      starttlsTimeoutMs: 1500,
      engine: { dnsServers: ['127.0.0.1:53', '192.0.2.1'], dnsTimeoutMs: 2000, systemRoots: false, policyDb: '/var/lib/haraka/mta-sts-policies.db' },
      tlsrpt: { organizationName: 'Example Inc.', submitter: 'mta.example.com', db: '/var/lib/haraka/tlsrpt.db', mailHost: 'relay.example.com', mailPort: 587, dkim: { domainName: 'example.com', keySelector: 's1', privateKey: 'KEY' } },
    });
    expect(config.engine.ca).toContain('BEGIN CERTIFICATE');
  });

  it('rejects unknown sections and keys, naming the line', () => {
    rejects(['[engine]', 'dns_timout_ms=10'], /line 2: unknown key \[engine\] dns_timout_ms/);
    rejects(['[policy]'], /unknown section \[policy\]/);
    rejects(['enforce=false'], /unknown key \[main\] enforce/);
    // The file spool is gone (0.1.0): its key is refused, not ignored.
    rejects(['[tlsrpt]', 'spool_dir=/var/spool/haraka-tlsrpt'], /unknown key \[tlsrpt\] spool_dir/);
  });

  it('rejects bad values instead of guessing', () => {
    rejects(['[engine]', 'system_roots=ture'], /system_roots must be true or false/);
    rejects(['[engine]', 'dns_timeout_ms=10s'], /dns_timeout_ms must be a whole number/);
    rejects(['[engine]', 'dns_timeout_ms=0'], /from 1 to 600000/);
    rejects(['[main]', 'starttls_timeout_ms=0'], /starttls_timeout_ms must be a whole number from 1 to 600000/);
    rejects(['[main]', 'loglevel=verbose'], /loglevel must be one of/);
    rejects(['[engine]', 'ca_file=/nonexistent/ca.pem'], /cannot read/);
    rejects(['[engine]', 'system_roots=false'], /needs ca_file/);
    rejects(['just some words'], /expected key=value/);
    rejects(['[main]', 'loglevel=info', 'loglevel=debug'], /set twice/);
  });

  it('rejects an enabled [tlsrpt] without its required fields', () => {
    rejects(['[tlsrpt]', 'enabled=true', 'organization_name=X'], /contact_info is required/);
    rejects(['[tlsrpt]', 'enabled=true', 'organization_name=X', 'contact_info=a@b.c', 'submitter=b.c', 'dkim_domain=b.c'], /go together/);
  });
});
