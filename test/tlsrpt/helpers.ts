/** Shared fixtures of the TLS-RPT tests. */
import { Ajv } from 'ajv';
import { TLSRPT_REPORT_JSON_SCHEMA } from '../../src/tlsrpt/report-schema.js';
import type { SessionOutcome, TlsRptPolicyRef } from '../../src/tlsrpt/types.js';

/** 2026-11-22T00:00:00Z */
export const DAY_START = Date.UTC(2026, 10, 22);
export const DAY = '2026-11-22';
export const HOUR = 3_600_000;

export const STS_LINES = ['version: STSv1', 'mode: enforce', 'mx: mx1.example.com', 'mx: *.mail.example.com', 'max_age: 86400'];

export function stsPolicy(domain = 'example.com', lines: string[] = STS_LINES): TlsRptPolicyRef {
  return {
    type: 'sts',
    domain,
    policyString: [...lines],
    mxHost: lines.filter((l) => l.startsWith('mx: ')).map((l) => l.slice(4)),
  };
}

/** A mutable clock. */
export function clock(start: number): { now: () => number; set: (ms: number) => void; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, set: (ms) => (t = ms), advance: (ms) => (t += ms) };
}

const ajv = new Ajv({ allErrors: true, strict: true });
const validate = ajv.compile(TLSRPT_REPORT_JSON_SCHEMA);

/** Validates a report against the RFC 8460 §4.4 schema; returns the error text or '' when valid. */
export function schemaErrors(report: unknown): string {
  return validate(report) ? '' : ajv.errorsText(validate.errors);
}

/**
 * A realistic day for example.com and example.net: successes and several kinds of failures, with recipient
 * addresses and message content smuggled in as extra properties (they must never reach a report).
 */
export function mixedDay(at = DAY_START + 10 * HOUR): SessionOutcome[] {
  const sts = stsPolicy('example.com');
  const smuggle = { recipient: 'alice@example.com', message: 'Subject: secret payroll', rcptTo: ['bob@example.com'] };
  const out: SessionOutcome[] = [];
  for (let i = 0; i < 7; i++) out.push({ policy: sts, at: at + i, success: true, ...smuggle } as SessionOutcome);
  for (let i = 0; i < 3; i++) {
    out.push({
      policy: sts,
      at: at + 100 + i,
      success: false,
      failure: { resultType: 'certificate-expired', sendingMtaIp: '192.0.2.10', receivingMxHostname: 'mx1.example.com', receivingIp: '198.51.100.25', failureReasonCode: 'CERT_HAS_EXPIRED', recipient: 'carol@example.com' },
    } as SessionOutcome);
  }
  out.push({
    policy: sts,
    at: at + 200,
    success: false,
    failure: { resultType: 'starttls-not-supported', sendingMtaIp: '192.0.2.10', receivingMxHostname: 'mx2.mail.example.com', receivingMxHelo: 'mx2.mail.example.com', receivingIp: '2001:db8::25' },
  });
  out.push({ policy: { type: 'sts', domain: 'example.com' }, at: at + 300, success: false, failure: { resultType: 'sts-policy-fetch-error', failureReasonCode: 'ECONNREFUSED' } });
  for (let i = 0; i < 4; i++) out.push({ policy: { type: 'no-policy-found', domain: 'example.net' }, at: at + 400 + i, success: true });
  out.push({ policy: { type: 'no-policy-found', domain: 'EXAMPLE.NET.' }, at: at + 500, success: false, failure: { resultType: 'validation-failure', receivingMxHostname: 'MX.Example.NET.' } });
  return out;
}
