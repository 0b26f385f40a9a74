import { describe, expect, it } from 'vitest';
import { gunzipSync } from 'node:zlib';
import { TlsRptError } from '../../src/tlsrpt/errors.js';
import {
  buildTlsRptReport,
  formatRfc3339,
  gunzipTlsRptReport,
  gzipTlsRptReport,
  makeTlsRptReportId,
  tlsRptFileName,
  utcDayKey,
  utcDayRange,
} from '../../src/tlsrpt/report.js';
import type { AggregatedPolicy } from '../../src/tlsrpt/types.js';
import { DAY, DAY_START, schemaErrors, stsPolicy } from './helpers.js';

const policies: AggregatedPolicy[] = [
  {
    policy: stsPolicy('example.com'),
    successCount: 5326,
    failureCount: 303,
    failures: [
      { resultType: 'certificate-expired', sendingMtaIp: '2001:db8:abcd:12::1', receivingMxHostname: 'mx1.example.com', count: 100 },
      { resultType: 'starttls-not-supported', sendingMtaIp: '2001:db8:abcd:13::1', receivingMxHostname: 'mx2.mail.example.com', receivingIp: '203.0.113.56', receivingMxHelo: 'mx2.mail.example.com', additionalInformation: 'https://reports.sender.example/details/1', count: 200 },
      { resultType: 'validation-failure', sendingMtaIp: '198.51.100.62', receivingIp: '203.0.113.58', receivingMxHostname: 'mx-backup.mail.example.com', failureReasonCode: 'X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED', count: 3 },
    ],
  },
];

function build(extra: Partial<Parameters<typeof buildTlsRptReport>[0]> = {}) {
  return buildTlsRptReport({
    organizationName: 'Sender Inc.',
    contactInfo: 'tlsrpt@sender.example',
    reportId: '2026-11-22_example.com_abc123@mta.sender.example',
    dateRange: utcDayRange(DAY),
    policies,
    ...extra,
  });
}

describe('buildTlsRptReport', () => {
  it('§4.4 builds the report object with the RFC member names and values', () => {
    const report = build();
    expect(report).toEqual({
      'organization-name': 'Sender Inc.',
      'date-range': { 'start-datetime': '2026-11-22T00:00:00Z', 'end-datetime': '2026-11-22T23:59:59Z' },
      'contact-info': 'tlsrpt@sender.example',
      'report-id': '2026-11-22_example.com_abc123@mta.sender.example',
      policies: [
        {
          policy: {
            'policy-type': 'sts',
            'policy-string': ['version: STSv1', 'mode: enforce', 'mx: mx1.example.com', 'mx: *.mail.example.com', 'max_age: 86400'],
            'policy-domain': 'example.com',
            'mx-host': ['mx1.example.com', '*.mail.example.com'],
          },
          summary: { 'total-successful-session-count': 5326, 'total-failure-session-count': 303 },
          'failure-details': [
            { 'result-type': 'certificate-expired', 'sending-mta-ip': '2001:db8:abcd:12::1', 'receiving-mx-hostname': 'mx1.example.com', 'failed-session-count': 100 },
            {
              'result-type': 'starttls-not-supported',
              'sending-mta-ip': '2001:db8:abcd:13::1',
              'receiving-mx-hostname': 'mx2.mail.example.com',
              'receiving-mx-helo': 'mx2.mail.example.com',
              'receiving-ip': '203.0.113.56',
              'failed-session-count': 200,
              'additional-information': 'https://reports.sender.example/details/1',
            },
            {
              'result-type': 'validation-failure',
              'sending-mta-ip': '198.51.100.62',
              'receiving-mx-hostname': 'mx-backup.mail.example.com',
              'receiving-ip': '203.0.113.58',
              'failed-session-count': 3,
              'failure-reason-code': 'X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED',
            },
          ],
        },
      ],
    });
  });

  it('§4.4 report is valid against the JSON schema written from the RFC', () => {
    expect(schemaErrors(build())).toBe('');
    // and the schema is not vacuous
    const bad = structuredClone(build()) as unknown as Record<string, unknown>;
    delete bad['report-id'];
    expect(schemaErrors(bad)).toMatch(/report-id/);
    const nulls = structuredClone(build()) as unknown as { policies: Array<{ 'failure-details': Array<Record<string, unknown>> }> };
    nulls.policies[0]!['failure-details'][0]!['receiving-ip'] = null;
    expect(schemaErrors(nulls)).not.toBe('');
  });

  it('§4.4 omits optional fields instead of null', () => {
    const report = build({
      policies: [
        { policy: { type: 'no-policy-found', domain: 'example.net' }, successCount: 3, failureCount: 1, failures: [{ resultType: 'validation-failure', count: 1 }] },
        { policy: { type: 'tlsa', domain: 'example.org' }, successCount: 2, failureCount: 0, failures: [] },
      ],
    });
    const json = JSON.stringify(report);
    expect(json).not.toContain('null');
    expect(json).not.toContain('undefined');
    expect(report.policies[0]!.policy).toEqual({ 'policy-type': 'no-policy-found', 'policy-domain': 'example.net' });
    expect(report.policies[0]!['failure-details']).toEqual([{ 'result-type': 'validation-failure', 'failed-session-count': 1 }]);
    expect(report.policies[1]).not.toHaveProperty('failure-details');
    expect(Object.keys(report.policies[1]!.policy)).toEqual(['policy-type', 'policy-domain']);
    expect(schemaErrors(report)).toBe('');
  });

  it('§4.4 drops failure details with a zero count', () => {
    const report = build({ policies: [{ policy: { type: 'sts', domain: 'example.com' }, successCount: 1, failureCount: 0, failures: [{ resultType: 'certificate-expired', count: 0 }] }] });
    expect(report.policies[0]).not.toHaveProperty('failure-details');
  });

  it('§4.1 date-range of a UTC day runs from 00:00:00Z to 23:59:59Z', () => {
    const range = utcDayRange(DAY_START + 13 * 3_600_000 + 17);
    expect(formatRfc3339(range.start)).toBe('2026-11-22T00:00:00Z');
    expect(formatRfc3339(range.end)).toBe('2026-11-22T23:59:59Z');
    expect(utcDayRange(DAY)).toEqual(range);
    expect(utcDayRange(new Date(DAY_START))).toEqual(range);
    expect(utcDayKey(DAY_START - 1)).toBe('2026-11-21');
    expect(utcDayKey(DAY_START)).toBe(DAY);
    // a leap day and a year end
    expect(formatRfc3339(utcDayRange('2028-02-29').end)).toBe('2028-02-29T23:59:59Z');
    expect(formatRfc3339(utcDayRange('2026-12-31').end)).toBe('2026-12-31T23:59:59Z');
    expect(() => utcDayRange('2026-02-30')).toThrow(TlsRptError);
  });

  it('§4.4 date-times are RFC 3339 UTC with whole seconds', () => {
    expect(formatRfc3339(new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 678)))).toBe('2026-01-02T03:04:05Z');
  });

  it('§4.4 report-id defaults to a unique <day>_<domain>_<unique>@<submitter> id', () => {
    const a = build({ reportId: undefined, submitter: 'mta.sender.example' });
    const b = build({ reportId: undefined, submitter: 'mta.sender.example' });
    expect(a['report-id']).toMatch(/^2026-11-22_example\.com_[0-9a-f]{16}@mta\.sender\.example$/);
    expect(a['report-id']).not.toBe(b['report-id']);
    // without a submitter: the domain of contact-info
    expect(build({ reportId: undefined })['report-id']).toMatch(/@sender\.example$/);
  });

  it('§5.3 report-id is a valid msg-id (dot-atom-text "@" dot-atom-text) for the Subject', () => {
    const id = makeTlsRptReportId({ start: new Date(DAY_START), policyDomain: 'Bücher.Example', submitter: 'MTA.Sender.Example.', uniqueId: 'x1' });
    expect(id).toBe('2026-11-22_xn--bcher-kva.example_x1@mta.sender.example');
    const atext = "[A-Za-z0-9!#$%&'*+\\-/=?^_`{|}~]+";
    expect(id).toMatch(new RegExp(`^${atext}(\\.${atext})*@${atext}(\\.${atext})*$`));
    expect(() => makeTlsRptReportId({ start: new Date(DAY_START), policyDomain: 'example.com', submitter: 's.example', uniqueId: 'not-alnum' })).toThrow(TlsRptError);
  });

  it('rejects invalid input with TLSRPT_REPORT_INVALID', () => {
    const cases: Array<Partial<Parameters<typeof buildTlsRptReport>[0]>> = [
      { organizationName: '' },
      { contactInfo: ' ' },
      { dateRange: { start: new Date(DAY_START + 1000), end: new Date(DAY_START) } },
      { dateRange: { start: new Date(Number.NaN), end: new Date(DAY_START) } },
      { policies: [{ policy: { type: 'sts', domain: 'example.com' }, successCount: -1, failureCount: 0, failures: [] }] },
      { policies: [{ policy: { type: 'sts', domain: 'example.com' }, successCount: 1.5, failureCount: 0, failures: [] }] },
      { policies: [{ policy: { type: 'bogus' as 'sts', domain: 'example.com' }, successCount: 1, failureCount: 0, failures: [] }] },
      { policies: [{ policy: { type: 'sts', domain: 'example.com' }, successCount: 1, failureCount: 1, failures: [{ resultType: 'nope' as 'dane-required', count: 1 }] }] },
    ];
    for (const c of cases) {
      let caught: unknown;
      try {
        build(c);
      } catch (error) {
        caught = error;
      }
      expect(caught, JSON.stringify(c)).toBeInstanceOf(TlsRptError);
      expect((caught as TlsRptError).code).toBe('TLSRPT_REPORT_INVALID');
    }
  });
});

describe('tlsRptFileName', () => {
  const dateRange = utcDayRange(DAY);
  it('§5.1 <submitter>!<policy-domain>!<begin>!<end>!<unique-id>.json.gz', () => {
    expect(tlsRptFileName({ submitter: 'mail.sender.example.com', policyDomain: 'example.net', dateRange, uniqueId: '001' })).toBe(
      `mail.sender.example.com!example.net!${DAY_START / 1000}!${DAY_START / 1000 + 86399}!001.json.gz`,
    );
  });
  it('§5.1 unique-id is optional; extension json for uncompressed reports', () => {
    expect(tlsRptFileName({ submitter: 'S.Example', policyDomain: 'Example.NET.', dateRange, gzip: false })).toBe(`s.example!example.net!1795305600!1795391999.json`);
  });
  it('§5.1 unique-id must be ALPHA / DIGIT and domains must be domains', () => {
    expect(() => tlsRptFileName({ submitter: 's.example', policyDomain: 'example.net', dateRange, uniqueId: 'a-b' })).toThrow(TlsRptError);
    expect(() => tlsRptFileName({ submitter: 's!example', policyDomain: 'example.net', dateRange })).toThrow(TlsRptError);
    expect(() => tlsRptFileName({ submitter: 's.example', policyDomain: '', dateRange })).toThrow(TlsRptError);
  });
});

describe('gzip', () => {
  it('§5.2 gzip round-trips the report byte for byte', async () => {
    const report = build();
    const gz = await gzipTlsRptReport(report);
    expect(gz.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    expect(gunzipSync(gz).toString('utf8')).toBe(JSON.stringify(report));
    expect(await gunzipTlsRptReport(gz)).toEqual(report);
  });

  it('gunzip bounds the decompressed size', async () => {
    const gz = await gzipTlsRptReport('x'.repeat(100_000));
    await expect(gunzipTlsRptReport(gz, 1000)).rejects.toThrow();
  });
});
