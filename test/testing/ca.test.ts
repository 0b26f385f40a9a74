import { X509Certificate, createPrivateKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CERT_VARIANTS, createTestCa, WRONG_CERT_NAME } from '../../src/testing/index.js';

describe('test CA', () => {
  const ca = createTestCa();
  const root = new X509Certificate(ca.rootPem);

  it('has a self-signed root marked as a CA', () => {
    expect(root.ca).toBe(true);
    expect(root.checkIssued(root)).toBe(true);
    expect(root.verify(root.publicKey)).toBe(true);
    expect(root.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
  });

  it('issues leaf certificates with SAN names, a PKCS#8 key and the serverAuth EKU', () => {
    const issued = ca.issue({ names: ['a.example.test', '*.b.example.test'], commonName: 'leaf', notAfter: new Date(Date.now() + 3_600_000) });
    const leaf = new X509Certificate(issued.certPem);
    expect(leaf.ca).toBe(false);
    expect(leaf.subjectAltName).toBe('DNS:a.example.test, DNS:*.b.example.test');
    expect(leaf.subject).toContain('CN=leaf');
    expect(leaf.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
    expect(leaf.checkIssued(root) && leaf.verify(root.publicKey)).toBe(true);
    expect(leaf.checkHost('x.b.example.test')).toBe('*.b.example.test'); // the matching SAN entry
    expect(leaf.checkPrivateKey(createPrivateKey(issued.keyPem))).toBe(true);
    expect(issued.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(new Date(leaf.validTo).getTime()).toBeLessThan(Date.now() + 2 * 3_600_000);
  });

  it('makes each variant broken in exactly its own way, and caches them', () => {
    const now = Date.now();
    const cert = (variant: (typeof CERT_VARIANTS)[number]) => new X509Certificate(ca.certFor('mx.example.test', variant).certPem);
    const valid = cert('valid');
    expect(valid.checkHost('mx.example.test')).toBe('mx.example.test');
    expect(new Date(valid.validFrom).getTime()).toBeLessThan(now);
    expect(cert('wrong-name').subjectAltName).toBe(`DNS:${WRONG_CERT_NAME}`);
    expect(new Date(cert('expired').validTo).getTime()).toBeLessThan(now);
    expect(new Date(cert('not-yet-valid').validFrom).getTime()).toBeGreaterThan(now);
    expect(cert('self-signed').checkIssued(root)).toBe(false);
    expect(cert('self-signed').verify(cert('self-signed').publicKey)).toBe(true);
    expect(cert('cn-only').subjectAltName).toBeUndefined();
    expect(cert('cn-only').subject).toContain('CN=mx.example.test');
    for (const variant of CERT_VARIANTS.filter((v) => v !== 'self-signed')) expect(cert(variant).checkIssued(root)).toBe(true);
    expect(ca.certFor('MX.example.test.')).toBe(ca.certFor('mx.example.test', 'valid'));
  });

  it('another CA is not trusted by this one', () => {
    const other = createTestCa();
    expect(new X509Certificate(other.certFor('mx.example.test').certPem).checkIssued(root)).toBe(false);
    expect(() => ca.issue({ names: [] })).toThrow(TypeError);
  });
});
