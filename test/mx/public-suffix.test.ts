/**
 * Public-suffix knowledge for mx patterns and MX names (src/mx/public-suffix.ts, on the Public Suffix List via tldts).
 */
import { describe, expect, it } from 'vitest';
import { isIpLiteral, unknownTopLevelDomain, wildcardPublicSuffix } from '../../src/mx/public-suffix.js';

describe('wildcardPublicSuffix: a wildcard mx pattern that covers a public suffix (RFC 8461 §4.1)', () => {
  it.each([
    ['*.co.uk', 'co.uk'],
    ['*.com', 'com'],
    ['*.github.io', 'github.io'], // a private suffix of the list: anyone can have a host there
    ['*.test', 'test'],
    ['*.example.com', undefined],
    ['*.mail.protection.outlook.com', undefined],
    ['mx.example.com', undefined],
    ['co.uk', undefined], // not a wildcard
  ] as const)('%s -> %s', (pattern, expected) => {
    expect(wildcardPublicSuffix(pattern)).toBe(expected);
  });
});

describe('unknownTopLevelDomain: a TLD in neither the list nor the special-use names', () => {
  it.each([
    ['mx.example.con', 'con'],
    ['*.example.cmo', 'cmo'],
    ['mx.example.com', undefined],
    ['mx.example.co.uk', undefined],
    ['mx.example.xn--p1ai', undefined], // .рф
    ['mx.good.test', undefined], // RFC 6761 special-use
    ['mx.example', undefined],
    ['printer.local', undefined], // RFC 6762
    ['x.onion', undefined], // RFC 7686
  ] as const)('%s -> %s', (name, expected) => {
    expect(unknownTopLevelDomain(name)).toBe(expected);
  });
});

describe('isIpLiteral', () => {
  it.each([
    ['192.0.2.1', true],
    ['2001:db8::1', true],
    ['[2001:db8::1]', true],
    ['mx.example.com', false],
    ['1.example', false],
  ] as const)('%s -> %s', (value, expected) => {
    expect(isIpLiteral(value)).toBe(expected);
  });
});
