/**
 * The policy host's name check (RFC 8461 §3.3, RFC 6125 §6.4.1): an exact subjectAltName DNS entry is accepted
 * without re-parsing the certificate; everything else goes to the full (strict) check.
 */
import { describe, expect, it } from 'vitest';
import type { PeerCertificate } from 'node:tls';
import { sanListsHostExactly } from '../../src/discovery/fetch-policy.js';

const cert = (subjectaltname: string | undefined) => ({ subjectaltname }) as unknown as PeerCertificate;

describe('sanListsHostExactly', () => {
  it('matches a DNS entry equal to the host, in any position and case', () => {
    expect(sanListsHostExactly('mta-sts.example.com', cert('DNS:mta-sts.example.com'))).toBe(true);
    expect(sanListsHostExactly('mta-sts.example.com', cert('DNS:a.example.com, DNS:MTA-STS.Example.COM, IP Address:192.0.2.1'))).toBe(true);
  });

  it('never matches a suffix, a prefix, a wildcard, another type or a quoted entry that contains the name', () => {
    expect(sanListsHostExactly('mta-sts.example.com', cert('DNS:evil-mta-sts.example.com'))).toBe(false);
    expect(sanListsHostExactly('mta-sts.example.com', cert('DNS:mta-sts.example.com.evil'))).toBe(false);
    expect(sanListsHostExactly('mta-sts.example.com', cert('DNS:*.example.com'))).toBe(false); // left to the full check
    expect(sanListsHostExactly('mta-sts.example.com', cert('URI:mta-sts.example.com'))).toBe(false);
    expect(sanListsHostExactly('mta-sts.example.com', cert('DNS:"x, DNS:mta-sts.example.com"'))).toBe(false);
    expect(sanListsHostExactly('mta-sts.example.com', cert(undefined))).toBe(false);
    expect(sanListsHostExactly('', cert('DNS:'))).toBe(false);
  });
});
