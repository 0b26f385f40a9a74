/**
 * RFC 8460 §4.4 failure-detail fields are checked when an outcome is recorded (an invalid value is left out, with a
 * `warning` event) and again when a report is built (a store edited by hand cannot put one into a report); the
 * failure total always agrees with the failure details. Through the public `/tlsrpt` API.
 */
import { describe, expect, it } from 'vitest';
import { MemoryTlsRptStore, buildTlsRptReport, createTlsRptReporter, type TlsRptEvent, type TlsRptReport } from '../../src/tlsrpt/index.js';
import { DAY, DAY_START, HOUR, clock, schemaErrors, stsPolicy } from './helpers.js';

function reporter(store = new MemoryTlsRptStore()) {
  const events: TlsRptEvent[] = [];
  const c = clock(DAY_START + 12 * HOUR);
  const r = createTlsRptReporter({ organizationName: 'Sender', contactInfo: 'tlsrpt@sender.example', submitter: 'mta.sender.example', store, now: c.now, onEvent: (e) => events.push(e) });
  return { r, store, events };
}

async function onlyReport(r: ReturnType<typeof reporter>['r']): Promise<TlsRptReport> {
  const pending = await r.pending();
  expect(pending).toHaveLength(1);
  return pending[0]!.report;
}

describe('report fields (RFC 8460 §4.4)', () => {
  it('invalid IPs, a reason code with CR/LF/NUL and bad host names are left out, with one warning per field; U-labels become A-labels', async () => {
    const { r, events } = reporter();
    const policy = stsPolicy('example.com');
    r.recorder.record({ policy, at: DAY_START + HOUR, success: false, failure: { resultType: 'certificate-expired', sendingMtaIp: 'not-an-ip', receivingIp: '198.51.100.7\r\nX-Evil: 1', receivingMxHostname: 'mx ünd space', receivingMxHelo: 'bad helo\u0000', failureReasonCode: 'CERT_HAS_EXPIRED\r\nInjected: yes\u0000' } });
    r.recorder.record({ policy, at: DAY_START + HOUR, success: false, failure: { resultType: 'certificate-expired', sendingMtaIp: '192.0.2.1', receivingIp: '2001:DB8::25', receivingMxHostname: 'MX.Bücher.example.', receivingMxHelo: '[IPv6:2001:db8::25]', failureReasonCode: `X${'y'.repeat(400)}` } });
    r.recorder.record({ policy, at: DAY_START + HOUR, success: false, failure: { resultType: 'certificate-expired', sendingMtaIp: 'also bad' } });
    const report = await onlyReport(r);
    expect(schemaErrors(report)).toBe('');
    const details = report.policies[0]!['failure-details']!;
    expect(details).toContainEqual({ 'result-type': 'certificate-expired', 'failed-session-count': 2 });
    expect(details).toContainEqual({
      'result-type': 'certificate-expired',
      'sending-mta-ip': '192.0.2.1',
      'receiving-mx-hostname': 'mx.xn--bcher-kva.example',
      'receiving-mx-helo': '[IPv6:2001:db8::25]',
      'receiving-ip': '2001:db8::25',
      'failed-session-count': 1,
      'failure-reason-code': `X${'y'.repeat(254)}`,
    });
    const warnings = events.filter((e) => e.type === 'warning' && e.code === 'TLSRPT_FIELD_INVALID');
    expect(warnings.map((w) => (w as { field?: string }).field).sort()).toEqual(['failureReasonCode', 'receivingIp', 'receivingMxHelo', 'receivingMxHostname', 'sendingMtaIp']);
    expect(r.recorder.stats().invalidFields).toBe(6);
    await r.close();
  });

  it('a store edited by hand (failureCount 999, invalid fields) cannot make the report disagree with itself or carry them', async () => {
    const store = new MemoryTlsRptStore();
    const limits = { maxDomainsPerDay: 10, maxPoliciesPerDomain: 4, maxFailureDetailsPerPolicy: 10, maxFieldLength: 255, maxPolicyStringLength: 65_536 };
    await store.merge({ day: DAY, policyDomain: 'example.com', policies: [{ policy: stsPolicy('example.com'), successCount: 10, failureCount: 999, failures: [
      { resultType: 'certificate-expired', sendingMtaIp: 'not-an-ip', receivingMxHostname: 'Bücher.example', failureReasonCode: 'a\nb', count: 12 },
      { resultType: 'starttls-not-supported', receivingIp: '198.51.100.1', count: 8 },
    ] }] }, limits);
    const { r } = reporter(store);
    const report = await onlyReport(r);
    const p = report.policies[0]!;
    expect(p.summary).toEqual({ 'total-successful-session-count': 10, 'total-failure-session-count': 20 });
    expect(p['failure-details']).toEqual([
      { 'result-type': 'certificate-expired', 'receiving-mx-hostname': 'xn--bcher-kva.example', 'failed-session-count': 12 },
      { 'result-type': 'starttls-not-supported', 'receiving-ip': '198.51.100.1', 'failed-session-count': 8 },
    ]);
    await r.close();
  });

  it('buildTlsRptReport on its own applies the same rules', () => {
    const report = buildTlsRptReport({ organizationName: 'o', contactInfo: 'c@sender.example', dateRange: { start: new Date(DAY_START), end: new Date(DAY_START + 86_399_000) }, policies: [
      { policy: stsPolicy('example.com'), successCount: 1, failureCount: 1009, failures: [{ resultType: 'validation-failure', receivingIp: '300.1.1.1', receivingMxHelo: 'mx.example.com', count: 20 }] },
    ] });
    expect(report.policies[0]!.summary['total-failure-session-count']).toBe(20);
    expect(report.policies[0]!['failure-details']).toEqual([{ 'result-type': 'validation-failure', 'receiving-mx-helo': 'mx.example.com', 'failed-session-count': 20 }]);
  });
});
