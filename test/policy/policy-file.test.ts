import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parsePolicy } from '../../src/policy/policy-file.js';
import { MtaStsError } from '../../src/errors.js';
import { codeOf } from '../helpers.js';

const VALID = 'version: STSv1\nmode: enforce\nmx: mx1.example.com\nmx: *.example.net\nmax_age: 604800\n';

describe('RFC 8461 §3.2 policy file', () => {
  it('§3.2 parses a valid policy', () => {
    expect(parsePolicy(VALID)).toEqual({ version: 'STSv1', mode: 'enforce', mx: ['mx1.example.com', '*.example.net'], maxAge: 604800, extensions: [] });
  });

  it('§3.2 lines end in LF or CRLF; whitespace around the value is tolerated', () => {
    const crlf = 'version: STSv1\r\nmode: testing\r\nmx: mx.example.com\r\nmax_age: 86400\r\n';
    expect(parsePolicy(crlf).mode).toBe('testing');
    const spaced = 'version:STSv1  \nmode:\tenforce\t\nmx:   mx.example.com \nmax_age: 86400';
    expect(parsePolicy(spaced)).toMatchObject({ mode: 'enforce', mx: ['mx.example.com'], maxAge: 86400 });
  });

  it('§3.2 version STSv1 is required', () => {
    expect(codeOf(() => parsePolicy('mode: enforce\nmx: a.example\nmax_age: 1'))).toBe('MTASTS_POLICY_INVALID');
    expect(codeOf(() => parsePolicy('version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1'))).toBe('MTASTS_POLICY_INVALID');
    expect(codeOf(() => parsePolicy('version: stsv1\nmode: enforce\nmx: a.example\nmax_age: 1'))).toBe('MTASTS_POLICY_INVALID');
  });

  it('§3.2 mode is one of enforce, testing, none (case-sensitive)', () => {
    for (const mode of ['enforce', 'testing', 'none'] as const) {
      expect(parsePolicy(`version: STSv1\nmode: ${mode}\nmx: a.example\nmax_age: 1`).mode).toBe(mode);
    }
    expect(codeOf(() => parsePolicy('version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1'))).toBe('MTASTS_POLICY_INVALID');
    expect(codeOf(() => parsePolicy('version: STSv1\nmode: report\nmx: a.example\nmax_age: 1'))).toBe('MTASTS_POLICY_INVALID');
    expect(codeOf(() => parsePolicy('version: STSv1\nmx: a.example\nmax_age: 1'))).toBe('MTASTS_POLICY_INVALID');
  });

  it('§3.2 max_age is an integer 0..31557600; above the maximum the policy is invalid', () => {
    expect(parsePolicy('version: STSv1\nmode: none\nmax_age: 0').maxAge).toBe(0);
    expect(parsePolicy('version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557600').maxAge).toBe(31557600);
    expect(codeOf(() => parsePolicy('version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601'))).toBe('MTASTS_POLICY_INVALID');
    expect(codeOf(() => parsePolicy('version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 99999999999'))).toBe('MTASTS_POLICY_INVALID');
    expect(codeOf(() => parsePolicy('version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1'))).toBe('MTASTS_POLICY_INVALID');
    expect(codeOf(() => parsePolicy('version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1.5'))).toBe('MTASTS_POLICY_INVALID');
    expect(codeOf(() => parsePolicy('version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1e5'))).toBe('MTASTS_POLICY_INVALID');
    expect(codeOf(() => parsePolicy('version: STSv1\nmode: enforce\nmx: a.example\nmax_age:'))).toBe('MTASTS_POLICY_INVALID');
    expect(codeOf(() => parsePolicy('version: STSv1\nmode: enforce\nmx: a.example'))).toBe('MTASTS_POLICY_INVALID');
  });

  it('§3.2 mx is required unless mode is none', () => {
    expect(codeOf(() => parsePolicy('version: STSv1\nmode: enforce\nmax_age: 100'))).toBe('MTASTS_POLICY_INVALID');
    expect(codeOf(() => parsePolicy('version: STSv1\nmode: testing\nmax_age: 100'))).toBe('MTASTS_POLICY_INVALID');
    expect(parsePolicy('version: STSv1\nmode: none\nmax_age: 100').mx).toEqual([]);
  });

  it('§3.2 a field other than mx that appears more than once: the first occurrence wins', () => {
    const p = parsePolicy('version: STSv1\nmode: testing\nmode: enforce\nmx: a.example\nmax_age: 100\nmax_age: 200\nversion: STSv9');
    expect(p.mode).toBe('testing');
    expect(p.maxAge).toBe(100);
    expect(p.version).toBe('STSv1');
  });

  it('§3.2 every mx line counts', () => {
    expect(parsePolicy('version: STSv1\nmode: enforce\nmx: a.example\nmx: b.example\nmx: *.c.example\nmax_age: 1').mx).toEqual(['a.example', 'b.example', '*.c.example']);
  });

  it('§3.2 unknown fields are ignored', () => {
    const p = parsePolicy(`${VALID}future_field: something else\nx-ext.1: y`);
    expect(p.mode).toBe('enforce');
    expect(p.extensions).toEqual([
      { name: 'future_field', value: 'something else' },
      { name: 'x-ext.1', value: 'y' },
    ]);
  });

  it('§3.2 mx patterns are domain names or "*." followed by a domain; anything else is invalid', () => {
    expect(parsePolicy('version: STSv1\nmode: enforce\nmx: MX.Example.COM\nmax_age: 1').mx).toEqual(['mx.example.com']);
    expect(parsePolicy('version: STSv1\nmode: enforce\nmx: *.xn--bcher-kva.example\nmax_age: 1').mx).toEqual(['*.xn--bcher-kva.example']);
    for (const bad of ['*', '*.', 'mx.*.example.com', 'a*.example.com', '**.example.com', 'mx example.com', 'mx_1.example.com', '-mx.example.com', '192.0.2.1', 'https://mx.example.com', 'mx.bücher.example', 'mx.example.com.', '*.example.com.', '']) {
      expect(codeOf(() => parsePolicy(`version: STSv1\nmode: enforce\nmx: ${bad}\nmax_age: 1`)), bad).toBe('MTASTS_POLICY_INVALID');
    }
  });

  it('§3.2 field names and values are case-sensitive', () => {
    expect(codeOf(() => parsePolicy('Version: STSv1\nMode: enforce\nMX: a.example\nMax_Age: 1'))).toBe('MTASTS_POLICY_INVALID');
  });

  it('§3.2 lines without "key: value" make the policy invalid; blank lines are tolerated', () => {
    expect(codeOf(() => parsePolicy(`${VALID}garbage line\n`))).toBe('MTASTS_POLICY_INVALID');
    expect(codeOf(() => parsePolicy('<html><body>hello</body></html>'))).toBe('MTASTS_POLICY_INVALID');
    expect(parsePolicy(`\n${VALID}\n\n`).mode).toBe('enforce');
  });

  it('§3.2 sts-policy-field-delim = ":" *WSP: whitespace only after the colon and at the end of a line', () => {
    for (const bad of ['mode : enforce', ' mode: enforce', '\tmode: enforce', 'mode:\tenforce\tx', 'mode: enf\torce', 'mode: enforce\rmx: a.example']) {
      expect(codeOf(() => parsePolicy(`version: STSv1\n${bad}\nmx: a.example\nmax_age: 1\n`)), JSON.stringify(bad)).toBe('MTASTS_POLICY_INVALID');
    }
    expect(parsePolicy('version: STSv1\nmode:enforce \t\nmx:\t a.example\nmax_age: 1').mode).toBe('enforce');
    // sts-policy-ext-value: spaces inside, UTF-8 allowed; no control characters.
    expect(parsePolicy(`${VALID}note: grüße aus Köln  \n`).extensions).toEqual([{ name: 'note', value: 'grüße aus Köln' }]);
    expect(codeOf(() => parsePolicy(`${VALID}note: a\u0001b\n`))).toBe('MTASTS_POLICY_INVALID');
    expect(codeOf(() => parsePolicy(`${VALID}note:\n`))).toBe('MTASTS_POLICY_INVALID');
  });

  it('§3.2 a repeated field other than mx: the first counts, later ones are ignored but must be well-formed lines', () => {
    expect(parsePolicy(`${VALID}mode: bogus\nversion: STSv9\nmax_age: x\n`)).toMatchObject({ mode: 'enforce', maxAge: 604800 });
    expect(codeOf(() => parsePolicy(`${VALID}mode : bogus\n`))).toBe('MTASTS_POLICY_INVALID');
  });

  it('§3.3 maxBytes bounds the policy in UTF-8 bytes (default 65536) and can be raised', () => {
    const big = `${VALID}${Array.from({ length: 3000 }, (_, i) => `mx: mx${i}.example.com\n`).join('')}`;
    expect(big.length).toBeGreaterThan(65_536);
    expect(codeOf(() => parsePolicy(big))).toBe('MTASTS_POLICY_INVALID');
    expect(parsePolicy(big, { maxBytes: 1024 * 1024 }).mx).toHaveLength(3001); // mx1.example.com is listed twice
    // Bytes, not characters: 30000 two-byte characters are 60000 bytes.
    const wide = `${VALID}note: ${'é'.repeat(30_000)}\n`;
    expect(codeOf(() => parsePolicy(wide, { maxBytes: 40_000 }))).toBe('MTASTS_POLICY_INVALID');
    expect(parsePolicy(wide, { maxBytes: 70_000 }).mode).toBe('enforce');
    expect(codeOf(() => parsePolicy(VALID, { maxBytes: 0 }))).toBe('MTASTS_INVALID_OPTIONS');
  });

  it('§3.2 the parser never throws anything but MtaStsError (property)', () => {
    const line = fc.oneof(
      fc.string({ maxLength: 60 }),
      fc.constantFrom('version: STSv1', 'mode: enforce', 'mode: testing', 'mode: none', 'max_age: 86400', 'mx: mx.example.com', 'mx: *.example.com'),
      fc.tuple(fc.constantFrom('version', 'mode', 'mx', 'max_age', 'ext'), fc.string({ maxLength: 30 })).map(([k, v]) => `${k}: ${v}`),
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 12 }), fc.constantFrom('\n', '\r\n'), (lines, eol) => {
        try {
          const p = parsePolicy(lines.join(eol));
          expect(['enforce', 'testing', 'none']).toContain(p.mode);
          expect(p.maxAge).toBeGreaterThanOrEqual(0);
          expect(p.maxAge).toBeLessThanOrEqual(31557600);
          if (p.mode !== 'none') expect(p.mx.length).toBeGreaterThan(0);
        } catch (error) {
          expect(error).toBeInstanceOf(MtaStsError);
          expect((error as MtaStsError).code).toBe('MTASTS_POLICY_INVALID');
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('§3.2 every policy the ABNF generates parses to the fields it was generated from (property)', () => {
    const wsp = fc.stringMatching(/^[ \t]{0,2}$/);
    const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?$/).filter((l) => l.slice(2, 4) !== '--'); // no '??--' labels: an 'xn--' label must be valid punycode
    const domain = fc.array(label, { minLength: 2, maxLength: 4 }).map((l) => l.join('.')).filter((d) => !/(^|\.)[0-9]+$/.test(d));
    const mx = fc.tuple(fc.boolean(), domain).map(([wild, d]) => (wild ? `*.${d}` : d));
    const extName = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/).filter((n) => !['version', 'mode', 'max_age', 'mx'].includes(n));
    const extValue = fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e]{0,20}[\x21-\x7e])?$/);
    fc.assert(
      fc.property(
        fc.constantFrom('enforce', 'testing', 'none'),
        fc.integer({ min: 0, max: 31_557_600 }),
        fc.uniqueArray(mx, { minLength: 1, maxLength: 4 }),
        fc.uniqueArray(fc.tuple(extName, extValue), { maxLength: 3, selector: ([name]) => name }), // a repeated name: first wins
        fc.array(wsp, { minLength: 16, maxLength: 16 }),
        fc.constantFrom('\n', '\r\n'),
        fc.boolean(),
        (mode, maxAge, patterns, extensions, ws, eol, finalTerm) => {
          const fields = [['version', 'STSv1'], ['mode', mode], ...patterns.map((p) => ['mx', p]), ['max_age', String(maxAge)], ...extensions];
          const text = fields.map(([name, value], i) => `${name}:${ws[i * 2 % 16]}${value}${ws[(i * 2 + 1) % 16]}`).join(eol) + (finalTerm ? eol : '');
          const p = parsePolicy(text);
          expect(p).toEqual({ version: 'STSv1', mode, mx: patterns, maxAge, extensions: extensions.map(([name, value]) => ({ name, value })) });
        },
      ),
      { numRuns: 1000 },
    );
  });
});
