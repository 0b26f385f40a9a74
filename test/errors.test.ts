import { describe, expect, it } from 'vitest';
import { MtaStsError, TLSRPT_RESULT_TYPES, isMtaStsError } from '../src/errors.js';

describe('MtaStsError', () => {
  it('carries a stable code, the RFC 8460 result type and whether it is temporary', () => {
    const e = new MtaStsError('MTASTS_WEBPKI_INVALID', 'bad certificate', { domain: 'example.com', details: { tlsCode: 'CERT_HAS_EXPIRED' } });
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('MtaStsError');
    expect(e.resultType).toBe('sts-webpki-invalid');
    expect(e.temporary).toBe(false);
    expect(e.toJSON()).toEqual({ name: 'MtaStsError', code: 'MTASTS_WEBPKI_INVALID', message: 'bad certificate', resultType: 'sts-webpki-invalid', temporary: false, domain: 'example.com', details: { tlsCode: 'CERT_HAS_EXPIRED' } });
    expect(new MtaStsError('MTASTS_DNS_TEMPORARY', 'x')).toMatchObject({ temporary: true, resultType: 'sts-policy-fetch-error' });
    expect(new MtaStsError('MTASTS_POLICY_INVALID', 'x').resultType).toBe('sts-policy-invalid');
  });

  it('isMtaStsError is an instanceof check: a look-alike plain object is not an MtaStsError', () => {
    // The build has one MtaStsError per module format, shared by every subpath (test/cli/pack.test.ts checks it in
    // the installed package), so no duck typing is needed, and none is done.
    expect(isMtaStsError(new MtaStsError('MTASTS_ABORTED', 'x'))).toBe(true);
    expect(isMtaStsError({ name: 'MtaStsError', code: 'MTASTS_ABORTED', message: 'x' })).toBe(false);
    expect(isMtaStsError(new Error('x'))).toBe(false);
  });

  it('§4.3 lists every RFC 8460 result type', () => {
    expect(TLSRPT_RESULT_TYPES).toEqual(['starttls-not-supported', 'certificate-host-mismatch', 'certificate-expired', 'certificate-not-trusted', 'validation-failure', 'sts-policy-fetch-error', 'sts-policy-invalid', 'sts-webpki-invalid', 'tlsa-invalid', 'dnssec-invalid', 'dane-required']);
  });
});
