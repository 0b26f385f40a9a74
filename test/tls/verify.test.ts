import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { createMtaSts, type MtaSts } from '../../src/engine.js';
import { certificateMatchesHost } from '../../src/tls/host-identity.js';
import { verifyTls } from '../../src/tls/verify.js';
import { probeStartTls } from '../../src/tls/starttls-probe.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';

let world: TestWorld;
let mta: MtaSts;
beforeAll(async () => {
  world = await createTestWorld();
  mta = createMtaSts(world.mtaStsOptions());
});
afterAll(async () => {
  await mta?.close();
  await world?.close();
});

async function probe(domain: string, host: string, opts: Parameters<TestWorld['addMx']>[2], strict = true) {
  const mx = await world.addMx(domain, host, opts);
  return probeStartTls(host, { address: mx.ip, smtpPort: world.smtpPort, tls: mta.tlsOptions(host, strict), timeoutMs: 5000 });
}

describe('RFC 8461 §4.2 MX certificate validation', () => {
  it('§4.2 a valid certificate over TLS 1.2+ passes', async () => {
    const r = await probe('e1.test', 'mx.e1.test', {});
    expect(r.starttlsOffered).toBe(true);
    expect(r.verification.ok).toBe(true);
    expect(['TLSv1.2', 'TLSv1.3']).toContain(r.protocol);
  });

  it('§4.2 an MX that does not offer STARTTLS: starttls-not-supported', async () => {
    const r = await probe('e1b.test', 'mx.e1b.test', { starttls: false });
    expect(r.starttlsOffered).toBe(false);
    expect(r.verification).toMatchObject({ ok: false, resultType: 'starttls-not-supported' });
  });

  it('§4.2 an MX that only speaks TLS 1.0/1.1 is refused', async () => {
    const r = await probe('e1c.test', 'mx.e1c.test', { tls: 'legacy-only' });
    expect(r.verification.ok).toBe(false);
    expect(r.verification.resultType).toBe('validation-failure');
  });

  it('§4.2 an expired certificate: certificate-expired', async () => {
    const r = await probe('e1d.test', 'mx.e1d.test', { cert: 'expired' });
    expect(r.verification).toMatchObject({ ok: false, resultType: 'certificate-expired' });
  });

  it('§4.2 a self-signed certificate: certificate-not-trusted', async () => {
    const r = await probe('e1e.test', 'mx.e1e.test', { cert: 'self-signed' });
    expect(r.verification).toMatchObject({ ok: false, resultType: 'certificate-not-trusted' });
  });

  it('§4.2 a certificate for another name: certificate-host-mismatch', async () => {
    const r = await probe('e2.test', 'mx.e2.test', { cert: 'wrong-name' });
    expect(r.verification).toMatchObject({ ok: false, resultType: 'certificate-host-mismatch' });
  });

  it('§4.2 no Common Name fallback: a CN-only certificate is a host mismatch', async () => {
    const r = await probe('e2b.test', 'mx.e2b.test', { cert: 'cn-only' });
    expect(r.verification).toMatchObject({ ok: false, resultType: 'certificate-host-mismatch' });
  });

  it('§4.2 connecting by IP still verifies against the MX host name', async () => {
    const mx = await world.addMx('e3.test', 'mx.e3.test', {});
    const right = await probeStartTls('mx.e3.test', { address: mx.ip, smtpPort: world.smtpPort, tls: mta.tlsOptions('mx.e3.test'), timeoutMs: 5000 });
    expect(right.verification.ok).toBe(true);
    // The same IP dialled for another host name must not validate.
    const wrong = await probeStartTls('other.e3.test', { address: mx.ip, smtpPort: world.smtpPort, tls: mta.tlsOptions('other.e3.test'), timeoutMs: 5000 });
    expect(wrong.verification).toMatchObject({ ok: false, resultType: 'certificate-host-mismatch' });
  });

  it('§5 testing: a non-strict handshake completes and verifyTls reports what failed', async () => {
    const r = await probe('e-testing.test', 'mx.e-testing.test', { cert: 'expired' }, false);
    expect(r.protocol).toMatch(/^TLSv1\.[23]$/);
    expect(r.verification).toMatchObject({ ok: false, resultType: 'certificate-expired' });
  });

  it('the probe observes the cipher and the certificate, also when the chain fails (strict and testing handshakes)', async () => {
    const strict = await probe('e-observe.test', 'mx.e-observe.test', { cert: 'expired' }, true);
    const testing = await probeStartTls('mx.e-observe.test', { address: strict.address, smtpPort: world.smtpPort, tls: mta.tlsOptions('mx.e-observe.test', false), timeoutMs: 5000 });
    for (const r of [strict, testing]) {
      expect(r.verification).toMatchObject({ ok: false, resultType: 'certificate-expired' });
      expect(r.cipher).toMatchObject({ name: expect.any(String), version: expect.stringMatching(/^TLSv1\.[23]$/) });
      expect(r.certificate).toMatchObject({ subjectAltNames: ['mx.e-observe.test'], issuer: expect.stringContaining('CN=') });
      expect(r.certificate!.fingerprint256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
      expect(Date.parse(r.certificate!.validTo)).toBeLessThan(Date.now());
    }
    // A valid certificate: the same description.
    const good = await probe('e-observe2.test', 'mx.e-observe2.test', {});
    expect(good.verification.ok).toBe(true);
    expect(good.certificate?.subjectAltNames).toEqual(['mx.e-observe2.test']);
    expect(Date.parse(good.certificate!.validTo)).toBeGreaterThan(Date.now());
  });

  it('verifyTls with no session is starttls-not-supported; with an old protocol is a validation failure', () => {
    expect(verifyTls('mx.example.test', null)).toMatchObject({ ok: false, resultType: 'starttls-not-supported' });
    expect(verifyTls('mx.example.test', { protocol: 'TLSv1.1', authorized: true })).toMatchObject({ ok: false, resultType: 'validation-failure' });
    expect(verifyTls('mx.example.test', { protocol: 'TLSv1.3', authorized: false, authorizationError: 'CERT_HAS_EXPIRED' })).toMatchObject({ resultType: 'certificate-expired' });
  });
});

describe('§4.2 certificate names (RFC 6125 DNS-ID)', () => {
  it('a wildcard certificate covers exactly one label', async () => {
    const { certPem } = await world.ca.issue({ names: ['*.d4.test'] });
    const cert = new X509Certificate(certPem);
    expect(certificateMatchesHost(cert, 'mx.d4.test')).toBe(true);
    expect(certificateMatchesHost(cert, 'MX.D4.TEST.')).toBe(true);
    expect(certificateMatchesHost(cert, 'a.b.d4.test')).toBe(false);
    expect(certificateMatchesHost(cert, 'd4.test')).toBe(false);
  });

  it('the subject CN is never used', async () => {
    const { certPem } = await world.ca.issue({ names: ['mx.cn.test'], noSan: true, commonName: 'mx.cn.test' });
    expect(certificateMatchesHost(certPem, 'mx.cn.test')).toBe(false);
  });

  it('every subjectAltName DNS-ID counts', async () => {
    const { certPem } = await world.ca.issue({ names: ['a.san.test', 'b.san.test'] });
    expect(certificateMatchesHost(certPem, 'b.san.test')).toBe(true);
    expect(certificateMatchesHost(certPem, 'c.san.test')).toBe(false);
  });
});

describe('§4.2 session info from a client that did its own handshake (TlsSessionInfo)', () => {
  it('the handshake verdict and the peer certificate of a real session are accepted as evidence; a bare certificate is not', async () => {
    const tls = await import('node:tls');
    const mx = await world.addMx('bare2.test', 'mx.bare2.test', {});
    // Connect straight to the SMTP port and upgrade with the engine's options, then hand over what the session knows.
    const net = await import('node:net');
    const socket = net.connect({ host: mx.ip, port: world.smtpPort });
    const read = () => new Promise<string>((resolve) => socket.once('data', (d) => resolve(d.toString())));
    await read();
    socket.write('EHLO client.test\r\n');
    let ehlo = await read();
    while (!/^250 /m.test(ehlo)) ehlo += await read();
    socket.write('STARTTLS\r\n');
    await read();
    const secure = tls.connect({ ...mta.tlsOptions('mx.bare2.test'), socket });
    await new Promise((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject));
    const peer = secure.getPeerCertificate(true);
    const info = { protocol: secure.getProtocol(), authorized: secure.authorized, authorizationError: secure.authorizationError, peerCertificate: peer };
    expect(mta.verifyTls('mx.bare2.test', info)).toMatchObject({ ok: true });
    expect(mta.verifyTls('other.bare2.test', info)).toMatchObject({ ok: false, resultType: 'certificate-host-mismatch' });
    expect(mta.verifyTls('mx.bare2.test', { ...info, peerCertificate: new X509Certificate(world.ca.certFor('mx.bare2.test').certPem) })).toMatchObject({ ok: true });
    // §4.2: the chain verdict is the handshake's; a certificate alone is refused.
    expect(mta.verifyTls('mx.bare2.test', peer as never)).toMatchObject({ ok: false, resultType: 'validation-failure' });
    expect(mta.verifyTls('mx.bare2.test', world.ca.certFor('mx.bare2.test', 'valid').certPem as never)).toMatchObject({ ok: false, resultType: 'validation-failure' });
    expect(mta.verifyTls('mx.bare2.test', { ...info, authorized: false, authorizationError: 'INVALID_CA' })).toMatchObject({ ok: false, resultType: 'certificate-not-trusted' });
    secure.destroy();
  });
});
