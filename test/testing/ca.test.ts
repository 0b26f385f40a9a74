import { X509Certificate, createPrivateKey } from 'node:crypto';
import forge from 'node-forge';
import { describe, expect, it } from 'vitest';
import { CERT_VARIANTS, createTestCa, WRONG_CERT_NAME } from '../../src/testing/index.js';

describe('test CA', () => {
  const ca = createTestCa();
  const root = new X509Certificate(ca.rootPem);

  it('has a self-signed root marked as a CA', () => {
    expect(root.ca).toBe(true);
    expect(root.checkIssued(root)).toBe(true);
    expect(root.verify(root.publicKey)).toBe(true);
    expect(ca.rootPem).toMatch(/^-----BEGIN CERTIFICATE-----\n([A-Za-z0-9+/=]{1,64}\n)+-----END CERTIFICATE-----\n$/);
    expect(root.publicKey.asymmetricKeyType).toBe('rsa');
    expect(root.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
    const parsed = forge.pki.certificateFromPem(ca.rootPem);
    expect(parsed.signatureOid).toBe(forge.pki.oids.sha256WithRSAEncryption);
    expect(parsed.getExtension('basicConstraints')).toMatchObject({ critical: true, cA: true });
    expect(parsed.getExtension('keyUsage')).toMatchObject({ critical: true, keyCertSign: true, cRLSign: true, digitalSignature: false });
    expect(parsed.getExtension('subjectKeyIdentifier')).toMatchObject({ subjectKeyIdentifier: parsed.generateSubjectKeyIdentifier().toHex() });
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
    const parsed = forge.pki.certificateFromPem(issued.certPem);
    expect(parsed.signatureOid).toBe(forge.pki.oids.sha256WithRSAEncryption);
    expect(parsed.getExtension('basicConstraints')).toMatchObject({ critical: true, cA: false });
    expect(parsed.getExtension('keyUsage')).toMatchObject({ critical: true, digitalSignature: true, keyEncipherment: true, keyCertSign: false });
    expect(parsed.getExtension('extKeyUsage')).toMatchObject({ serverAuth: true });
    const rootKeyId = forge.pki.certificateFromPem(ca.rootPem).generateSubjectKeyIdentifier().getBytes();
    const aki = parsed.getExtension('authorityKeyIdentifier') as { value: string };
    expect(forge.asn1.fromDer(aki.value).value).toEqual([expect.objectContaining({ type: 0, value: rootKeyId })]); // [0] keyIdentifier
  });

  it('gives certificates random, positive serial numbers', () => {
    const serials = [1, 2, 3].map(() => new X509Certificate(ca.issue({ names: ['serial.example.test'] }).certPem).serialNumber);
    expect(new Set(serials).size).toBe(3);
    for (const serial of serials) expect(serial).toMatch(/^[4-7][0-9A-F]{31}$/);
  });

  it('shares one key among CA-issued leaves and another among self-signed ones (test certificates: speed)', () => {
    const keyOf = (variant: (typeof CERT_VARIANTS)[number], host = 'keys.example.test') => ca.certFor(host, variant).keyPem;
    expect(keyOf('expired')).toBe(keyOf('valid'));
    expect(keyOf('valid', 'other.example.test')).toBe(keyOf('valid'));
    expect(keyOf('self-signed', 'other.example.test')).toBe(keyOf('self-signed'));
    expect(keyOf('self-signed')).not.toBe(keyOf('valid'));
    expect(createTestCa().certFor('keys.example.test').keyPem).not.toBe(keyOf('valid'));
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
