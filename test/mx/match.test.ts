import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { findMatchingPattern, mxMatchesPattern, mxMatchesPolicy } from '../../src/mx/match.js';

describe('RFC 8461 §4.1 MX host matching', () => {
  it('§4.1 exact match is case-insensitive and ignores a trailing dot', () => {
    expect(mxMatchesPattern('mx.example.com', 'mx.example.com')).toBe(true);
    expect(mxMatchesPattern('MX.Example.COM', 'mx.example.com')).toBe(true);
    expect(mxMatchesPattern('mx.example.com.', 'mx.example.com')).toBe(true);
    expect(mxMatchesPattern('mx.example.com', 'MX.EXAMPLE.COM.')).toBe(true);
    expect(mxMatchesPattern('mx2.example.com', 'mx.example.com')).toBe(false);
    expect(mxMatchesPattern('mx.example.com.evil', 'mx.example.com')).toBe(false);
  });

  it('§4.1 wildcard matches exactly one leftmost label', () => {
    expect(mxMatchesPattern('mx.example.com', '*.example.com')).toBe(true);
    expect(mxMatchesPattern('MX1.EXAMPLE.COM.', '*.example.com')).toBe(true);
    expect(mxMatchesPattern('a.b.example.com', '*.example.com')).toBe(false);
    expect(mxMatchesPattern('example.com', '*.example.com')).toBe(false);
    expect(mxMatchesPattern('.example.com', '*.example.com')).toBe(false);
    expect(mxMatchesPattern('mxexample.com', '*.example.com')).toBe(false);
    expect(mxMatchesPattern('mx.example.com.au', '*.example.com')).toBe(false);
  });

  it('§4.1 *.x.test does not admit a.b.x.test (no suffix matching)', () => {
    expect(mxMatchesPolicy('a.b.x.test', ['*.x.test'])).toBe(false);
    expect(mxMatchesPolicy('b.x.test', ['*.x.test'])).toBe(true);
  });

  it('§4.1 a host matching no pattern is not matched by the policy', () => {
    expect(mxMatchesPolicy('evil.attacker.test', ['mx1.example.com', '*.example.net'])).toBe(false);
    expect(findMatchingPattern('mx9.example.net', ['mx1.example.com', '*.example.net'])).toBe('*.example.net');
    expect(mxMatchesPolicy('mx.example.com', [])).toBe(false);
  });

  it('§4.1 wildcard matches exactly one label (property)', () => {
    const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/);
    const domain = fc.array(label, { minLength: 1, maxLength: 4 }).map((l) => l.join('.'));
    fc.assert(
      fc.property(fc.array(label, { minLength: 0, maxLength: 3 }), domain, (prefix, suffix) => {
        const host = [...prefix, suffix].join('.');
        expect(mxMatchesPattern(host, `*.${suffix}`)).toBe(prefix.length === 1);
        expect(mxMatchesPattern(host, suffix)).toBe(prefix.length === 0);
      }),
      { numRuns: 2000 },
    );
  });

  it('§4.1 the matcher never throws, whatever the input (property)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), fc.string({ maxLength: 80 }), (host, pattern) => {
        expect(typeof mxMatchesPattern(host, pattern)).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });
});
