/**
 * `mta-sts world` as a process: it starts the loopback world, prints options that work, and stops cleanly on
 * SIGTERM. Also what docs/cli.md promises about the CLI (the world snippet, the store option, option names).
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CheckResult } from '../../src/cli/check.js';
import type { WorldInfo } from '../../src/cli/world.js';
import { buildCli, jsonLines, REPO_ROOT, removeBuiltCli, runMtaSts } from './helpers.js';

let main: string;

beforeAll(async () => {
  main = await buildCli();
});

afterAll(() => {
  removeBuiltCli();
});

/** The CLI's documentation (docs/cli.md); the README's CLI section links to it. */
function cliDoc(): string {
  return readFileSync(join(REPO_ROOT, 'docs/cli.md'), 'utf8');
}

describe('mta-sts world', { timeout: 60_000 }, () => {
  it('prints --dns-server, --ca, --https-port and --smtp-port that point check at its example domains; SIGTERM stops it', async () => {
    const child = spawn(process.execPath, [main, 'world', '--json'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      const first = await new Promise<string>((resolve, reject) => {
        createInterface({ input: child.stdout }).once('line', resolve);
        child.once('close', () => reject(new Error(`world exited early: ${stderr}`)));
      });
      const info = JSON.parse(first) as WorldInfo;
      expect(info.args).toEqual(['--dns-server', info.dnsServer, '--ca', info.caFile, '--https-port', String(info.httpsPort), '--smtp-port', String(info.smtpPort)]);
      expect(readFileSync(info.caFile, 'utf8')).toContain('-----BEGIN CERTIFICATE-----');
      const r = await runMtaSts(['check', '--probe', '--json', ...info.args, ...info.domains.map((d) => d.domain)]);
      const byDomain = Object.fromEntries(jsonLines<CheckResult>(r.stdout).map((x) => [x.domain, x.category]));
      expect(byDomain).toEqual({
        'good.example': 'enforce',
        'nopolicy.example': 'none',
        'expired-testing.example': 'would-fail',
        'wrongcert.example': 'broken',
        'nostarttls.example': 'broken',
        'unlisted.example': 'broken',
        'fetch404.example': 'broken',
        'badtxt.example': 'broken',
        'sloppy.example': 'enforce',
      });
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      // Its temporary CA file went with it.
      expect(existsSync(info.caFile)).toBe(false);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('the text output names the options and the library names (smtpPort, httpsPort)', async () => {
    const child = spawn(process.execPath, [main, 'world'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    let out = '';
    await new Promise<void>((resolve) => {
      child.stdout.setEncoding('utf8').on('data', (s: string) => {
        out += s;
        if (out.includes('\nTry\n')) resolve();
      });
    });
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(out).toMatch(/--dns-server 127\.0\.0\.1:\d+/);
    expect(out).toMatch(/--https-port \d+ +\(policy hosts, report endpoints; library: httpsPort\)/);
    expect(out).toMatch(/--smtp-port \d+ +\(MX hosts, for --probe; library: smtpPort\)/);
  });
});

describe('docs/cli.md and --help agree', { timeout: 30_000 }, () => {
  it('tlsrpt preview|send take the database: --db, default /var/lib/mta-sts-sender/tlsrpt.db', async () => {
    const [preview, send] = await Promise.all([runMtaSts(['tlsrpt', 'preview', '--help']), runMtaSts(['tlsrpt', 'send', '--help'])]);
    for (const r of [preview, send]) {
      expect(r.stdout).toMatch(/--db <file> +the TLS-RPT database \(SQLite file of\s+createSqliteTlsRptStore\)\s+\(default:\s+"\/var\/lib\/mta-sts-sender\/tlsrpt\.db"\)/);
      expect(r.stdout).not.toContain('--spool');
    }
  });

  it('docs/cli.md names the store option of tlsrpt --help, and its default when it has one', async () => {
    const [preview, send] = await Promise.all([runMtaSts(['tlsrpt', 'preview', '--help']), runMtaSts(['tlsrpt', 'send', '--help'])]);
    const doc = cliDoc();
    for (const r of [preview, send]) {
      const flag = /--(?:db|spool) </.exec(r.stdout)?.[0].slice(0, -2);
      expect(flag).toBeDefined();
      expect(doc).toContain(`${flag} `);
      const fallback = /\(default:\s+"([^"]+)"\)/.exec(r.stdout)?.[1];
      if (fallback !== undefined) expect(doc).toContain(fallback);
    }
  });

  it('docs/cli.md shows how to run against the world from the docs alone: mta-sts world, its options, smtpPort', () => {
    const section = cliDoc();
    expect(section).toContain('mta-sts world');
    for (const option of ['--dns-server', '--ca', '--https-port', '--smtp-port']) expect(section).toContain(option);
    expect(section).toContain('smtpPort');
  });

  it('one option name per concept: --https-port and --smtp-port on check, --https-port on tlsrpt send', async () => {
    const [check, send] = await Promise.all([runMtaSts(['check', '--help']), runMtaSts(['tlsrpt', 'send', '--help'])]);
    expect(check.stdout).toMatch(/--https-port <n>/);
    expect(check.stdout).toMatch(/--smtp-port <n>/);
    expect(send.stdout).toMatch(/--https-port <n>/);
    // The old names still work, but are not offered.
    for (const r of [check, send]) expect(r.stdout).not.toMatch(/--policy-port|--port </);
  });

  it('no internal requirement ids in what the CLI prints: RFC sections only', async () => {
    const helps = await Promise.all([['--help'], ['check', '--help'], ['tlsrpt', 'send', '--help'], ['tlsrpt', 'preview', '--help'], ['world', '--help']].map((a) => runMtaSts(a)));
    const sources = ['check.ts', 'check-rules.ts', 'check-probe.ts', 'format.ts', 'program.ts', 'tlsrpt.ts', 'world.ts'].map((f) => readFileSync(join(REPO_ROOT, 'src/cli', f), 'utf8'));
    for (const text of [...helps.map((r) => r.stdout), ...sources]) {
      expect(text).not.toMatch(/\b(?:checklist|[A-G]\d{1,2}\))|, [A-G]\d{1,2}\b|\([A-G]\d{1,2}\)/);
    }
  });
});
