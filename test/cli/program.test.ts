/**
 * The CLI as a function (`runCli` with injected streams): every argument error, help on every command, the
 * progress bar on a terminal, colour decisions, and the batch helpers. Fast: no child processes.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mapOrdered, parseDomainList } from '../../src/cli/batch.js';
import { colorEnabled, type CliIo } from '../../src/cli/io.js';
import { parseDnsServer, runCli } from '../../src/cli/program.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';

interface FakeStream {
  write(chunk: string): boolean;
  isTTY: boolean;
  columns: number;
  text(): string;
}

/** Records writes of both streams in one log, to check their order. */
function fakeIo(options: { stdin?: string; stdoutTTY?: boolean; stderrTTY?: boolean; env?: Record<string, string | undefined> } = {}) {
  const log: Array<['out' | 'err', string]> = [];
  const stream = (name: 'out' | 'err', isTTY: boolean): FakeStream => ({
    write(chunk: string) {
      log.push([name, chunk]);
      return true;
    },
    isTTY,
    columns: 100,
    text: () =>
      log
        .filter(([n]) => n === name)
        .map(([, c]) => c)
        .join(''),
  });
  const stdout = stream('out', options.stdoutTTY ?? false);
  const stderr = stream('err', options.stderrTTY ?? false);
  const io: CliIo = {
    stdout,
    stderr,
    stdin: (async function* () {
      if (options.stdin) yield Buffer.from(options.stdin);
    })(),
    env: options.env ?? {},
    cwd: tmpdir(),
  };
  return { io, stdout, stderr, log };
}

let world: TestWorld;
let tmp: string;
let worldArgs: string[];

beforeAll(async () => {
  world = await createTestWorld();
  tmp = mkdtempSync(join(tmpdir(), 'mta-sts-cli-prog-'));
  writeFileSync(join(tmp, 'ca.pem'), world.ca.rootPem);
  writeFileSync(join(tmp, 'garbage.pem'), 'not a certificate');
  const o = world.mtaStsOptions();
  worldArgs = ['--dns-server', o.dnsServers[0]!, '--ca', join(tmp, 'ca.pem'), '--policy-port', String(o.httpsPort), '--timeout', '3000'];
  for (let i = 0; i < 6; i++) {
    await world.addMx(`d${i}.test`, `mx.d${i}.test`);
    world.publishPolicy(`d${i}.test`, { id: `i${i}`, mode: i % 2 === 0 ? 'enforce' : 'testing', mx: [`mx.d${i}.test`] });
  }
});

afterAll(async () => {
  await world?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('argument errors: a clear message, exit 2, nothing on stdout', () => {
  const cases: Array<[string, string[], RegExp, string?]> = [
    ['no domain', ['check'], /give at least one domain, or --file <path>/],
    ['a non-numeric timeout', ['check', '--timeout', 'soon', 'a.test'], /option '--timeout <ms>' argument 'soon' is invalid\. expected an integer from 1 to 600000\./],
    ['a negative port', ['check', '--port', '-5', 'a.test'], /option '--port <n>' argument '-5' is invalid/],
    ['a port out of range', ['check', '--policy-port', '70000', 'a.test'], /option '--policy-port <n>' argument '70000' is invalid/],
    ['a zero concurrency', ['check', '--concurrency', '0', 'a.test'], /option '--concurrency <n>' argument '0' is invalid/],
    ['a DNS server that is a name', ['check', '--dns-server', 'dns.example', 'a.test'], /expected an IP address, optionally with a port/],
    ['a DNS server with a bad port', ['check', '--dns-server', '192.0.2.53:99999', 'a.test'], /expected an IP address, optionally with a port/],
    ['an option without its value', ['check', 'a.test', '--timeout'], /option '--timeout <ms>' argument missing/],
    ['an unknown option', ['check', '--frobnicate', 'a.test'], /unknown option '--frobnicate'/],
    ['an unknown command', ['frobnicate'], /unknown command 'frobnicate'/],
    ['a missing file', ['check', '--file', '/nonexistent/domains.txt'], /cannot read \/nonexistent\/domains\.txt: ENOENT/],
    ['an empty list on stdin', ['check', '--file', '-'], /no domains in standard input/, '# only a comment\n\n'],
    ['a missing CA file', ['check', '--ca', '/nonexistent/ca.pem', 'a.test'], /cannot read CA file \/nonexistent\/ca\.pem: ENOENT/],
    ['a CA file without a certificate', ['check', '--ca', '__GARBAGE__', 'a.test'], /contains no PEM certificate/],
    ['tlsrpt preview without --db: the default database, missing here', ['tlsrpt', 'preview'], /cannot open TLS-RPT database \/var\/lib\/mta-sts-sender\/tlsrpt\.db: ENOENT/],
    ['tlsrpt send --smtp that is not a URL', ['tlsrpt', 'send', '--db', '__TMP__', '--submitter', 's.test', '--smtp', 'not a url'], /--smtp must be an SMTP URL/],
    ['tlsrpt send --smtp with another scheme', ['tlsrpt', 'send', '--db', '__TMP__', '--submitter', 's.test', '--smtp', 'http://relay.test/'], /--smtp must be an smtp:\/\/ or smtps:\/\/ URL/],
    ['tlsrpt send --from that is not an address', ['tlsrpt', 'send', '--db', '__TMP__', '--submitter', 's.test', '--from', 'nobody'], /--from must be an e-mail address/],
    ['tlsrpt preview with a missing database', ['tlsrpt', 'preview', '--db', '/nonexistent/tlsrpt.db'], /cannot open TLS-RPT database \/nonexistent\/tlsrpt\.db: ENOENT/],
    ['tlsrpt preview with a directory for --db', ['tlsrpt', 'preview', '--db', '__TMP__'], /is not a file \(--db takes the SQLite database of the reporter's store\)/],
    ['tlsrpt preview with a file that is not a TLS-RPT database', ['tlsrpt', 'preview', '--db', '__GARBAGE__'], /cannot open TLS-RPT database .*garbage\.pem: TLS-RPT store .* refused: the file is not an SQLite database/],
    ['tlsrpt send with a bad submitter', ['tlsrpt', 'send', '--db', '__TMP__', '--submitter', 'not a domain'], /--submitter must be a domain name/],
    ['tlsrpt send with half the DKIM options', ['tlsrpt', 'send', '--db', '__TMP__', '--submitter', 's.test', '--dkim-domain', 's.test'], /--dkim-domain, --dkim-selector and --dkim-key go together/],
  ];
  for (const [what, args, message, stdin] of cases) {
    it(what, async () => {
      const { io, stdout, stderr } = fakeIo(stdin === undefined ? {} : { stdin });
      const code = await runCli(
        args.map((a) => (a === '__GARBAGE__' ? join(tmp, 'garbage.pem') : a === '__TMP__' ? tmp : a)),
        io,
      );
      expect(code).toBe(2);
      expect(stderr.text()).toMatch(message);
      expect(stderr.text()).toMatch(/^mta-sts: (error: )?/);
      expect(stdout.text()).toBe('');
    });
  }

  it('no command: the help on stderr, exit 2', async () => {
    const { io, stdout, stderr } = fakeIo();
    expect(await runCli([], io)).toBe(2);
    expect(stderr.text()).toContain('Usage: mta-sts [options] [command]');
    expect(stdout.text()).toBe('');
  });
});

describe('--help on every command: stdout, exit 0', () => {
  for (const args of [['--help'], ['-h'], ['check', '--help'], ['tlsrpt', '--help'], ['tlsrpt', 'preview', '--help'], ['tlsrpt', 'send', '--help'], ['help', 'check'], ['help', 'tlsrpt']]) {
    it(`mta-sts ${args.join(' ')}`, async () => {
      const { io, stdout, stderr } = fakeIo();
      expect(await runCli(args, io)).toBe(0);
      expect(stdout.text()).toMatch(/^Usage: mta-sts/);
      expect(stderr.text()).toBe('');
    });
  }
});

describe('batch mode on a terminal', () => {
  it('draws a progress bar on stderr when it is a terminal; results go to stdout in input order', async () => {
    const { io, stdout, stderr } = fakeIo({ stdin: 'd0.test\nd1.test\nd2.test\nd3.test\nd4.test\nd5.test\n', stderrTTY: true });
    const code = await runCli(['check', '--file', '-', '--concurrency', '3', ...worldArgs], io);
    expect(code).toBe(0);
    expect(stderr.text()).toMatch(/checking .* \d\/6 domains/);
    expect(
      stdout
        .text()
        .split('\n')
        .slice(0, 6)
        .map((l) => l.split(/\s+/)[0]),
    ).toEqual(['d0.test', 'd1.test', 'd2.test', 'd3.test', 'd4.test', 'd5.test']);
    expect(stdout.text()).toMatch(/enforce +3 .*\n {2}testing +3 /);
  });

  it('holds the results back until the bar is gone when both streams are the terminal, and colours them', async () => {
    const { io, log } = fakeIo({ stdin: 'd0.test\nd1.test\nd2.test\n', stderrTTY: true, stdoutTTY: true });
    expect(await runCli(['check', '--file', '-', ...worldArgs], io)).toBe(0);
    const lastErr = log.map(([n]) => n).lastIndexOf('err');
    const firstOut = log.findIndex(([n]) => n === 'out');
    expect(firstOut).toBeGreaterThan(lastErr);
    expect(log.filter(([n]) => n === 'out').map(([, c]) => c).join('')).toMatch(/\x1b\[/);
  });

  it('--no-progress: no bar even on a terminal; NO_COLOR: no colour even on a terminal', async () => {
    const { io, stdout, stderr } = fakeIo({ stdin: 'd0.test\nd1.test\n', stderrTTY: true, stdoutTTY: true, env: { NO_COLOR: '1' } });
    expect(await runCli(['check', '--no-progress', '--file', '-', ...worldArgs], io)).toBe(0);
    expect(stderr.text()).toBe('');
    expect(stdout.text()).not.toMatch(/\x1b\[/);
  });
});

describe('colorEnabled', () => {
  const tty = { write: () => true, isTTY: true };
  const pipe = { write: () => true, isTTY: false };
  it.each([
    ['a terminal', tty, {}, undefined, true],
    ['a pipe', pipe, {}, undefined, false],
    ['NO_COLOR on a terminal', tty, { NO_COLOR: '1' }, undefined, false],
    ['an empty NO_COLOR is ignored', tty, { NO_COLOR: '' }, undefined, true],
    ['--no-color on a terminal', tty, {}, false, false],
    ['FORCE_COLOR on a pipe', pipe, { FORCE_COLOR: '1' }, undefined, true],
    ['FORCE_COLOR=0 on a terminal', tty, { FORCE_COLOR: '0' }, undefined, false],
    ['NO_COLOR wins over FORCE_COLOR', pipe, { NO_COLOR: '1', FORCE_COLOR: '1' }, undefined, false],
    ['TERM=dumb', tty, { TERM: 'dumb' }, undefined, false],
  ] as const)('%s', (_what, stream, env, flag, expected) => {
    expect(colorEnabled(stream, env, flag)).toBe(expected);
  });
});

describe('batch helpers', () => {
  it('parseDomainList: one entry per line (with its line number), comments, blank lines, duplicates', () => {
    expect(parseDomainList('# list\na.test\n\n  b.test  # trailing\r\nnot a domain\nc.test, d.test\nA.TEST.\nb.test\n')).toEqual([
      { input: 'a.test', line: 2 },
      { input: 'b.test', line: 4 },
      { input: 'not a domain', line: 5 },
      { input: 'c.test, d.test', line: 6 },
    ]);
    expect(parseDomainList('')).toEqual([]);
  });

  it('mapOrdered: bounded concurrency, results in input order', async () => {
    let inFlight = 0;
    let peak = 0;
    const order: number[] = [];
    const results = await mapOrdered(
      [30, 5, 20, 1, 10, 2],
      2,
      async (ms, i) => {
        inFlight++;
        peak = Math.max(peak, inFlight);
        await new Promise((r) => setTimeout(r, ms));
        inFlight--;
        return i * 10;
      },
      { onResult: (_r, i) => order.push(i) },
    );
    expect(peak).toBe(2);
    expect(results).toEqual([0, 10, 20, 30, 40, 50]);
    expect(order).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('parseDnsServer accepts ip, ip:port and [ipv6]:port', () => {
    expect(parseDnsServer('192.0.2.53')).toBe('192.0.2.53');
    expect(parseDnsServer('192.0.2.53:5353')).toBe('192.0.2.53:5353');
    expect(parseDnsServer('2001:db8::53')).toBe('2001:db8::53');
    expect(parseDnsServer('[2001:db8::53]:53')).toBe('[2001:db8::53]:53');
    expect(() => parseDnsServer('ns.example')).toThrow(/expected an IP address/);
  });
});

describe('input text is printed escaped (issue 16 item 5)', () => {
  /** A domain list with an ESC sequence, a NUL, invalid UTF-8 bytes, a bidi override and a backslash, plus one good domain. */
  const hostile = Buffer.concat([
    Buffer.from('ev\x1b[31mil.test\n', 'latin1'),
    Buffer.from('nul\x00x.test\n', 'latin1'),
    Buffer.from([0x62, 0x61, 0x64, 0xff, 0xfe, 0xc3, 0x2e, 0x74, 0x65, 0x73, 0x74, 0x0a]), // "bad", 0xff 0xfe 0xc3, ".test"
    Buffer.from('rtl\u202eabc.test\nback\\u001bslash.test\nd0.test\n', 'utf8'),
  ]);
  /** Every byte a terminal would act on or mis-render: C0 controls but LF, DEL, C1 (as UTF-8), U+FFFD, bidi controls. */
  const raw = /[\x00-\x09\x0b-\x1f\x7f\u0080-\u009f\ufffd\u202a-\u202e\u2066-\u2069]/u;

  it('mta-sts check --file: ESC, NUL and invalid UTF-8 of a line appear as \\u escapes in the entry label, never raw', async () => {
    const file = join(tmp, 'hostile-domains.txt');
    writeFileSync(file, hostile);
    const { io, stdout } = fakeIo();
    expect(await runCli(['check', '--no-color', '--file', file, ...worldArgs], io)).toBe(1);
    const out = stdout.text();
    expect(out).not.toMatch(raw);
    const labels = out.split('\n').slice(0, 6).map((line) => line.slice(0, line.search(/ {2,}/)));
    expect(labels).toEqual([
      `${file}:1: ev\\u001b[31mil.test`,
      `${file}:2: nul\\u0000x.test`,
      `${file}:3: bad\\ufffd\\ufffd\\ufffd.test`,
      `${file}:4: rtl\\u202eabc.test`,
      `${file}:5: back\\\\u001bslash.test`,
      'd0.test',
    ]);
  });

  it('mta-sts check <domain>: the heading of the full trace is escaped too', async () => {
    const { io, stdout } = fakeIo();
    expect(await runCli(['check', '--no-color', 'ev\x1b]0;title\x07il.test', ...worldArgs], io)).toBe(1);
    expect(stdout.text()).not.toMatch(raw);
    expect(stdout.text().split('\n')[0]).toBe('ev\\u001b]0;title\\u0007il.test  broken');
  });
});
