/**
 * RFC 8461 §4.2 / §3.3: certificate path validation is OpenSSL's, in the TLS handshake; the library never judges a
 * chain itself. Each broken chain of the test CA is presented by a real MX host (after STARTTLS) and by a real
 * policy host (HTTPS), and must be rejected: a non-CA issuer, an issuer without keyCertSign, a path-length
 * violation, a leaf without serverAuth, an expired or not-yet-valid intermediate. A correct chain through an
 * intermediate is accepted. A bare certificate is no evidence at all and is refused.
 */
import { X509Certificate } from 'node:crypto';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as root from '../../src/index.js';
import { createMtaSts, type MtaSts } from '../../src/engine.js';
import { createMtaStsHooks } from '../../src/integrations/hooks.js';
import { probeStartTls } from '../../src/tls/starttls-probe.js';
import { verifyTls } from '../../src/tls/verify.js';
import { createTestWorld, type CertVariant, type TestWorld } from '../../src/testing/index.js';

let world: TestWorld;
let mta: MtaSts;
beforeAll(async () => {
  world = await createTestWorld();
  mta = createMtaSts({ ...world.mtaStsOptions(), systemRoots: false, fetchBackoffMs: 0 });
});
afterAll(async () => {
  await mta?.close();
  await world?.close();
});

/** Each broken chain, and the RFC 8460 §4.3.1 result type OpenSSL's verdict maps to. */
const BROKEN: ReadonlyArray<[CertVariant, string, string]> = [
  ['issuer-leaf', 'a leaf signed by an ordinary leaf of the trusted root (forged chain)', 'validation-failure'],
  ['issuer-not-ca', 'an issuer that is CA:FALSE although it claims keyCertSign', 'certificate-not-trusted'],
  ['issuer-no-keycertsign', 'an intermediate without keyCertSign', 'validation-failure'],
  ['path-length-exceeded', 'a path-length violation (pathLenConstraint 0 with a CA below)', 'certificate-not-trusted'],
  ['client-auth-only', 'a leaf whose extendedKeyUsage is clientAuth only', 'certificate-not-trusted'],
  ['intermediate-expired', 'an expired intermediate', 'certificate-expired'],
  ['intermediate-not-yet-valid', 'a not-yet-valid intermediate', 'validation-failure'],
];

/** Upgrades an SMTP session to TLS with the engine's options (strict or not) and returns the TLS socket. */
async function starttls(host: string, ip: string, strict: boolean): Promise<tls.TLSSocket> {
  const socket = net.connect({ host: ip, port: world.smtpPort });
  let buffer = '';
  const reply = () =>
    new Promise<string>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        buffer += chunk.toString('latin1');
        const match = /^\d{3} .*\r\n/m.exec(buffer);
        if (!match) return;
        socket.off('data', onData);
        const end = match.index + match[0].length;
        const text = buffer.slice(0, end);
        buffer = buffer.slice(end);
        resolve(text);
      };
      socket.on('data', onData).once('error', reject);
    });
  await reply();
  socket.write('EHLO client.test\r\n');
  await reply();
  socket.write('STARTTLS\r\n');
  await reply();
  const secure = tls.connect({ ...mta.tlsOptions(host, strict), socket });
  await new Promise((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject));
  return secure;
}

describe('RFC 8461 §4.2 MX hosts: OpenSSL validates the chain in the handshake', () => {
  it.each(BROKEN)('§4.2 %s (%s) is rejected by the enforce handshake and by verifyTls in testing mode', async (variant, _what, resultType) => {
    const host = `mx.${variant}.chain.test`;
    const mx = await world.addMx(`${variant}.chain.test`, host, { cert: variant });
    // enforce: the handshake itself fails.
    const strict = await probeStartTls(host, { address: mx.ip, smtpPort: world.smtpPort, tls: mta.tlsOptions(host, true), timeoutMs: 5000 });
    expect(strict.protocol).toBeUndefined();
    expect(strict.verification).toMatchObject({ ok: false, resultType });
    // testing: the session completes; the verdict (OpenSSL's authorizationError) still fails.
    const session = await starttls(host, mx.ip, false);
    try {
      expect(session.authorized).toBe(false);
      expect(mta.verifyTls(host, session)).toMatchObject({ ok: false, resultType });
      expect(verifyTls(host, { protocol: session.getProtocol(), authorized: session.authorized, authorizationError: session.authorizationError, peerCertificate: session.getPeerCertificate() })).toMatchObject({ ok: false, resultType });
    } finally {
      session.destroy();
    }
  });

  it('§4.2 the hooks refuse a forged chain under enforce (verifySession on the real session)', async () => {
    const mx = await world.addMx('hooks.chain.test', 'mx.hooks.chain.test', { cert: 'issuer-leaf' });
    world.publishPolicy('hooks.chain.test', { id: 'c1', mode: 'enforce', mx: ['mx.hooks.chain.test'], maxAge: 86400 });
    const hooks = createMtaStsHooks({ mtaSts: mta });
    const plan = await hooks.planDelivery('hooks.chain.test');
    const candidate = plan.allowed[0]!;
    const session = await starttls(candidate.host, mx.ip, false);
    try {
      expect(hooks.verifySession(candidate, session)).toMatchObject({ proceed: false, success: false });
    } finally {
      session.destroy();
    }
  });

  it('§4.2 a correct chain through an intermediate CA is accepted', async () => {
    const host = 'mx.via-intermediate.chain.test';
    const mx = await world.addMx('via-intermediate.chain.test', host, { cert: 'via-intermediate' });
    const strict = await probeStartTls(host, { address: mx.ip, smtpPort: world.smtpPort, tls: mta.tlsOptions(host, true), timeoutMs: 5000 });
    expect(strict.verification).toMatchObject({ ok: true });
    const session = await starttls(host, mx.ip, true);
    try {
      expect(mta.verifyTls(host, session)).toMatchObject({ ok: true });
    } finally {
      session.destroy();
    }
  });
});

describe('RFC 8461 §3.3 policy hosts: OpenSSL validates the chain of the HTTPS server', () => {
  it.each(BROKEN)('§3.3 a policy host presenting %s (%s) yields no policy', async (variant) => {
    const domain = `p-${variant}.chain.test`;
    world.publishPolicy(domain, { id: 'p1', mode: 'enforce', mx: [`mx.${domain}`], maxAge: 86400, host: { kind: 'cert', cert: variant } });
    const lookup = await mta.getPolicy(domain);
    expect(lookup.status).not.toBe('policy');
    expect(lookup.error).toMatchObject({ code: 'MTASTS_WEBPKI_INVALID', resultType: 'sts-webpki-invalid' });
  });

  it('§3.3 a policy host with a correct chain through an intermediate CA serves its policy', async () => {
    world.publishPolicy('p-via.chain.test', { id: 'p1', mode: 'enforce', mx: ['mx.p-via.chain.test'], maxAge: 86400, host: { kind: 'cert', cert: 'via-intermediate' } });
    expect(await mta.getPolicy('p-via.chain.test')).toMatchObject({ status: 'policy', policy: { mode: 'enforce' } });
  });
});

describe('§4.2 a bare certificate is not evidence (no hand-written path validation)', () => {
  it('verifyTls refuses a forged chain handed over as certificates (leaf with its issuer chain attached)', () => {
    const host = 'mx.forged.chain.test';
    // What a client could assemble from the chain the server presented: the leaf, its issuer (an ordinary leaf of
    // the trusted root, CA:FALSE), as Node's DetailedPeerCertificate links them.
    const [leaf, issuer] = world.ca.certFor(host, 'issuer-leaf').certPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!;
    const rootCert = { raw: new X509Certificate(world.ca.rootPem).raw } as Record<string, unknown>;
    rootCert.issuerCertificate = rootCert;
    const detailed = { raw: new X509Certificate(leaf!).raw, issuerCertificate: { raw: new X509Certificate(issuer!).raw, issuerCertificate: rootCert } };
    expect(mta.verifyTls(host, detailed as never)).toMatchObject({ ok: false, resultType: 'validation-failure' });
    expect(mta.verifyTls(host, leaf as never)).toMatchObject({ ok: false, resultType: 'validation-failure' });
  });

  it('verifyTls refuses a bare certificate without serverAuth (clientAuth only)', () => {
    expect(mta.verifyTls('mx.bare.chain.test', world.ca.certFor('mx.bare.chain.test', 'client-auth-only').certPem as never)).toMatchObject({ ok: false });
  });

  it('the hand-written chain check is gone from the public API', () => {
    expect(Object.keys(root)).not.toContain('TrustStore');
    expect(Object.keys(root)).not.toContain('verifyCertificate');
  });
});
