import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createDefaultResolver, type DnsResolver } from '../../src/discovery/resolver.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';
import { isTlsRptRecordCandidate, lookupTlsRptRecord, parseTlsRptRecord, selectTlsRptRecord } from '../../src/tlsrpt/discovery.js';
import { TlsRptError, type TlsRptErrorCode } from '../../src/tlsrpt/errors.js';

function codeOf(fn: () => unknown): TlsRptErrorCode | 'none' {
  try {
    fn();
    return 'none';
  } catch (error) {
    expect(error).toBeInstanceOf(TlsRptError);
    return (error as TlsRptError).code;
  }
}

describe('parseTlsRptRecord', () => {
  it('§3 parses a mailto record', () => {
    expect(parseTlsRptRecord('v=TLSRPTv1; rua=mailto:reports@example.com')).toEqual({
      version: 'TLSRPTv1',
      rua: [{ kind: 'mailto', uri: 'mailto:reports@example.com', address: 'reports@example.com' }],
      ignored: [],
      extensions: {},
      raw: 'v=TLSRPTv1; rua=mailto:reports@example.com',
    });
  });

  it('§3 parses an https record and several comma-separated URIs with optional spaces', () => {
    const record = parseTlsRptRecord('v=TLSRPTv1;rua=https://reporting.example.com/v1/tlsrpt , mailto:tlsrpt@example.net;');
    expect(record.rua).toEqual([
      { kind: 'https', uri: 'https://reporting.example.com/v1/tlsrpt', url: 'https://reporting.example.com/v1/tlsrpt' },
      { kind: 'mailto', uri: 'mailto:tlsrpt@example.net', address: 'tlsrpt@example.net' },
    ]);
  });

  // The table of the brief: valid, wrong version, multiple, no rua, bad scheme, multi-string.
  const table: Array<[string, string, TlsRptErrorCode | 'none', number?]> = [
    ['valid, trailing delimiter and spaces', 'v=TLSRPTv1 ; rua=mailto:a@example.com ;  ', 'none', 1],
    ['valid, unknown extension ignored', 'v=TLSRPTv1; ext.1=value-x; rua=mailto:a@example.com', 'none', 1],
    ['wrong version', 'v=TLSRPTv2; rua=mailto:a@example.com', 'TLSRPT_RECORD_INVALID'],
    ['version is case-sensitive (%s)', 'v=tlsrptv1; rua=mailto:a@example.com', 'TLSRPT_RECORD_INVALID'],
    ['version must be first', 'rua=mailto:a@example.com; v=TLSRPTv1', 'TLSRPT_RECORD_INVALID'],
    ['version followed by junk', 'v=TLSRPTv10; rua=mailto:a@example.com', 'TLSRPT_RECORD_INVALID'],
    ['no fields', 'v=TLSRPTv1', 'TLSRPT_RECORD_INVALID'],
    ['no rua', 'v=TLSRPTv1; ruf=mailto:a@example.com', 'TLSRPT_RECORD_INVALID'],
    ['rua name is case-sensitive', 'v=TLSRPTv1; RUA=mailto:a@example.com', 'TLSRPT_RECORD_INVALID'],
    ['two rua fields', 'v=TLSRPTv1; rua=mailto:a@example.com; rua=mailto:b@example.com', 'TLSRPT_RECORD_INVALID'],
    ['empty rua', 'v=TLSRPTv1; rua=', 'TLSRPT_RECORD_INVALID'],
    ['bad scheme only', 'v=TLSRPTv1; rua=http://example.com/report', 'TLSRPT_RECORD_INVALID'],
    ['bad scheme kept out, good one kept', 'v=TLSRPTv1; rua=ftp://example.com/x,https://r.example.com/x', 'none', 1],
    ['empty field in the middle', 'v=TLSRPTv1;; rua=mailto:a@example.com', 'TLSRPT_RECORD_INVALID'],
    ['malformed field', 'v=TLSRPTv1; rua mailto:a@example.com', 'TLSRPT_RECORD_INVALID'],
    ['extension value with a space', 'v=TLSRPTv1; rua=mailto:a@example.com; x=a b', 'TLSRPT_RECORD_INVALID'],
    ['extension value with "="', 'v=TLSRPTv1; rua=mailto:a@example.com; x=a=b', 'TLSRPT_RECORD_INVALID'],
    ['extension name too long', `v=TLSRPTv1; rua=mailto:a@example.com; ${'x'.repeat(33)}=1`, 'TLSRPT_RECORD_INVALID'],
    ['leading space before version', ' v=TLSRPTv1; rua=mailto:a@example.com', 'TLSRPT_RECORD_INVALID'],
    ['mailto without @', 'v=TLSRPTv1; rua=mailto:postmaster', 'TLSRPT_RECORD_INVALID'],
    ['unencoded "!" in a URI', 'v=TLSRPTv1; rua=mailto:a!b@example.com', 'TLSRPT_RECORD_INVALID'],
    ['bad percent-encoding', 'v=TLSRPTv1; rua=mailto:a%zz@example.com', 'TLSRPT_RECORD_INVALID'],
    ['https without host', 'v=TLSRPTv1; rua=https:///x', 'TLSRPT_RECORD_INVALID'],
  ];
  for (const [name, txt, code, destinations] of table) {
    it(`§3 ${name}: ${code === 'none' ? 'accepted' : code}`, () => {
      expect(codeOf(() => parseTlsRptRecord(txt))).toBe(code);
      if (destinations !== undefined) expect(parseTlsRptRecord(txt).rua).toHaveLength(destinations);
    });
  }

  it('§3 other schemes are listed as ignored while valid ones are kept', () => {
    const record = parseTlsRptRecord('v=TLSRPTv1; rua=http://a.example/x,mailto:r@example.com,,https://b.example/y');
    expect(record.rua.map((d) => d.uri)).toEqual(['mailto:r@example.com', 'https://b.example/y']);
    expect(record.ignored).toEqual([
      { uri: 'http://a.example/x', reason: 'unsupported scheme http' },
      { uri: '', reason: 'empty URI' },
    ]);
  });

  it('§3 URIs are percent-decoded: mailto addresses decoded, encoded commas separate addresses', () => {
    const record = parseTlsRptRecord('v=TLSRPTv1; rua=mailto:tls%2Breports%21x@Example.COM?subject=x,MAILTO:a@example.com%2Cb@example.org');
    expect(record.rua).toEqual([
      { kind: 'mailto', uri: 'mailto:tls%2Breports%21x@Example.COM?subject=x', address: 'tls+reports!x@example.com' },
      { kind: 'mailto', uri: 'MAILTO:a@example.com%2Cb@example.org', address: 'a@example.com' },
      { kind: 'mailto', uri: 'MAILTO:a@example.com%2Cb@example.org', address: 'b@example.org' },
    ]);
    // https URLs stay encoded (decoding would change the URL)
    expect(parseTlsRptRecord('v=TLSRPTv1; rua=https://r.example/a%2Cb?x=1%21').rua[0]).toMatchObject({ url: 'https://r.example/a%2Cb?x=1%21' });
  });

  it('§3 unknown fields are ignored and exposed', () => {
    expect(parseTlsRptRecord('v=TLSRPTv1; rua=mailto:a@example.com; future_1=yes').extensions).toEqual({ future_1: 'yes' });
  });

  it('property: never throws anything but TlsRptError, and accepted records have destinations', () => {
    // Structured records (mostly near-valid) and free-form junk.
    const uri = fc.oneof(
      fc.constantFrom('mailto:a@example.com', 'https://r.example/x', 'MAILTO:b%2Cc@example.org', 'http://x.example', 'mailto:', 'https://', '%zz', 'mailto:a!b@c.d', ''),
      fc.string({ maxLength: 10 }).map((x) => `mailto:${x}@example.com`),
      fc.string({ maxLength: 10 }).map((x) => `https://${x}`),
    );
    const field = fc.oneof(
      { arbitrary: fc.tuple(fc.array(uri, { minLength: 1, maxLength: 4 }), fc.constantFrom(',', ' , ', ',,')).map(([uris, sep]) => `rua=${uris.join(sep)}`), weight: 4 },
      { arbitrary: fc.tuple(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 })).map(([k, v]) => `${k}=${v}`), weight: 1 },
      { arbitrary: fc.string({ maxLength: 8 }), weight: 1 },
    );
    const structured = fc
      .tuple(fc.constantFrom('v=TLSRPTv1', 'v=TLSRPTv1 ', 'v=TLSRPTv2', 'V=TLSRPTv1', ''), fc.array(field, { maxLength: 4 }), fc.constantFrom(';', '; ', ' ;', ';;'), fc.constantFrom('', ';', ' '))
      .map(([version, fields, sep, tail]) => [version, ...fields].join(sep) + tail);
    const junk = fc.string({ unit: 'binary', maxLength: 40 });
    let accepted = 0;
    fc.assert(
      fc.property(fc.oneof(structured, structured, junk), (txt) => {
        try {
          const record = parseTlsRptRecord(txt);
          accepted++;
          return record.rua.length > 0 && txt.startsWith('v=TLSRPTv1') && record.rua.every((d) => (d.kind === 'mailto' ? d.address.includes('@') : d.url.startsWith('https://')));
        } catch (error) {
          return error instanceof TlsRptError && error.code === 'TLSRPT_RECORD_INVALID';
        }
      }),
      // A fixed seed keeps the coverage check below deterministic (the generator reaches valid records).
      { numRuns: 600, seed: 8461 },
    );
    expect(accepted).toBeGreaterThan(5);
  });
});

describe('selectTlsRptRecord', () => {
  it('§3 multi-string TXT records are concatenated without spaces', () => {
    const record = selectTlsRptRecord([['v=TLSRPTv1; rua=mailto:re', 'ports@exam', 'ple.com']]);
    expect(record?.rua).toEqual([{ kind: 'mailto', uri: 'mailto:reports@example.com', address: 'reports@example.com' }]);
  });
  it('§3 records not beginning with v=TLSRPTv1 are discarded', () => {
    expect(selectTlsRptRecord(['v=spf1 -all', 'hello', 'v=TLSRPTv1; rua=mailto:a@example.com'])?.rua).toHaveLength(1);
    expect(selectTlsRptRecord(['v=spf1 -all', 'v=TLSRPTv2; rua=mailto:a@example.com'])).toBeUndefined();
    expect(isTlsRptRecordCandidate('v=TLSRPTv1 ;rua=x')).toBe(true);
    expect(isTlsRptRecordCandidate('v=TLSRPTv1x')).toBe(false);
  });
  it('§3 more than one TLSRPT record: the domain does not implement TLSRPT', () => {
    expect(codeOf(() => selectTlsRptRecord(['v=TLSRPTv1; rua=mailto:a@example.com', 'v=TLSRPTv1; rua=mailto:b@example.com']))).toBe('TLSRPT_RECORD_MULTIPLE');
  });
});

describe('lookupTlsRptRecord through the test world DNS server', () => {
  let world: TestWorld;
  let resolver: DnsResolver;
  beforeAll(async () => {
    world = await createTestWorld();
    resolver = createDefaultResolver({ dnsServers: world.dns.servers, timeoutMs: 500, tries: 1 });
    world.dns.setRecords('_smtp._tls.good.test', { txt: ['v=TLSRPTv1; rua=mailto:tlsrpt@good.test,https://tlsrpt.good.test/v1'] });
    world.dns.setRecords('_smtp._tls.split.test', { txt: [['v=TLSRPTv1; rua=mai', 'lto:tls', 'rpt@split.test']] });
    world.dns.setRecords('_smtp._tls.two.test', { txt: ['v=TLSRPTv1; rua=mailto:a@two.test', 'v=TLSRPTv1; rua=mailto:b@two.test'] });
    world.dns.setRecords('_smtp._tls.other.test', { txt: ['v=spf1 -all', 'some-verification=abc'] });
    world.dns.setRecords('_smtp._tls.bad.test', { txt: ['v=TLSRPTv1; rua=ftp://bad.test/'] });
    world.dns.setRecords('_smtp._tls.broken.test', { txt: ['v=TLSRPTv1; rua=mailto:x@broken.test'] });
    world.dns.fail('_smtp._tls.broken.test', 'servfail');
    world.dns.setRecords('nodata.test', { a: ['127.0.0.1'] });
    world.dns.setRecords('_smtp._tls.slow.test', { txt: ['v=TLSRPTv1; rua=mailto:x@slow.test'] });
    world.dns.fail('_smtp._tls.slow.test', 'timeout');
  });
  afterAll(async () => {
    await world.close();
  });

  it('§3 queries TXT _smtp._tls.<domain> and parses the record', async () => {
    world.dns.clearQueryLog();
    const record = await lookupTlsRptRecord('Good.Test.', { resolver });
    expect(record?.rua.map((d) => d.uri)).toEqual(['mailto:tlsrpt@good.test', 'https://tlsrpt.good.test/v1']);
    expect(world.dns.queries).toContainEqual(expect.objectContaining({ name: '_smtp._tls.good.test', type: 'TXT' }));
  });

  it('§3 a record split into character-strings on the wire is concatenated', async () => {
    expect((await lookupTlsRptRecord('split.test', { resolver }))?.rua).toEqual([{ kind: 'mailto', uri: 'mailto:tlsrpt@split.test', address: 'tlsrpt@split.test' }]);
  });

  it('§3 NXDOMAIN and NODATA mean no record', async () => {
    await expect(lookupTlsRptRecord('missing.test', { resolver })).resolves.toBeUndefined();
    await expect(lookupTlsRptRecord('nodata.test', { resolver })).resolves.toBeUndefined();
    await expect(lookupTlsRptRecord('other.test', { resolver })).resolves.toBeUndefined();
  });

  it('§3 two TLSRPT records: TLSRPT_RECORD_MULTIPLE; no supported scheme: TLSRPT_RECORD_INVALID', async () => {
    await expect(lookupTlsRptRecord('two.test', { resolver })).rejects.toMatchObject({ code: 'TLSRPT_RECORD_MULTIPLE', temporary: false, domain: 'two.test' });
    await expect(lookupTlsRptRecord('bad.test', { resolver })).rejects.toMatchObject({ code: 'TLSRPT_RECORD_INVALID', temporary: false });
  });

  it('SERVFAIL and timeouts are temporary, never "no record"', async () => {
    await expect(lookupTlsRptRecord('broken.test', { resolver })).rejects.toMatchObject({ code: 'TLSRPT_DNS_TEMPORARY', temporary: true });
    await expect(lookupTlsRptRecord('slow.test', { resolver, timeoutMs: 300 })).rejects.toMatchObject({ code: 'TLSRPT_DNS_TEMPORARY', temporary: true });
  });

  it('rejects an invalid domain and honours an aborted signal', async () => {
    await expect(lookupTlsRptRecord('not a domain', { resolver })).rejects.toMatchObject({ code: 'TLSRPT_INVALID_DOMAIN' });
    await expect(lookupTlsRptRecord('good.test', { resolver, signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'TLSRPT_ABORTED' });
  });
});
