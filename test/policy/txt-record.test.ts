import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { isStsTxtRecord, parseStsTxtRecord, selectStsTxtRecord } from '../../src/policy/txt-record.js';
import { MtaStsError } from '../../src/errors.js';
import { codeOf } from '../helpers.js';

describe('RFC 8461 §3.1 TXT record', () => {
  it('§3.1 A2 a record is an STS record only if it begins with "v=STSv1;" (exact case, first)', () => {
    expect(isStsTxtRecord('v=STSv1; id=1')).toBe(true);
    expect(isStsTxtRecord('v=STSv1;id=1')).toBe(true);
    expect(isStsTxtRecord('v=STSv1 ; id=1')).toBe(false);
    expect(isStsTxtRecord('v=STSv1')).toBe(false);
    expect(isStsTxtRecord('v=stsv1; id=1')).toBe(false);
    expect(isStsTxtRecord('id=1; v=STSv1')).toBe(false);
    expect(isStsTxtRecord(' v=STSv1; id=1')).toBe(false);
    expect(isStsTxtRecord('v=STSv10; id=1')).toBe(false);
    expect(isStsTxtRecord('v=spf1 -all')).toBe(false);
  });

  it('§3.1 A2 records that do not begin with v=STSv1; are ignored', () => {
    const record = selectStsTxtRecord([['v=spf1 -all'], ['google-site-verification=abc'], ['v=STSv1 ; id=other'], ['v=STSv1'], ['v=STSv1; id=20240101']]);
    expect(record?.id).toBe('20240101');
    expect(selectStsTxtRecord([['v=spf1 -all']])).toBeUndefined();
    expect(selectStsTxtRecord([])).toBeUndefined();
  });

  it('§3.1 A3 more than one STS record means no usable record (not first-wins)', () => {
    expect(codeOf(() => selectStsTxtRecord([['v=STSv1; id=a1'], ['v=STSv1; id=b2']]))).toBe('MTASTS_TXT_MULTIPLE');
    // A malformed second STS record still counts towards "exactly one".
    expect(codeOf(() => selectStsTxtRecord([['v=STSv1; id=a1'], ['v=STSv1; id=!!']]))).toBe('MTASTS_TXT_MULTIPLE');
  });

  it('§3.1 A4 a record split into several strings is concatenated before parsing', () => {
    expect(selectStsTxtRecord([['v=STSv1; ', 'id=2024', '0101Z9']])?.id).toBe('20240101Z9');
    expect(selectStsTxtRecord([['v=STS', 'v1; id=abc']])?.id).toBe('abc');
  });

  it('§3.1 A5 id is 1-32 characters of [A-Za-z0-9]; missing or invalid id makes the record invalid', () => {
    expect(parseStsTxtRecord('v=STSv1; id=a').id).toBe('a');
    expect(parseStsTxtRecord(`v=STSv1; id=${'A1'.repeat(16)}`).id).toHaveLength(32);
    expect(codeOf(() => parseStsTxtRecord(`v=STSv1; id=${'a'.repeat(33)}`))).toBe('MTASTS_TXT_INVALID');
    expect(codeOf(() => parseStsTxtRecord('v=STSv1; id='))).toBe('MTASTS_TXT_INVALID');
    expect(codeOf(() => parseStsTxtRecord('v=STSv1; id=2024-01-01'))).toBe('MTASTS_TXT_INVALID');
    expect(codeOf(() => parseStsTxtRecord('v=STSv1; id=abc_def'))).toBe('MTASTS_TXT_INVALID');
    expect(codeOf(() => parseStsTxtRecord('v=STSv1;'))).toBe('MTASTS_TXT_INVALID');
        expect(codeOf(() => parseStsTxtRecord('v=STSv1; foo=bar'))).toBe('MTASTS_TXT_INVALID');
    expect(codeOf(() => selectStsTxtRecord([['v=STSv1; id=not valid']]))).toBe('MTASTS_TXT_INVALID');
  });

  it('§3.1 A6 unknown extension fields are ignored; whitespace around separators is allowed', () => {
    const r = parseStsTxtRecord('v=STSv1;  id=abc123 ;\text1=val.ue; x_y-z=1 ;');
    expect(r.id).toBe('abc123');
    expect(r.extensions).toEqual([
      { name: 'ext1', value: 'val.ue' },
      { name: 'x_y-z', value: '1' },
    ]);
    expect(parseStsTxtRecord('v=STSv1;id=abc').id).toBe('abc');
    expect(parseStsTxtRecord('v=STSv1; id = abc').id).toBe('abc');
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

  it('§3.1 valid records round-trip through the parser (property)', () => {
    const id = fc.stringMatching(/^[A-Za-z0-9]{1,32}$/);
    const ws = fc.constantFrom('', ' ', '\t', '  ');
    fc.assert(
      fc.property(id, ws, ws, fc.boolean(), (value, a, b, trailing) => {
        const text = `v=STSv1;${a}id=${value}${b}${trailing ? ';' : ''}`;
        expect(parseStsTxtRecord(text).id).toBe(value);
      }),
      { numRuns: 500 },
    );
  });

  it('rejects oversized records without scanning them', () => {
    expect(codeOf(() => parseStsTxtRecord(`v=STSv1; id=a; x=${'b'.repeat(10_000)}`))).toBe('MTASTS_TXT_INVALID');
  });
});
