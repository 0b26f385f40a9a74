import { describe, expect, it } from 'vitest';
import { MtaStsError, TLSRPT_RESULT_TYPES, causeChain, errorCodeOf, type MtaStsSenderError } from '../src/errors.js';

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


  it('§4.3 lists every RFC 8460 result type', () => {
    expect(TLSRPT_RESULT_TYPES).toEqual(['starttls-not-supported', 'certificate-host-mismatch', 'certificate-expired', 'certificate-not-trusted', 'validation-failure', 'sts-policy-fetch-error', 'sts-policy-invalid', 'sts-webpki-invalid', 'tlsa-invalid', 'dnssec-invalid', 'dane-required']);
  });
});

describe('one error model: every subpath throws a MtaStsSenderError', () => {
  it('errors from the root, /hooks, /nodemailer, /tlsrpt and /redis are instances of the one base class, with code, temporary and toJSON', async () => {
    const root = await import('../src/index.js');
    const hooks = await import('../src/integrations/hooks.js');
    const nodemailer = await import('../src/integrations/nodemailer/index.js');
    const tlsrpt = await import('../src/tlsrpt/index.js');
    const redis = await import('../src/redis/index.js');
    const thrown = (fn: () => unknown): unknown => {
      try {
        fn();
      } catch (error) {
        return error;
      }
      throw new Error('did not throw');
    };
    const errors = {
      root: thrown(() => root.parsePolicy('not a policy')),
      rootOptions: thrown(() => root.createMtaSts({ fetchTimeoutMs: -1 })),
      hooks: thrown(() => hooks.createMtaStsHooks({ plaintextFallback: 'yes' as unknown as boolean })),
      nodemailer: thrown(() => nodemailer.createMtaStsTransport({ name: 'mx.example', nope: 1 } as never)),
      nodemailerDelivery: new nodemailer.MtaStsDeliveryError('EMTASTS', 'refused', { temporary: true, enhanced: '4.7.5', domain: 'example.com' }),
      tlsrpt: thrown(() => tlsrpt.parseTlsRptRecord('v=TLSRPTv1; rua=ftp://x')),
      tlsrptOptions: thrown(() => new tlsrpt.TlsRptAggregator({ store: new tlsrpt.MemoryTlsRptStore(), limits: { maxDomainsPerDay: 0 } })),
      redis: thrown(() => redis.createRedisPolicyStore({} as never)),
    };
    for (const [where, error] of Object.entries(errors)) {
      expect(error, where).toBeInstanceOf(root.MtaStsSenderError);
      const e = error as MtaStsSenderError;
      expect(typeof e.code, where).toBe('string');
      expect(typeof e.temporary, where).toBe('boolean');
      expect(e.toJSON(), where).toMatchObject({ name: e.name, code: e.code, message: e.message, temporary: e.temporary, details: {} });
    }
    expect(errors.root).toBeInstanceOf(root.MtaStsError);
    expect(errors.tlsrpt).toBeInstanceOf(tlsrpt.TlsRptError);
    expect(errors.tlsrpt).not.toBeInstanceOf(root.MtaStsError);
    // One option-error path: a bad option is MTASTS_INVALID_OPTIONS from every factory, the reporter's parts included.
    for (const where of ['rootOptions', 'hooks', 'nodemailer', 'tlsrptOptions', 'redis'] as const) expect((errors[where] as { code: string }).code, where).toBe('MTASTS_INVALID_OPTIONS');
    // Nodemailer-shaped fields stay on the delivery error only.
    expect(errors.nodemailerDelivery.toJSON()).toMatchObject({ code: 'EMTASTS', responseCode: 451, response: '451 4.7.5 refused', temporary: true, domain: 'example.com' });
    expect(errors.root).not.toHaveProperty('responseCode');
  });
});

describe('causeChain / errorCodeOf: the one walk of a cause chain', () => {
  it('finds the most specific code under generic wrappers, bounded and safe against cycles', () => {
    const tls = Object.assign(new Error('expired'), { code: 'CERT_HAS_EXPIRED' });
    const undici = Object.assign(new Error('socket'), { code: 'UND_ERR_SOCKET', cause: tls });
    expect(errorCodeOf(new Error('fetch failed', { cause: undici }))).toBe('CERT_HAS_EXPIRED');
    expect(errorCodeOf(Object.assign(new Error('socket'), { code: 'UND_ERR_SOCKET' }))).toBe('UND_ERR_SOCKET');
    expect(errorCodeOf('ECONNREFUSED')).toBe('ECONNREFUSED');
    const cyclic: { code?: string; cause?: unknown } = {};
    cyclic.cause = cyclic;
    expect(errorCodeOf(cyclic)).toBeUndefined();
    expect([...causeChain(cyclic)]).toHaveLength(1);
    let deep: unknown = { code: 'DEEP' };
    for (let i = 0; i < 10; i++) deep = { cause: deep };
    expect(errorCodeOf(deep)).toBeUndefined();
  });
});
