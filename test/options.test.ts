/**
 * Option validation at creation (one validator for every factory): a misconfiguration throws one
 * `MTASTS_INVALID_OPTIONS` error that names the option, the value and what was expected, instead of turning into
 * failed fetches (and unprotected `enforce` domains) or bounced mail later.
 */
import { rootCertificates } from 'node:tls';
import { Agent } from 'undici';
import { describe, expect, it } from 'vitest';
import { createMtaSts } from '../src/engine.js';
import { MtaStsError } from '../src/errors.js';
import { checkOptions, describeValue, num, suggest } from '../src/options.js';
import { createTlsRptReporter } from '../src/tlsrpt/scheduler.js';

/** The error a call throws; fails the test when it does not throw. */
function thrown(fn: () => unknown): MtaStsError {
  try {
    fn();
  } catch (error) {
    return error as MtaStsError;
  }
  throw new Error('expected a throw');
}

const PEM = rootCertificates[0]!;
const resolver = { resolveTxt: async () => [], resolveMx: async () => [], resolve4: async () => [], resolve6: async () => [] };

describe('createMtaSts() validates every option at creation', () => {
  const cases: Array<[string, Record<string, unknown>, string, RegExp]> = [
    ['ca: 42', { ca: 42 }, 'ca', /must be PEM certificate text.*got 42/],
    ['ca: [null]', { ca: [null] }, 'ca', /must be PEM certificate text.*got \[null\].*element 0: null/],
    ['ca: "not a pem"', { ca: 'not a pem' }, 'ca', /no PEM certificate found/],
    ['ca: a file path', { ca: '/path/to/ca.pem' }, 'ca', /looks like a file path, where the certificate's PEM text is expected: read the file/],
    ['now: "x"', { now: 'x' }, 'now', /option now must be a function returning epoch ms, got "x"/],
    ['dispatcher: {}', { dispatcher: {} }, 'dispatcher', /option dispatcher must be an undici Dispatcher.*got \{\}.*missing dispatch\(\)/],
    ['maxMxHosts: 1.5', { maxMxHosts: 1.5 }, 'maxMxHosts', /option maxMxHosts must be an integer from 1 to 1000, got 1.5/],
    ['dnsServers: a string', { dnsServers: '127.0.0.1' }, 'dnsServers', /must be an array of DNS server addresses.*wrap it in an array: \["127.0.0.1"\]/],
    ['dnsServers: a host name', { dnsServers: ['dns.example'] }, 'dnsServers', /"dns.example" is not an IP address/],
    ['a resolver without resolve4/resolve6', { resolver: { resolveTxt: resolver.resolveTxt, resolveMx: resolver.resolveMx } }, 'resolver', /missing resolve4\(\), resolve6\(\)/],
    ['unknown key dnsServer', { dnsServer: ['127.0.0.1'] }, 'dnsServer', /unknown option dnsServer \(did you mean dnsServers\?\)/],
    ['unknown key timeout', { timeout: 5000 }, 'timeout', /unknown option timeout \(did you mean dnsTimeoutMs, fetchTimeoutMs or storeTimeoutMs\?\)/],
    ['fetchTimeoutMs: NaN', { fetchTimeoutMs: Number.NaN }, 'fetchTimeoutMs', /from 1 to 600000 \(ms\), got NaN/],
    ['store without set', { store: { get: () => undefined } }, 'store', /missing set\(\), delete\(\)/],
    ['logger: "console"', { logger: 'console' }, 'logger', /must be a logger/],
    ['requireTlsEverywhere: "yes"', { requireTlsEverywhere: 'yes' }, 'requireTlsEverywhere', /must be true or false/],
  ];
  for (const [title, options, option, message] of cases) {
    it(`refuses ${title}`, () => {
      const error = thrown(() => createMtaSts(options as never));
      expect(error).toBeInstanceOf(MtaStsError);
      expect(error.code).toBe('MTASTS_INVALID_OPTIONS');
      expect(error.details.option).toBe(option);
      expect(error.message).toMatch(/^createMtaSts\(\): /);
      expect(error.message).toMatch(message);
    });
  }

  it('reports every problem of one call in one error', () => {
    const error = thrown(() => createMtaSts({ ca: 42, dnsServer: ['127.0.0.1'], maxMxHosts: 0 } as never));
    expect(error.details.problems).toBe(3);
    expect(error.message).toMatch(/3 invalid options: option ca .*; unknown option dnsServer .*; option maxMxHosts/);
  });

  it('accepts what the documentation allows', async () => {
    const agent = new Agent();
    const ok = [
      {},
      { ca: PEM },
      { ca: Buffer.from(PEM) },
      { ca: [PEM, Buffer.from(PEM)] },
      { dnsServers: ['127.0.0.1', '127.0.0.1:5353', '::1', '[::1]:53'] },
      { resolver, dispatcher: agent, now: () => 0, logger: console, maxMxHosts: 3, refreshAfterFraction: 0.5, httpsPort: 8443 },
      { ca: undefined, logger: undefined },
    ];
    for (const options of ok) await createMtaSts(options).close();
    await agent.close();
  });
});

describe('createTlsRptReporter() validates through the same path', () => {
  const base = { organizationName: 'Org', contactInfo: 'tlsrpt@sender.test', submitter: 'sender.test' };

  it('a missing required option is MTASTS_INVALID_OPTIONS, not a TypeError', () => {
    const error = thrown(() => createTlsRptReporter({ organizationName: 'Org', contactInfo: 'x@y.test' } as never));
    expect(error).toBeInstanceOf(MtaStsError);
    expect(error).toMatchObject({ code: 'MTASTS_INVALID_OPTIONS', details: { option: 'submitter' } });
    expect(error.message).toMatch(/option submitter must be a domain name \(required\)/);
  });

  it('refuses bad values, nested ones included, and unknown keys with a suggestion', () => {
    expect(thrown(() => createTlsRptReporter({ ...base, ca: 'ca.pem' }))).toMatchObject({ code: 'MTASTS_INVALID_OPTIONS', details: { option: 'ca' } });
    expect(thrown(() => createTlsRptReporter({ ...base, retry: { attempts: 0 } }))).toMatchObject({ code: 'MTASTS_INVALID_OPTIONS', details: { option: 'retry.attempts' } });
    expect(thrown(() => createTlsRptReporter({ ...base, limits: { maxDomainsPerDay: Number.NaN } }))).toMatchObject({ details: { option: 'limits.maxDomainsPerDay' } });
    expect(thrown(() => createTlsRptReporter({ ...base, retry: { attempt: 3 } } as never)).message).toMatch(/unknown option retry.attempt \(did you mean retry.attempts\?\)/);
    expect(thrown(() => createTlsRptReporter({ ...base, storePath: '/tmp/x.db' } as never)).message).toMatch(/unknown option storePath \(did you mean store\?\)/);
    expect(thrown(() => createTlsRptReporter({ ...base, store: 42 } as never)).message).toMatch(/option store must be a TLS-RPT store, or the path of its SQLite database file, got 42/);
    expect(thrown(() => createTlsRptReporter({ ...base, mailTransport: 42 } as never)).details.option).toBe('mailTransport');
  });
});

describe('options named once: the test-only HTTPS port is httpsPort everywhere', () => {
  const base = { organizationName: 'Org', contactInfo: 'tlsrpt@sender.test', submitter: 'sender.test' };

  it('the engine and the reporter take httpsPort (like the CLI\'s --https-port) and refuse the old names', async () => {
    await createMtaSts({ httpsPort: 8443, refreshIntervalMs: 0 }).close();
    const reporter = createTlsRptReporter({ ...base, httpsPort: 8443 });
    await reporter.close();
    expect(thrown(() => createMtaSts({ policyPort: 8443 } as never))).toMatchObject({ code: 'MTASTS_INVALID_OPTIONS', details: { option: 'policyPort' } });
    expect(thrown(() => createTlsRptReporter({ ...base, httpsPortOverride: 8443 } as never))).toMatchObject({ code: 'MTASTS_INVALID_OPTIONS', details: { option: 'httpsPortOverride' } });
    expect(thrown(() => createMtaSts({ httpsPort: 0 }))).toMatchObject({ code: 'MTASTS_INVALID_OPTIONS', details: { option: 'httpsPort' } });
  });
});

describe('the generic validator', () => {
  it('suggests close names (case, typos, transpositions, substrings) and nothing for unrelated ones', () => {
    const known = ['dnsServers', 'dnsTimeoutMs', 'fetchTimeoutMs', 'maxMxHosts', 'ca'];
    expect(suggest('dnsserver', known)).toEqual(['dnsServers']);
    expect(suggest('maxMXHost', known)).toEqual(['maxMxHosts']);
    expect(suggest('dnsTiemoutMs', known)).toEqual(['dnsTimeoutMs']);
    expect(suggest('timeout', known)).toEqual(['dnsTimeoutMs', 'fetchTimeoutMs']);
    expect(suggest('colour', known)).toEqual([]);
  });

  it('describes values without dumping them (credentials hidden, objects by keys)', () => {
    expect(describeValue('smtp://user:secret@mail.example')).toBe('"smtp://***@mail.example"');
    expect(describeValue({ user: 'u', pass: 'secret' })).toBe('an object with keys user, pass');
    expect(describeValue(Number.NaN)).toBe('NaN');
    expect(describeValue('x'.repeat(200))).toHaveLength(82);
  });

  it('a non-object options argument is one problem, not a crash', () => {
    expect(checkOptions('f()', 'x', { a: num(0, 1) })).toEqual([{ option: 'options', value: '"x"', expected: 'an object of options' }]);
    expect(thrown(() => createMtaSts(null as never))).toMatchObject({ code: 'MTASTS_INVALID_OPTIONS', details: { option: 'options' } });
  });
});
