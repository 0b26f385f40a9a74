import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { normalizeDomain, normalizeDomainOrUndefined } from '../src/domain.js';
import { MtaStsError } from '../src/errors.js';

describe('domain normalisation', () => {
  it('lower-cases, strips one trailing dot, converts IDN to A-labels', () => {
    expect(normalizeDomain('Example.COM.')).toBe('example.com');
    expect(normalizeDomain('bücher.example')).toBe('xn--bcher-kva.example');
    expect(normalizeDomain('xn--bcher-kva.example')).toBe('xn--bcher-kva.example');
  });

  it('rejects what is not a host name with MTASTS_INVALID_DOMAIN', () => {
    for (const bad of ['', '.', 'a..b', '-a.example', 'a-.example', 'a_b.example', '192.0.2.1', '[::1]', 'a b.example', `${'a'.repeat(64)}.example`, `${'a.'.repeat(127)}a`, 'xn--zz.example', 'user@example.com']) {
      expect(() => normalizeDomain(bad), bad).toThrowError(MtaStsError);
      expect(normalizeDomainOrUndefined(bad), bad).toBeUndefined();
    }
    expect(normalizeDomainOrUndefined(42)).toBeUndefined();
    // An all-numeric last label is an IPv4 literal, never a top-level domain (RFC 3696 §2).
    expect(normalizeDomainOrUndefined('10.0.0.1')).toBeUndefined();
    expect(normalizeDomainOrUndefined('mail.example.123')).toBeUndefined();
    expect(normalizeDomainOrUndefined('123.example.com')).toBe('123.example.com');
    expect(normalizeDomainOrUndefined('1mx.example')).toBe('1mx.example');
  });

  it('never throws anything but MtaStsError and its output is stable (property)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 100 }), (input) => {
        const out = normalizeDomainOrUndefined(input);
        if (out !== undefined) {
          expect(out).toMatch(/^[a-z0-9.-]+$/);
          expect(normalizeDomainOrUndefined(out)).toBe(out);
        }
      }),
      { numRuns: 3000 },
    );
  });
});
