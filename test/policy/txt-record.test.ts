import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { isStsTxtRecord, parseStsTxtRecord, selectStsTxtRecord } from '../../src/policy/txt-record.js';
import { MtaStsError } from '../../src/errors.js';
import { codeOf } from '../helpers.js';

describe('RFC 8461 §3.1 TXT record', () => {
  it('§3.1 a record is an STS record when it begins with sts-version sts-field-delim ("v=STSv1", *WSP ";")', () => {
    expect(isStsTxtRecord('v=STSv1; id=1')).toBe(true);
    expect(isStsTxtRecord('v=STSv1;id=1')).toBe(true);
    // sts-field-delim = *WSP ";" *WSP: whitespace before the first ";" is allowed.
    expect(isStsTxtRecord('v=STSv1 ; id=1')).toBe(true);
    expect(isStsTxtRecord('v=STSv1\t;id=1')).toBe(true);
    expect(isStsTxtRecord('v=STSv1')).toBe(false);
    expect(isStsTxtRecord('v=STSv1 id=1')).toBe(false);
    expect(isStsTxtRecord('v=stsv1; id=1')).toBe(false);
    expect(isStsTxtRecord('id=1; v=STSv1')).toBe(false);
    expect(isStsTxtRecord(' v=STSv1; id=1')).toBe(false);
    expect(isStsTxtRecord('v=STSv10; id=1')).toBe(false);
    expect(isStsTxtRecord('v=spf1 -all')).toBe(false);
  });

  it('§3.1 "v=STSv1 ; id=1" is a valid record; records that are not STS records are ignored', () => {
    expect(parseStsTxtRecord('v=STSv1 ; id=1')).toEqual({ version: 'STSv1', id: '1', extensions: [] });
    expect(selectStsTxtRecord([['v=STSv1 ; id=1']])?.id).toBe('1');
    const record = selectStsTxtRecord([['v=spf1 -all'], ['google-site-verification=abc'], ['v=STSv1'], ['v=STSv10; id=x'], ['v=STSv1; id=20240101']]);
    expect(record?.id).toBe('20240101');
    expect(selectStsTxtRecord([['v=spf1 -all']])).toBeUndefined();
    expect(selectStsTxtRecord([])).toBeUndefined();
  });

  it('§3.1 more than one STS record means no usable record (not first-wins)', () => {
    expect(codeOf(() => selectStsTxtRecord([['v=STSv1; id=a1'], ['v=STSv1; id=b2']]))).toBe('MTASTS_TXT_MULTIPLE');
    // A malformed second STS record still counts towards "exactly one".
    expect(codeOf(() => selectStsTxtRecord([['v=STSv1; id=a1'], ['v=STSv1; id=!!']]))).toBe('MTASTS_TXT_MULTIPLE');
    // §3.1 sts-field-delim: a record with whitespace before its first ";" is an STS record and counts.
    expect(codeOf(() => selectStsTxtRecord([['v=STSv1; id=1'], ['v=STSv1 ; id=2']]))).toBe('MTASTS_TXT_MULTIPLE');
  });

  it('§3.1 a record split into several strings is concatenated before parsing', () => {
    expect(selectStsTxtRecord([['v=STSv1; ', 'id=2024', '0101Z9']])?.id).toBe('20240101Z9');
    expect(selectStsTxtRecord([['v=STS', 'v1; id=abc']])?.id).toBe('abc');
  });

  it('§3.1 id is 1-32 characters of [A-Za-z0-9]; missing or invalid id makes the record invalid', () => {
    expect(parseStsTxtRecord('v=STSv1; id=a').id).toBe('a');
    expect(parseStsTxtRecord(`v=STSv1; id=${'A1'.repeat(16)}`).id).toHaveLength(32);
    expect(codeOf(() => parseStsTxtRecord(`v=STSv1; id=${'a'.repeat(33)}`))).toBe('MTASTS_TXT_INVALID');
    expect(codeOf(() => parseStsTxtRecord('v=STSv1; id='))).toBe('MTASTS_TXT_INVALID');
    expect(codeOf(() => parseStsTxtRecord('v=STSv1; id=2024-01-01'))).toBe('MTASTS_TXT_INVALID');
    expect(codeOf(() => parseStsTxtRecord('v=STSv1; id=abc_def'))).toBe('MTASTS_TXT_INVALID');
    expect(codeOf(() => parseStsTxtRecord('v=STSv1;'))).toBe('MTASTS_TXT_INVALID');
    expect(codeOf(() => parseStsTxtRecord('v=STSv1; foo=bar'))).toBe('MTASTS_TXT_INVALID');
    expect(codeOf(() => parseStsTxtRecord('v=STSv1; id=abc def'))).toBe('MTASTS_TXT_INVALID');
    expect(codeOf(() => parseStsTxtRecord('v=STSv1; id=first; id=not_valid'))).toBe('MTASTS_TXT_INVALID');
    expect(codeOf(() => selectStsTxtRecord([['v=STSv1; id=not valid']]))).toBe('MTASTS_TXT_INVALID');
  });

  it('§3.1 extension fields are ignored but must be well-formed; whitespace is allowed around ";" only', () => {
    const r = parseStsTxtRecord('v=STSv1;  id=abc123 ;\text1=val.ue; x_y-z=1 ;');
    expect(r.id).toBe('abc123');
    expect(r.extensions).toEqual([
      { name: 'ext1', value: 'val.ue' },
      { name: 'x_y-z', value: '1' },
    ]);
    expect(parseStsTxtRecord('v=STSv1;id=abc').id).toBe('abc');
    expect(parseStsTxtRecord('v=STSv1; id=abc; ').id).toBe('abc');
    // sts-id = %s"id=" 1*32(ALPHA / DIGIT): no whitespace around "=".
    for (const bad of ['v=STSv1; id = abc', 'v=STSv1; id =abc', 'v=STSv1; id= abc', 'v=STSv1; id=abc; ext = 1', 'v=STSv1; id=abc; ext=', 'v=STSv1; id=abc;; x=1', 'v=STSv1; id=abc; _x=1', `v=STSv1; id=abc; ${'x'.repeat(33)}=1`, 'v=STSv1; id=abc; x=a=b', 'v=STSv1; ID=abc', 'v=STSv1;; id=abc']) {
      expect(codeOf(() => parseStsTxtRecord(bad)), bad).toBe('MTASTS_TXT_INVALID');
    }
    expect(parseStsTxtRecord(`v=STSv1; id=abc; ${'x'.repeat(32)}=1`).extensions).toHaveLength(1);
  });

  it('§3.1 the first id field counts when repeated', () => {
    expect(parseStsTxtRecord('v=STSv1; id=first; id=second').id).toBe('first');
  });

  it('§3.1 the parser never throws anything but MtaStsError and never hangs (property)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 300 }), fc.string({ maxLength: 100 }).map((s) => `v=STSv1;${s}`)), (text) => {
        try {
          const r = parseStsTxtRecord(text);
          expect(r.id).toMatch(/^[A-Za-z0-9]{1,32}$/);
        } catch (error) {
          expect(error).toBeInstanceOf(MtaStsError);
          expect((error as MtaStsError).code).toBe('MTASTS_TXT_INVALID');
        }
      }),
      { numRuns: 2000 },
    );
  });

  // Generators by the §3.1 ABNF.
  const wsp = fc.stringMatching(/^[ \t]{0,2}$/);
  const delim = fc.tuple(wsp, wsp).map(([a, b]) => `${a};${b}`); // sts-field-delim
  const stsId = fc.stringMatching(/^[A-Za-z0-9]{1,32}$/);
  const extName = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/).filter((n) => n !== 'id');
  const extValue = fc.stringMatching(/^[\x21-\x3a\x3c\x3e-\x7e]{1,20}$/);
  const extension = fc.tuple(extName, extValue);

  it('§3.1 every record the ABNF generates parses, with the first id and every extension (property)', () => {
    fc.assert(
      fc.property(stsId, fc.array(extension, { maxLength: 3 }), fc.array(extension, { maxLength: 3 }), fc.array(delim, { minLength: 8, maxLength: 8 }), fc.boolean(), (id, before, after, delims, trailing) => {
        const fields = [...before.map(([n, v]) => `${n}=${v}`), `id=${id}`, ...after.map(([n, v]) => `${n}=${v}`)];
        const text = `v=STSv1${fields.map((f, i) => `${delims[i]}${f}`).join('')}${trailing ? delims[7] : ''}`;
        expect(isStsTxtRecord(text)).toBe(true);
        const r = parseStsTxtRecord(text);
        expect(r.id).toBe(id);
        expect(r.extensions).toEqual([...before, ...after].map(([name, value]) => ({ name, value })));
      }),
      { numRuns: 1000 },
    );
  });

  it('§3.1 whitespace around "=" makes a generated record invalid (property)', () => {
    fc.assert(
      fc.property(stsId, fc.constantFrom(' =', '= ', ' = ', '\t='), (id, eq) => {
        expect(codeOf(() => parseStsTxtRecord(`v=STSv1; id${eq}${id}`))).toBe('MTASTS_TXT_INVALID');
      }),
      { numRuns: 200 },
    );
  });

  it('rejects oversized records without scanning them', () => {
    expect(codeOf(() => parseStsTxtRecord(`v=STSv1; id=a; x=${'b'.repeat(10_000)}`))).toBe('MTASTS_TXT_INVALID');
  });
});
