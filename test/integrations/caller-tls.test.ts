/**
 * Issue 16 item 2: in a session validated under an `enforce` policy the trust settings are the engine's alone
 * (RFC 8461 §4.2). A guarded transport's `tls` (`ca`, `checkServerIdentity`, `rejectUnauthorized`, `minVersion`,
 * `servername`) never applies there, a `secureContext` is refused at creation, and the client identity (`cert`, `key`,
 * `pfx`, `passphrase`) is still presented, by the guard and through the hooks' `tlsOptionsFor(candidate, client)`.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { createSecureContext, type TLSSocket } from 'node:tls';
import nodemailer from 'nodemailer';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { SMTPServer } from 'smtp-server';
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMtaSts, type MtaSts } from '../../src/index.js';
import { createMtaStsHooks } from '../../src/integrations/hooks.js';
import { guardTransport, type MtaStsSentMessageInfo } from '../../src/integrations/nodemailer/index.js';
import type { MxHostOptions, TestWorld } from '../../src/testing/index.js';
import { FAST, mail, sendError, startWorld, stopWorld } from './helpers.js';

let world: TestWorld;
/** Trusts the world's CA (the test world's usual engine). */
let engine: MtaSts;
/** Trusts Node's roots only, as in production without `ca`; fetches policies through a dispatcher that trusts the world. */
let nodeRootsEngine: MtaSts;
let policyAgent: Agent;

beforeAll(async () => {
  ({ world, engine } = await startWorld());
  // The world's policy hosts all answer on 127.0.0.1 (world.publishPolicy), with certificates from the world's CA.
  const lookup = (_host: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) =>
    options?.all ? callback(null, [{ address: '127.0.0.1', family: 4 }]) : callback(null, '127.0.0.1', 4);
  policyAgent = new Agent({ connect: { ca: world.ca.rootPem, lookup: lookup as never } });
  const { dnsServers } = world.mtaStsOptions();
  nodeRootsEngine = createMtaSts({ dnsServers, httpsPort: world.httpsPort, dispatcher: policyAgent, fetchTimeoutMs: 3000, dnsTimeoutMs: 2000 });
});
afterAll(async () => {
  await nodeRootsEngine?.close();
  await policyAgent?.close();
  await stopWorld(world, engine);
});

const ENFORCE = (mx: string[]) => ({ id: 'ct', mode: 'enforce' as const, mx, maxAge: 86400 });

function guardedSend(host: string, tls: Record<string, unknown>, mtaSts: MtaSts, port = world.smtpPort) {
  const transporter = nodemailer.createTransport({ host, port, name: 'sender.example', ...FAST, tls } as never);
  guardTransport(transporter, { mtaSts });
  return (m: ReturnType<typeof mail>) => transporter.sendMail(m) as unknown as Promise<MtaStsSentMessageInfo>;
}

interface TrustCase {
  /** The transport's `tls`, given the world (its CA). */
  tls: (w: TestWorld) => Record<string, unknown>;
  engine: 'node-roots' | 'world';
  mx: MxHostOptions;
  resultType?: string;
}

/** Each trust setting on the transport would, if it applied, make the session pass; the engine's settings refuse it. */
const TRUST_CASES: Record<string, TrustCase> = {
  // The issue's run: a CA the engine does not trust, configured on the transport, used to deliver `validated: true`.
  ca: { tls: (w) => ({ ca: [w.ca.rootPem] }), engine: 'node-roots', mx: {}, resultType: 'certificate-not-trusted' },
  rejectUnauthorized: { tls: () => ({ rejectUnauthorized: false }), engine: 'node-roots', mx: {}, resultType: 'certificate-not-trusted' },
  checkServerIdentity: { tls: () => ({ checkServerIdentity: () => undefined }), engine: 'world', mx: { cert: 'wrong-name' }, resultType: 'certificate-host-mismatch' },
  servername: { tls: () => ({ servername: 'wrong-name.invalid' }), engine: 'world', mx: { cert: 'wrong-name' }, resultType: 'certificate-host-mismatch' },
  minVersion: { tls: () => ({ minVersion: 'TLSv1' }), engine: 'world', mx: { tls: 'legacy-only' } },
};

/** Sends to an enforce domain through a guarded transport with one trust setting: refused, nothing delivered. */
async function refusedDespite(key: string): Promise<void> {
  const { tls, engine: which, mx: mxOptions, resultType } = TRUST_CASES[key]!;
  const d = `ct-${key.toLowerCase()}.test`;
  const mx = await world.addMx(d, `mx1.${d}`, mxOptions);
  world.publishPolicy(d, ENFORCE([`mx1.${d}`]));
  const send = guardedSend(`mx1.${d}`, tls(world), which === 'world' ? engine : nodeRootsEngine);
  const error = await sendError(() => send(mail(`ann@${d}`)));
  expect(error).toMatchObject({ code: 'EMTASTS', responseCode: 451, temporary: true });
  expect(error.attempts[0]).toMatchObject({ mx: `mx1.${d}`, outcome: 'refused' });
  if (resultType) expect(error.attempts[0]).toMatchObject({ resultType });
  expect(mx.messages).toHaveLength(0);
  expect(mx.mailFrom).toHaveLength(0);
}

describe.concurrent('issue 16 item 2: a guarded transport\'s trust settings never apply in a validated session (RFC 8461 §4.2)', () => {
  it('tls.ca on the transport: refused under enforce, nothing delivered', () => refusedDespite('ca'));
  it('tls.rejectUnauthorized on the transport: refused under enforce, nothing delivered', () => refusedDespite('rejectUnauthorized'));
  it('tls.checkServerIdentity on the transport: refused under enforce, nothing delivered', () => refusedDespite('checkServerIdentity'));
  it('tls.servername on the transport: refused under enforce, nothing delivered', () => refusedDespite('servername'));
  it('tls.minVersion on the transport: refused under enforce, nothing delivered', () => refusedDespite('minVersion'));

  it('the same transport settings still apply outside enforce (testing: as without MTA-STS)', async () => {
    const d = 'ct-testing.test';
    const mx = await world.addMx(d, `mx1.${d}`);
    world.publishPolicy(d, { id: 't', mode: 'testing', mx: [`mx1.${d}`], maxAge: 86400 });
    const info = await guardedSend(`mx1.${d}`, { ca: [world.ca.rootPem] }, nodeRootsEngine)(mail(`bob@${d}`));
    expect(info.mtaSts[d]).toMatchObject({ status: 'delivered', mode: 'testing' });
    expect(mx.messages).toEqual([expect.objectContaining({ secure: true })]);
  });

  it('tls.secureContext on a guarded transport is refused at creation, with a pointer to tls.cert and tls.key', () => {
    const transporter = nodemailer.createTransport({ host: 'mx1.ct-context.test', port: world.smtpPort, tls: { secureContext: createSecureContext({ ca: world.ca.rootPem }) } } as never);
    expect(() => guardTransport(transporter, { mtaSts: engine })).toThrow(
      expect.objectContaining({ code: 'MTASTS_INVALID_OPTIONS', message: expect.stringMatching(/transporter\.options\.tls\.secureContext must be not set.*tls\.cert and tls\.key/) }),
    );
  });
});

/** An MX host (smtp-server) that asks for a client certificate and notes the one it gets. */
async function clientCertMx(domain: string) {
  const host = `mx1.${domain}`;
  const issued = world.ca.certFor(host);
  const seen: Array<string | undefined> = [];
  const server = new SMTPServer({
    key: issued.keyPem,
    cert: issued.certPem,
    requestCert: true,
    rejectUnauthorized: false,
    authOptional: true,
    logger: false,
    onSecure(socket, _session, callback) {
      const peer = (socket as TLSSocket).getPeerCertificate();
      seen.push(peer && peer.subject ? String(peer.subject.CN) : undefined);
      callback();
    },
    onData(stream, _session, callback) {
      stream.resume();
      stream.on('end', () => callback());
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.server.address() as AddressInfo).port;
  world.dns.addRecords(host, { a: ['127.0.0.1'] });
  world.dns.addRecords(domain, { mx: [{ exchange: host, priority: 10 }] });
  world.publishPolicy(domain, ENFORCE([host]));
  return { host, port, seen, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

const client = () => world.ca.issue({ names: ['sender.example'], extKeyUsage: ['clientAuth'] });

describe.concurrent('issue 16 item 2: the client identity is still presented in a validated session', () => {
  const identities: Record<string, () => Record<string, unknown>> = {
    'cert and key': () => {
      const c = client();
      return { cert: c.certPem, key: c.keyPem };
    },
    'cert, an encrypted key and its passphrase': () => {
      const c = client();
      const key = createPrivateKey(c.keyPem).export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'secret' }).toString();
      return { cert: c.certPem, key, passphrase: 'secret' };
    },
  };

  /** Delivers through a guarded transport with a client identity (and another CA, which must not apply). */
  async function presented(name: string, domain: string): Promise<void> {
    const mx = await clientCertMx(domain);
    try {
      const send = guardedSend(mx.host, { ...identities[name]!(), ca: [world.ca.certFor('other.invalid', 'self-signed').certPem] }, engine, mx.port);
      const info = await send(mail(`cy@${domain}`));
      expect(info.mtaSts[domain]).toMatchObject({ status: 'delivered', mode: 'enforce', validated: true });
      expect(mx.seen).toEqual(['sender.example']);
    } finally {
      await mx.close();
    }
  }

  it('guard: tls cert and key reach an MX that asks for a client certificate, with the engine\'s trust settings', () => presented('cert and key', 'ct-mtls-key.test'));
  it('guard: tls cert, an encrypted key and its passphrase reach an MX that asks for a client certificate, with the engine\'s trust settings', () => presented('cert, an encrypted key and its passphrase', 'ct-mtls-passphrase.test'));

  it('hooks: tlsOptionsFor(candidate, { cert, key }) adds the client certificate to the engine\'s options and refuses trust settings', async () => {
    const mx = await clientCertMx('ct-mtls-hooks.test');
    const hooks = createMtaStsHooks({ mtaSts: engine });
    try {
      const plan = await hooks.planDelivery('ct-mtls-hooks.test');
      const candidate = plan.allowed[0]!;
      const c = client();
      const options = hooks.tlsOptionsFor(candidate, { cert: c.certPem, key: c.keyPem });
      expect(options).toMatchObject({ servername: mx.host, minVersion: 'TLSv1.2', rejectUnauthorized: true, cert: c.certPem, key: c.keyPem });
      expect(options.secureContext).toBeUndefined();
      // A custom client (here Nodemailer's SMTP client driven by hand) with exactly these options.
      const connection = new SMTPConnection({ host: '127.0.0.1', port: mx.port, name: 'sender.example', requireTLS: true, tls: options, ...FAST });
      connection.on('error', () => undefined);
      await new Promise<void>((resolve, reject) => connection.connect((error?: Error) => (error ? reject(error) : resolve())));
      expect(hooks.verifySession(candidate, connection._socket as TLSSocket)).toMatchObject({ proceed: true });
      await new Promise<void>((resolve, reject) => connection.send({ from: 'a@sender.example', to: ['cy@ct-mtls-hooks.test'] }, 'Subject: x\r\n\r\nhi\r\n', (error) => (error ? reject(error) : resolve())));
      connection.quit();
      expect(mx.seen).toEqual(['sender.example']);
      expect(new X509Certificate(c.certPem).subject).toMatch(/CN=sender\.example/);
      for (const bad of [{ ca: world.ca.rootPem }, { rejectUnauthorized: false }, { secureContext: createSecureContext({}) }, { sevrername: 'x' }]) {
        expect(() => hooks.tlsOptionsFor(candidate, bad as never)).toThrow(expect.objectContaining({ code: 'MTASTS_INVALID_OPTIONS' }));
      }
    } finally {
      await hooks.close();
      await mx.close();
    }
  });
});
