/**
 * guardTransport() on Nodemailer's own SMTP transport, against the loopback world. Where the transport's host is an
 * MX host of the recipient domain, the domain's policy is enforced; where it is a smart host, the smart host's name
 * is the policy domain (RFC 8461 §3.4) and its policy is applied to the hop; a smart host given by IP has none.
 */
import net from 'node:net';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMtaSts, type MtaSts } from '../../src/engine.js';
import { guardTransport, type GuardTransportOptions, type MtaStsSentMessageInfo, type SmartHostNotice } from '../../src/integrations/nodemailer/index.js';
import { createMtaStsHooks, type MtaStsDecision } from '../../src/integrations/hooks.js';
import type { TestWorld } from '../../src/testing/index.js';
import { engineOptions, FAST, mail, MemoryRecorder, startWorld, stopWorld, sendError } from './helpers.js';

let world: TestWorld;
let engine: MtaSts;

beforeAll(async () => {
  ({ world, engine } = await startWorld());
});
afterAll(async () => {
  await stopWorld(world, engine);
});

function guarded(transportOptions: Record<string, unknown>, guardOptions: GuardTransportOptions = {}) {
  const transporter = nodemailer.createTransport({ port: world.smtpPort, name: 'sender.example', ...FAST, ...transportOptions } as never);
  const recorder = new MemoryRecorder();
  // Given hooks carry their own engine and recorder (the guard refuses options it would leave unused).
  const guard = guardTransport(transporter, guardOptions.hooks ? guardOptions : { mtaSts: engine, recorder, ...guardOptions });
  const decisions: MtaStsDecision[] = [];
  const smartHost: SmartHostNotice[] = [];
  guard.on('decision', (d: MtaStsDecision) => decisions.push(d));
  guard.on('smart-host', (n: SmartHostNotice) => smartHost.push(n));
  const send = (m: ReturnType<typeof mail>) => transporter.sendMail(m) as unknown as Promise<MtaStsSentMessageInfo>;
  return { transporter, guard, recorder, decisions, smartHost, send };
}


const ENFORCE = (mx: string[], id = 'g1') => ({ id, mode: 'enforce' as const, mx, maxAge: 86400 });

describe.concurrent('guardTransport: the transport points at an MX host of the recipient domain (RFC 8461 §4, §5)', () => {
  it('§4.2 enforce: delivered over validated TLS with SNI = the host, even though the transport said ignoreTLS', async () => {
    const mx = await world.addMx('g-valid.test', 'mx1.g-valid.test');
    world.publishPolicy('g-valid.test', ENFORCE(['mx1.g-valid.test']));
    const { send, recorder } = guarded({ host: 'mx1.g-valid.test', ignoreTLS: true, tls: { rejectUnauthorized: false } });
    const info = await send(mail('ann@g-valid.test'));
    expect(mx.messages).toHaveLength(1);
    expect(mx.messages[0]).toMatchObject({ secure: true, sni: 'mx1.g-valid.test', recipients: ['ann@g-valid.test'] });
    expect(info.accepted).toEqual(['ann@g-valid.test']);
    expect(info.mtaSts['g-valid.test']).toMatchObject({ mode: 'enforce', mx: 'mx1.g-valid.test', validated: true });
    expect(recorder.of('g-valid.test')[0]).toMatchObject({ success: true, policy: { type: 'sts' } });
  });

  it('§4.2 enforce: an expired certificate is refused though the transport has rejectUnauthorized: false; nothing arrives', async () => {
    const mx = await world.addMx('g-expired.test', 'mx1.g-expired.test', { cert: 'expired' });
    world.publishPolicy('g-expired.test', ENFORCE(['mx1.g-expired.test']));
    const { send, recorder } = guarded({ host: 'mx1.g-expired.test', tls: { rejectUnauthorized: false } });
    const error = await sendError(() => send(mail('ben@g-expired.test')));
    expect(mx.messages).toHaveLength(0);
    expect(error).toMatchObject({ code: 'EMTASTS', responseCode: 451, temporary: true });
    expect(error.attempts[0]).toMatchObject({ mx: 'mx1.g-expired.test', outcome: 'refused', resultType: 'certificate-expired' });
    expect(recorder.of('g-expired.test')[0]).toMatchObject({ success: false, failure: { resultType: 'certificate-expired' } });
  });

  it('§4.2 enforce: STARTTLS stripped is refused, nothing in plaintext', async () => {
    const mx = await world.addMx('g-plain.test', 'mx1.g-plain.test', { starttls: false });
    world.publishPolicy('g-plain.test', ENFORCE(['mx1.g-plain.test']));
    const { send } = guarded({ host: 'mx1.g-plain.test' });
    const error = await sendError(() => send(mail('cat@g-plain.test')));
    expect(mx.messages).toHaveLength(0);
    expect(error.attempts[0]).toMatchObject({ resultType: 'starttls-not-supported' });
  });

  it('§4.1 enforce: the host is in the MX records but not in the policy: refused without connecting', async () => {
    const rogue = await world.addMx('g-rogue.test', 'mx.rogue-host.test');
    world.publishPolicy('g-rogue.test', ENFORCE(['mx1.g-rogue.test']));
    const { send } = guarded({ host: 'mx.rogue-host.test' });
    const error = await sendError(() => send(mail('dee@g-rogue.test')));
    expect(rogue.connections).toBe(0);
    expect(error).toMatchObject({ code: 'EMTASTS', temporary: true });
    expect(error.attempts[0]).toMatchObject({ outcome: 'skipped', resultType: 'validation-failure' });
  });

  it('§5 testing: the transport behaves as without MTA-STS (its own TLS settings) and the failure is reported', async () => {
    const mx = await world.addMx('g-testing.test', 'mx1.g-testing.test', { cert: 'self-signed' });
    world.publishPolicy('g-testing.test', { id: 't', mode: 'testing', mx: ['mx1.g-testing.test'], maxAge: 86400 });
    // Nodemailer's default verifies certificates: without MTA-STS (and without the plaintext retry) this send fails,
    // so it fails with the guard too.
    const strict = guarded({ host: 'mx1.g-testing.test' }, { plaintextFallback: false });
    const error = await sendError(() => strict.send(mail('fay@g-testing.test')));
    expect(error).toMatchObject({ code: 'ECONNECTION', temporary: true });
    expect(strict.recorder.of('g-testing.test')[0]).toMatchObject({ success: false, failure: { resultType: 'certificate-not-trusted' } });
    // A transport that accepts any certificate delivers; the guard reports what MTA-STS would have refused.
    const lax = guarded({ host: 'mx1.g-testing.test', tls: { rejectUnauthorized: false } });
    const info = await lax.send(mail('fay@g-testing.test', 'lax'));
    expect(mx.messages).toHaveLength(1);
    expect(info.mtaSts['g-testing.test']).toMatchObject({ mode: 'testing', validated: false, resultType: 'certificate-not-trusted' });
    expect(lax.recorder.of('g-testing.test')[0]).toMatchObject({ success: false, failure: { resultType: 'certificate-not-trusted' } });
  });

  it('§3.3 the MX lookup fails but the host matches the cached enforce policy: still enforced', async () => {
    const mx = await world.addMx('g-mxfail.test', 'mx1.g-mxfail.test', { cert: 'self-signed' });
    world.publishPolicy('g-mxfail.test', ENFORCE(['*.g-mxfail.test']));
    await engine.getPolicy('g-mxfail.test');
    world.dns.fail('g-mxfail.test', 'servfail', 'MX');
    try {
      const { send } = guarded({ host: 'mx1.g-mxfail.test' });
      const error = await sendError(() => send(mail('eve@g-mxfail.test')));
      expect(mx.messages).toHaveLength(0);
      expect(error).toMatchObject({ code: 'EMTASTS' });
      expect(error.attempts[0]).toMatchObject({ resultType: 'certificate-not-trusted' });
    } finally {
      world.dns.fail('g-mxfail.test', null, 'MX');
    }
  });
});

describe.concurrent('guardTransport: plaintext retry and session limits, one meaning per option', () => {
  it('plaintextFallback defaults to true (as documented): a testing domain whose handshake fails is retried in plaintext and reported', async () => {
    const mx = await world.addMx('g-fallback.test', 'mx1.g-fallback.test', { cert: 'self-signed' });
    world.publishPolicy('g-fallback.test', { id: 'f', mode: 'testing', mx: ['mx1.g-fallback.test'], maxAge: 86400 });
    const { send, decisions, recorder } = guarded({ host: 'mx1.g-fallback.test' });
    const info = await send(mail('ida@g-fallback.test'));
    expect(mx.messages).toEqual([expect.objectContaining({ secure: false })]);
    expect(info.mtaSts['g-fallback.test']).toMatchObject({ status: 'delivered', mode: 'testing', plaintextFallback: true, resultType: 'certificate-not-trusted' });
    expect(decisions).toContainEqual(expect.objectContaining({ stage: 'session', action: 'fallback-plaintext', domain: 'g-fallback.test' }));
    expect(recorder.of('g-fallback.test')[0]).toMatchObject({ success: false, failure: { resultType: 'certificate-not-trusted' } });
  });

  it('plaintextFallback: false: no retry, and no fallback-plaintext decision for a retry that never happens', async () => {
    const mx = await world.addMx('g-nofallback.test', 'mx1.g-nofallback.test', { cert: 'self-signed' });
    world.publishPolicy('g-nofallback.test', { id: 'f', mode: 'testing', mx: ['mx1.g-nofallback.test'], maxAge: 86400 });
    // Shared hooks allow the retry (their default); this guard does not: the guard's word decides, and the hooks are told.
    const hooks = createMtaStsHooks({ mtaSts: engine });
    const { send, decisions } = guarded({ host: 'mx1.g-nofallback.test' }, { hooks, plaintextFallback: false });
    await sendError(() => send(mail('jo@g-nofallback.test')));
    expect(mx.messages).toHaveLength(0);
    expect(decisions.filter((d) => d.action === 'fallback-plaintext')).toEqual([]);
    expect(decisions).toContainEqual(expect.objectContaining({ stage: 'session', action: 'refuse', domain: 'g-nofallback.test' }));
  });

  it('a transport configured with requireTLS is never retried in plaintext, whatever plaintextFallback says', async () => {
    const mx = await world.addMx('g-reqtls.test', 'mx1.g-reqtls.test', { cert: 'self-signed' });
    const { send, decisions } = guarded({ host: 'mx1.g-reqtls.test', requireTLS: true }, { plaintextFallback: true });
    const error = await sendError(() => send(mail('kim@g-reqtls.test')));
    expect(error).toMatchObject({ temporary: true });
    expect(mx.messages).toHaveLength(0);
    expect(decisions.filter((d) => d.action === 'fallback-plaintext')).toEqual([]);
  });

  it('maxAddressesPerMx and maxSessionsPerDomain are separate limits (maxAddresses no longer doubles as the session limit)', async () => {
    const mx = await world.addMx('g-sessions.test', 'mx1.g-sessions.test');
    // The host's first address refuses connections; the second is the MX.
    world.dns.setRecords('mx1.g-sessions.test', { a: ['127.0.0.77', mx.ip] });
    const oneSession = guarded({ host: 'mx1.g-sessions.test' }, { maxSessionsPerDomain: 1 });
    const error = await sendError(() => oneSession.send(mail('lu@g-sessions.test')));
    expect(error).toMatchObject({ code: 'ECONNECTION', temporary: true });
    expect(error.attempts.map((a) => a.ip)).toEqual(['127.0.0.77']);
    const oneAddress = guarded({ host: 'mx1.g-sessions.test' }, { maxAddressesPerMx: 1, maxSessionsPerDomain: 8 });
    expect((await sendError(() => oneAddress.send(mail('lu@g-sessions.test')))).attempts).toHaveLength(1);
    const defaults = guarded({ host: 'mx1.g-sessions.test' });
    const info = await defaults.send(mail('lu@g-sessions.test'));
    expect(info.mtaSts['g-sessions.test']).toMatchObject({ status: 'delivered', ip: mx.ip });
    expect(mx.messages).toHaveLength(1);
  });
});

/** A `getSocket` that hands Nodemailer a connection to `ip` (the world's names resolve only in its own DNS). */
const socketTo = (ip: string) => (_options: unknown, callback: (error: Error | null, socket?: { connection: net.Socket }) => void) => callback(null, { connection: net.connect(world.smtpPort, ip) });

describe.concurrent('guardTransport: smart host (RFC 8461 §3.4: the smart host domain is the policy domain)', () => {
  it('§3.4 a smart host given by IP has no policy domain: passed through untouched, one warning saying why, relay decisions', async () => {
    const relay = await world.addMx('relay-owner.test', 'relay.smart.test');
    world.publishPolicy('r-enforce.test', ENFORCE(['mx1.r-enforce.test']));
    const { send, smartHost, decisions } = guarded({ host: relay.ip, tls: { servername: 'relay.smart.test', ca: world.ca.rootPem } }, { relay: true });
    const info = await send(mail('fred@r-enforce.test'));
    await send(mail('fred@r-enforce.test', 'again'));
    expect(info.mtaSts['r-enforce.test']).toMatchObject({ status: 'delivered', mode: 'none', relay: { host: relay.ip } });
    expect(info.mtaSts['r-enforce.test']!.policyDomain).toBeUndefined();
    // The relay got both messages (MTA-STS of r-enforce.test governs the relay's onward delivery, not this hop).
    expect(relay.messages.filter((m) => m.recipients.includes('fred@r-enforce.test'))).toHaveLength(2);
    expect(smartHost).toHaveLength(1);
    expect(smartHost[0]).toMatchObject({ host: relay.ip, mode: 'none' });
    expect(smartHost[0]!.policyDomain).toBeUndefined();
    expect(smartHost[0]!.reason).toMatch(/an IP address: it has no policy domain.*RFC 8461 §3\.4/);
    const relayed = decisions.filter((d) => d.stage === 'relay' && d.domain === 'r-enforce.test');
    expect(relayed).toHaveLength(2);
    expect(relayed[0]!.policyDomain).toBeUndefined();
    expect(relayed[0]!.reason).toMatch(/no policy domain/);
  });

  it('§3.4 a smart host by name without an MTA-STS policy: relayed with the transport\'s own settings, the smart host is the policy domain', async () => {
    const relay = await world.addMx('relay2-owner.test', 'relay2.smart.test');
    const mx = await world.addMx('r2-enforce.test', 'mx1.r2-enforce.test');
    world.publishPolicy('r2-enforce.test', ENFORCE(['mx1.r2-enforce.test']));
    const { send, smartHost, decisions } = guarded({ host: 'relay2.smart.test', getSocket: socketTo(relay.ip), tls: { ca: world.ca.rootPem } }, { relay: true });
    const info = await send(mail('gil@r2-enforce.test'));
    expect(info.accepted).toEqual(['gil@r2-enforce.test']);
    expect(relay.messages).toHaveLength(1);
    expect(mx.connections).toBe(0);
    expect(info.mtaSts['r2-enforce.test']).toMatchObject({ status: 'delivered', mode: 'none', policyStatus: 'none', policyDomain: 'relay2.smart.test', relay: { host: 'relay2.smart.test' } });
    expect(smartHost).toEqual([expect.objectContaining({ host: 'relay2.smart.test', domains: ['r2-enforce.test'], policyDomain: 'relay2.smart.test', mode: 'none' })]);
    expect(decisions).toContainEqual(expect.objectContaining({ stage: 'relay', action: 'relay', domain: 'r2-enforce.test', mode: 'none', mx: 'relay2.smart.test', policyDomain: 'relay2.smart.test' }));
  });

  it('§3.4 enforce: the smart host\'s policy is applied: validated TLS with SNI = the smart host, one transaction, TLS-RPT under its policy domain', async () => {
    const relay = await world.addMx('relay3-owner.test', 'relay3.smart.test');
    world.publishPolicy('relay3.smart.test', ENFORCE(['relay3.smart.test'], 's3'));
    const { send, recorder, decisions, smartHost } = guarded({ host: 'relay3.smart.test', ignoreTLS: true });
    const info = await send(mail(['ann@s3-a.test', 'bob@s3-b.test']));
    expect(info.accepted.sort()).toEqual(['ann@s3-a.test', 'bob@s3-b.test']);
    expect(relay.messages).toHaveLength(1);
    expect(relay.messages[0]).toMatchObject({ secure: true, sni: 'relay3.smart.test' });
    expect(relay.messages[0]!.recipients.sort()).toEqual(['ann@s3-a.test', 'bob@s3-b.test']);
    for (const domain of ['s3-a.test', 's3-b.test']) {
      expect(info.mtaSts[domain]).toMatchObject({ domain, status: 'delivered', mode: 'enforce', policyId: 's3', policyDomain: 'relay3.smart.test', mx: 'relay3.smart.test', validated: true, relay: { host: 'relay3.smart.test' } });
      expect(decisions).toContainEqual(expect.objectContaining({ stage: 'relay', domain, mode: 'enforce', policyId: 's3', policyDomain: 'relay3.smart.test' }));
    }
    expect(recorder.of('relay3.smart.test')).toEqual([expect.objectContaining({ success: true, policy: expect.objectContaining({ type: 'sts', domain: 'relay3.smart.test' }) })]);
    expect(recorder.of('s3-a.test')).toEqual([]);
    expect(smartHost[0]).toMatchObject({ policyDomain: 'relay3.smart.test', mode: 'enforce' });
  });

  it('§3.4 enforce: an expired smart host certificate is refused though the transport accepts any certificate: 451, nothing relayed', async () => {
    const relay = await world.addMx('relay4-owner.test', 'relay4.smart.test', { cert: 'expired' });
    world.publishPolicy('relay4.smart.test', ENFORCE(['relay4.smart.test']));
    const { send, recorder } = guarded({ host: 'relay4.smart.test', getSocket: socketTo(relay.ip), tls: { rejectUnauthorized: false } });
    const error = await sendError(() => send(mail('cat@s4-dest.test')));
    expect(relay.messages).toHaveLength(0);
    expect(error).toMatchObject({ code: 'EMTASTS', responseCode: 451, temporary: true });
    expect(error.attempts[0]).toMatchObject({ mx: 'relay4.smart.test', outcome: 'refused', resultType: 'certificate-expired' });
    expect((error as unknown as MtaStsSentMessageInfo).mtaSts['s4-dest.test']).toMatchObject({ policyDomain: 'relay4.smart.test', mode: 'enforce', relay: { host: 'relay4.smart.test' } });
    expect(recorder.of('relay4.smart.test')[0]).toMatchObject({ success: false, failure: { resultType: 'certificate-expired' } });
  });

  it('§3.4 enforce: a smart host that strips STARTTLS is refused, nothing in plaintext', async () => {
    const relay = await world.addMx('relay5-owner.test', 'relay5.smart.test', { starttls: false });
    world.publishPolicy('relay5.smart.test', ENFORCE(['relay5.smart.test']));
    const { send } = guarded({ host: 'relay5.smart.test', getSocket: socketTo(relay.ip) });
    const error = await sendError(() => send(mail('dan@s5-dest.test')));
    expect(relay.messages).toHaveLength(0);
    expect(relay.mailFrom).toHaveLength(0);
    expect(error).toMatchObject({ code: 'EMTASTS', temporary: true });
    expect(error.attempts[0]).toMatchObject({ resultType: 'starttls-not-supported' });
  });

  it('§3.4 enforce: a smart host its own policy does not list (§4.1) is refused without connecting', async () => {
    const relay = await world.addMx('relay6-owner.test', 'relay6.smart.test');
    world.publishPolicy('relay6.smart.test', ENFORCE(['mx.elsewhere.test']));
    const { send } = guarded({ host: 'relay6.smart.test', getSocket: socketTo(relay.ip) });
    const error = await sendError(() => send(mail('eli@s6-dest.test')));
    expect(relay.connections).toBe(0);
    expect(error).toMatchObject({ code: 'EMTASTS', responseCode: 451, temporary: true });
    expect(error.attempts[0]).toMatchObject({ mx: 'relay6.smart.test', outcome: 'skipped', resultType: 'validation-failure' });
  });

  it('§3.4 testing: relayed as without MTA-STS, the failure reported under the smart host\'s policy domain', async () => {
    const relay = await world.addMx('relay7-owner.test', 'relay7.smart.test', { cert: 'self-signed' });
    world.publishPolicy('relay7.smart.test', { id: 't7', mode: 'testing', mx: ['relay7.smart.test'], maxAge: 86400 });
    const { send, recorder } = guarded({ host: 'relay7.smart.test', tls: { rejectUnauthorized: false } });
    const info = await send(mail('fay@s7-dest.test'));
    expect(relay.messages).toEqual([expect.objectContaining({ secure: true, sni: 'relay7.smart.test' })]);
    expect(info.mtaSts['s7-dest.test']).toMatchObject({ status: 'delivered', mode: 'testing', policyDomain: 'relay7.smart.test', validated: false, resultType: 'certificate-not-trusted' });
    expect(recorder.of('relay7.smart.test')[0]).toMatchObject({ success: false, policy: { domain: 'relay7.smart.test' }, failure: { resultType: 'certificate-not-trusted' } });
  });

  it('§3.4 relay: true skips the MX check; the smart host\'s enforce policy still applies', async () => {
    const relay = await world.addMx('relay8-owner.test', 'relay8.smart.test', { cert: 'wrong-name' });
    world.publishPolicy('relay8.smart.test', ENFORCE(['relay8.smart.test']));
    const { send } = guarded({ host: 'relay8.smart.test', getSocket: socketTo(relay.ip), tls: { rejectUnauthorized: false } }, { relay: true });
    const error = await sendError(() => send(mail('gus@s8-dest.test')));
    expect(relay.messages).toHaveLength(0);
    expect(error).toMatchObject({ code: 'EMTASTS', temporary: true });
  });

  it('§3.4 the smart host\'s policy cannot be determined (an exception of ours, here a closed engine): deferred (451), never relayed without it', async () => {
    const relay = await world.addMx('relay9-owner.test', 'relay9.smart.test');
    const closed = createMtaSts(engineOptions(world));
    await closed.close();
    const { send } = guarded({ host: 'relay9.smart.test', getSocket: socketTo(relay.ip) }, { mtaSts: closed, relay: true });
    const error = await sendError(() => send(mail('hal@s9-dest.test')));
    expect(relay.connections).toBe(0);
    expect(error).toMatchObject({ code: 'EMTASTS', responseCode: 451, temporary: true });
    expect(error.message).toMatch(/policy of the smart host relay9\.smart\.test \(RFC 8461 §3\.4\) could not be determined/);
  });

  it('mixed: the host is an MX of one domain (its policy) and a smart host for another (the host\'s own policy, §3.4)', async () => {
    const mx = await world.addMx('mix-a.test', 'mx1.mix-a.test');
    world.publishPolicy('mix-a.test', ENFORCE(['mx1.mix-a.test'], 'ma'));
    world.publishPolicy('mx1.mix-a.test', ENFORCE(['mx1.mix-a.test'], 'mh'));
    const { send, recorder } = guarded({ host: 'mx1.mix-a.test', getSocket: socketTo(mx.ip), tls: { ca: world.ca.rootPem } });
    const info = await send(mail(['hana@mix-a.test', 'ian@mix-b.test']));
    expect(info.accepted.sort()).toEqual(['hana@mix-a.test', 'ian@mix-b.test']);
    expect(mx.messages.map((m) => m.recipients)).toEqual(expect.arrayContaining([['hana@mix-a.test'], ['ian@mix-b.test']]));
    expect(mx.messages.every((m) => m.secure && m.sni === 'mx1.mix-a.test')).toBe(true);
    expect(info.mtaSts['mix-a.test']).toMatchObject({ mode: 'enforce', policyId: 'ma', policyDomain: 'mix-a.test', validated: true });
    expect(info.mtaSts['mix-a.test']!.relay).toBeUndefined();
    expect(info.mtaSts['mix-b.test']).toMatchObject({ relay: { host: 'mx1.mix-a.test' }, status: 'delivered', mode: 'enforce', policyId: 'mh', policyDomain: 'mx1.mix-a.test', validated: true });
    expect(recorder.of('mx1.mix-a.test')).toHaveLength(1);
    expect(recorder.of('mix-a.test')).toHaveLength(1);
  });

  it('mixed: the host relays for a domain and has no policy of its own: that domain passes through the transport', async () => {
    const mx = await world.addMx('mixn-a.test', 'mx1.mixn-a.test');
    world.publishPolicy('mixn-a.test', ENFORCE(['mx1.mixn-a.test']));
    const { send } = guarded({ host: 'mx1.mixn-a.test', getSocket: socketTo(mx.ip), tls: { ca: world.ca.rootPem } });
    const info = await send(mail(['hana@mixn-a.test', 'ian@mixn-b.test']));
    expect(info.accepted.sort()).toEqual(['hana@mixn-a.test', 'ian@mixn-b.test']);
    expect(info.mtaSts['mixn-a.test']).toMatchObject({ mode: 'enforce', validated: true });
    expect(info.mtaSts['mixn-b.test']).toMatchObject({ relay: { host: 'mx1.mixn-a.test' }, status: 'delivered', mode: 'none', policyDomain: 'mx1.mixn-a.test' });
  });
});

describe('guardTransport: what it accepts', () => {
  it('refuses pooled and non-SMTP transports', () => {
    expect(() => guardTransport(nodemailer.createTransport({ pool: true, host: 'mx.example' }), { mtaSts: engine })).toThrow(/pool/);
    expect(() => guardTransport(nodemailer.createTransport({ streamTransport: true }), { mtaSts: engine })).toThrow(expect.objectContaining({ code: 'MTASTS_INVALID_OPTIONS', details: expect.objectContaining({ option: 'transporter' }) }));
  });

  it('validates its options at creation with the engine and hooks rules (MTASTS_INVALID_OPTIONS)', () => {
    const transporter = () => nodemailer.createTransport({ host: 'mx.example', port: 2525 });
    const code = (options: Record<string, unknown>) => {
      try {
        guardTransport(transporter(), options as GuardTransportOptions).unguard();
      } catch (error) {
        return error as { code: string; message: string; details: Record<string, unknown> };
      }
      throw new Error('expected a throw');
    };
    // maxAddresses no longer doubles as the session limit: two options, each with its own unit.
    expect(code({ mtaSts: engine, maxAddresses: 2 })).toMatchObject({ code: 'MTASTS_INVALID_OPTIONS', details: { option: 'maxAddresses' } });
    expect(code({ mtaSts: engine, maxAddresses: 2 }).message).toMatch(/maxAddressesPerMx .* and maxSessionsPerDomain/);
    expect(code({ mtaSts: engine, maxSessionsPerDomain: 0 })).toMatchObject({ details: { option: 'maxSessionsPerDomain' } });
    expect(code({ mtaSts: engine, plaintextFallback: 'no' })).toMatchObject({ details: { option: 'plaintextFallback' } });
    expect(code({ mtaSts: {} })).toMatchObject({ details: { option: 'mtaSts' } });
    // Engine options (used when the guard creates its own engine) go through the engine's rules.
    expect(code({ ca: '/etc/ssl/ca.pem' }).message).toMatch(/^guardTransport\(\): option ca .*looks like a file path/);
    expect(code({ relais: true }).message).toMatch(/unknown option relais \(did you mean relay\?\)/);
  });

  it('unguard() restores the original send', () => {
    const transporter = nodemailer.createTransport({ host: 'mx.example', port: 2525 });
    const before = transporter.transporter.send;
    const guard = guardTransport(transporter, { mtaSts: engine });
    expect(transporter.transporter.send).not.toBe(before);
    expect(() => guardTransport(transporter, { mtaSts: engine })).toThrow(/already/);
    guard.unguard();
    expect(transporter.transporter.send).toBe(before);
  });
});
