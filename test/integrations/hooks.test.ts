/**
 * The hook API for custom SMTP clients, driven by Nodemailer's SMTPConnection against the loopback world, and its
 * decision events (EventEmitter and node:diagnostics_channel).
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import type { TLSSocket } from 'node:tls';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MtaSts } from '../../src/engine.js';
import { classifyTlsFailure } from '../../src/tls/handshake-failure.js';
import { nodemailerHandshakeFailure } from '../../src/integrations/nodemailer/index.js';
import { createMtaStsHooks, DECISION_CHANNEL, type MtaStsDecision, type MtaStsHooks } from '../../src/integrations/hooks.js';
import type { MxCandidate } from '../../src/plan/plan.js';
import type { TestWorld } from '../../src/testing/index.js';
import { MemoryRecorder, startWorld, stopWorld } from './helpers.js';

let world: TestWorld;
let engine: MtaSts;

beforeAll(async () => {
  ({ world, engine } = await startWorld());
});
afterAll(async () => {
  await stopWorld(world, engine);
});

function hooksWithRecorder(extra: { plaintextFallback?: boolean } = {}) {
  const recorder = new MemoryRecorder();
  const hooks = createMtaStsHooks({ mtaSts: engine, recorder, ...extra });
  const decisions: MtaStsDecision[] = [];
  hooks.on('decision', (d: MtaStsDecision) => decisions.push(d));
  return { hooks, recorder, decisions };
}

/** Opens an SMTP session up to (and including) STARTTLS with the hooks' TLS options, TLS checks optionally relaxed. */
async function openSession(hooks: MtaStsHooks, candidate: MxCandidate, relaxTls = false): Promise<{ connection: SMTPConnection; socket: TLSSocket | null; ip: string }> {
  const [ip] = await hooks.addressesFor(candidate);
  const tls = { ...hooks.tlsOptionsFor(candidate), ...(relaxTls ? { rejectUnauthorized: false } : {}) };
  const connection = new SMTPConnection({ host: ip, port: world.smtpPort, servername: candidate.host, name: 'client.example', tls, opportunisticTLS: true, connectionTimeout: 2000, greetingTimeout: 2000 });
  await new Promise<void>((resolve, reject) => {
    connection.once('error', reject);
    connection.connect(() => resolve());
  });
  return { connection, socket: connection.secure ? (connection._socket as TLSSocket) : null, ip: ip! };
}

describe('hooks: the sequence planDelivery → tlsOptionsFor → verifySession → recordOutcome', () => {
  it('RFC 8461 §4.2 enforce, valid MX: proceed; the outcome goes to the recorder; every step is published on diagnostics_channel', async () => {
    await world.addMx('h-valid.test', 'mx1.h-valid.test');
    world.publishPolicy('h-valid.test', { id: 'h1', mode: 'enforce', mx: ['mx1.h-valid.test'], maxAge: 86400 });
    const published: MtaStsDecision[] = [];
    const onMessage = (message: unknown) => {
      const decision = message as MtaStsDecision;
      if (decision.domain === 'h-valid.test') published.push(decision);
    };
    diagnosticsChannel.subscribe(DECISION_CHANNEL, onMessage);
    try {
      const { hooks, recorder, decisions } = hooksWithRecorder();
      const plan = await hooks.planDelivery('h-valid.test');
      const candidate = plan.allowed[0]!;
      const tls = hooks.tlsOptionsFor(candidate);
      expect(tls).toMatchObject({ servername: 'mx1.h-valid.test', minVersion: 'TLSv1.2', rejectUnauthorized: true });
      expect(tls.secureContext).toBeDefined();

      const { connection, socket, ip } = await openSession(hooks, candidate);
      const verdict = hooks.verifySession(candidate, socket, { ip });
      connection.quit();
      expect(verdict).toMatchObject({ proceed: true, success: true, mode: 'enforce', mx: 'mx1.h-valid.test', ip });
      expect(verdict.verdict.ok).toBe(true);
      hooks.recordOutcome(candidate, verdict, { ip });
      expect(recorder.of('h-valid.test')).toEqual([expect.objectContaining({ success: true, policy: expect.objectContaining({ type: 'sts', mxHost: ['mx1.h-valid.test'] }) })]);

      expect(published.map((d) => `${d.stage}:${d.action}`)).toEqual(['plan:plan', 'candidate:use', 'session:proceed', 'outcome:recorded']);
      expect(published[2]).toMatchObject({ domain: 'h-valid.test', mx: 'mx1.h-valid.test', mode: 'enforce', policyId: 'h1', verdict: 'pass', ip });
      expect(decisions).toEqual(published);
    } finally {
      diagnosticsChannel.unsubscribe(DECISION_CHANNEL, onMessage);
    }
  });

  it('§4.2 enforce: a session the client did not abort (rejectUnauthorized: false) is still judged: proceed false, certificate-expired', async () => {
    await world.addMx('h-expired.test', 'mx1.h-expired.test', { cert: 'expired' });
    world.publishPolicy('h-expired.test', { id: 'h2', mode: 'enforce', mx: ['mx1.h-expired.test'], maxAge: 86400 });
    const published: MtaStsDecision[] = [];
    const onMessage = (message: unknown) => {
      if ((message as MtaStsDecision).domain === 'h-expired.test') published.push(message as MtaStsDecision);
    };
    diagnosticsChannel.subscribe(DECISION_CHANNEL, onMessage);
    try {
      const { hooks, recorder } = hooksWithRecorder();
      const plan = await hooks.planDelivery('h-expired.test');
      const candidate = plan.allowed[0]!;
      const { connection, socket, ip } = await openSession(hooks, candidate, true);
      const verdict = hooks.verifySession(candidate, socket, { ip });
      connection.close();
      expect(verdict).toMatchObject({ proceed: false, success: false, resultType: 'certificate-expired', failureReasonCode: 'CERT_HAS_EXPIRED' });
      hooks.recordOutcome(candidate, verdict, { ip });
      expect(recorder.of('h-expired.test')[0]).toMatchObject({ success: false, failure: { resultType: 'certificate-expired', receivingMxHostname: 'mx1.h-expired.test', receivingIp: ip, failureReasonCode: 'CERT_HAS_EXPIRED' } });
      expect(published).toContainEqual(expect.objectContaining({ stage: 'session', action: 'refuse', domain: 'h-expired.test', mx: 'mx1.h-expired.test', mode: 'enforce', verdict: 'fail', resultType: 'certificate-expired' }));
    } finally {
      diagnosticsChannel.unsubscribe(DECISION_CHANNEL, onMessage);
    }
  });

  it('§5 a plaintext session: refused under enforce, reported under testing, fine without a policy', async () => {
    await world.addMx('h-enf.test', 'mx1.h-enf.test');
    world.publishPolicy('h-enf.test', { id: 'e', mode: 'enforce', mx: ['mx1.h-enf.test'], maxAge: 86400 });
    await world.addMx('h-test.test', 'mx1.h-test.test');
    world.publishPolicy('h-test.test', { id: 't', mode: 'testing', mx: ['mx1.h-test.test'], maxAge: 86400 });
    await world.addMx('h-none.test', 'mx1.h-none.test');
    const { hooks } = hooksWithRecorder();
    const enforce = (await hooks.planDelivery('h-enf.test')).allowed[0]!;
    const testing = (await hooks.planDelivery('h-test.test')).allowed[0]!;
    const none = (await hooks.planDelivery('h-none.test')).allowed[0]!;
    expect(hooks.verifySession(enforce, null)).toMatchObject({ proceed: false, success: false, resultType: 'starttls-not-supported' });
    expect(hooks.verifySession(testing, null)).toMatchObject({ proceed: true, success: false, resultType: 'starttls-not-supported' });
    expect(hooks.verifySession(none, null)).toMatchObject({ proceed: true, success: false, mode: 'none' });
  });

  it('§4.1 a candidate the enforce policy does not list is skipped in the plan and refused if verified anyway', async () => {
    await world.addMx('h-skip.test', 'mx.not-listed.test');
    world.publishPolicy('h-skip.test', { id: 's', mode: 'enforce', mx: ['mx1.h-skip.test'], maxAge: 86400 });
    const { hooks, decisions } = hooksWithRecorder();
    const plan = await hooks.planDelivery('h-skip.test');
    expect(plan.allowed).toHaveLength(0);
    expect(plan.noCandidate).toMatchObject({ action: 'defer' });
    expect(decisions).toContainEqual(expect.objectContaining({ stage: 'candidate', action: 'skip', mx: 'mx.not-listed.test', resultType: 'validation-failure' }));
    expect(decisions).toContainEqual(expect.objectContaining({ stage: 'candidate', action: 'defer', domain: 'h-skip.test' }));
    expect(hooks.verifySession(plan.candidates[0]!, null)).toMatchObject({ proceed: false, resultType: 'validation-failure' });
  });

  it('RFC 8461 §5.1 every allowed MX fails its session: deliveryFailed() returns defer with reason and result types, and emits it', async () => {
    await world.addMx('h-allfail.test', 'mx1.h-allfail.test', { priority: 10, cert: 'expired' });
    await world.addMx('h-allfail.test', 'mx2.h-allfail.test', { priority: 20, cert: 'wrong-name' });
    await world.addMx('h-allfail.test', 'mx.h-unlisted.test', { priority: 30 });
    world.publishPolicy('h-allfail.test', { id: 'af', mode: 'enforce', mx: ['*.h-allfail.test'], maxAge: 86400 });
    const { hooks, decisions } = hooksWithRecorder();
    const plan = await hooks.planDelivery('h-allfail.test');
    // Never undefined to a caller: with allowed hosts it says what to do when they all fail.
    expect(plan.noCandidate).toMatchObject({ action: 'defer', reason: expect.stringMatching(/RFC 8461 §5\.1/) });
    expect(plan.allowed.map((c) => c.host)).toEqual(['mx1.h-allfail.test', 'mx2.h-allfail.test']);
    for (const candidate of plan.allowed) {
      // A strict client: the handshake aborts on the invalid certificate.
      const [ip] = await hooks.addressesFor(candidate);
      const connection = new SMTPConnection({ host: ip, port: world.smtpPort, servername: candidate.host, name: 'client.example', tls: hooks.tlsOptionsFor(candidate), requireTLS: true, connectionTimeout: 2000, greetingTimeout: 2000 });
      connection.on('error', () => undefined);
      const error = await new Promise<unknown>((resolve) => {
        connection.once('error', resolve);
        connection.connect(() => resolve(new Error('the handshake was expected to fail')));
      });
      connection.close();
      const tlsSocket = connection._socket as TLSSocket | undefined;
      // Nodemailer's SMTPConnection wraps the TLS error: its integration translates it for the hooks.
      expect(hooks.handshakeFailed(candidate, nodemailerHandshakeFailure(error).error, { ip: ip!, tlsSocket })).toMatchObject({ proceed: false, plaintextFallback: false });
    }
    const final = hooks.deliveryFailed(plan);
    expect(final).toMatchObject({ action: 'defer', temporary: true, replyCode: 451, enhancedStatus: '4.7.5', resultTypes: ['validation-failure', 'certificate-expired', 'certificate-host-mismatch'] });
    expect(final.failures.map((f) => f.mx)).toEqual(['mx.h-unlisted.test', 'mx1.h-allfail.test', 'mx2.h-allfail.test']);
    expect(final.reason).toMatch(/no MX host of h-allfail\.test passed its enforce policy \(id af\); not delivered, retry later \(RFC 8461 §5\.1\)/);
    expect(decisions).toContainEqual(expect.objectContaining({ stage: 'delivery', action: 'defer', domain: 'h-allfail.test', mode: 'enforce', policyId: 'af', reason: final.reason }));
  });

  it('deliveryFailed(): a null MX bounces (RFC 7505), a host that only failed to connect defers with 4.4.1', async () => {
    world.dns.setRecords('h-nullmx.test', { mx: [{ exchange: '', priority: 0 }] });
    const { hooks, decisions } = hooksWithRecorder();
    const nullMx = await hooks.planDelivery('h-nullmx.test');
    expect(hooks.deliveryFailed(nullMx)).toMatchObject({ action: 'bounce', temporary: false, replyCode: 556, enhancedStatus: '5.1.10' });
    expect(decisions).toContainEqual(expect.objectContaining({ stage: 'delivery', action: 'bounce', domain: 'h-nullmx.test' }));
    await world.addMx('h-down.test', 'mx1.h-down.test');
    const plan = await hooks.planDelivery('h-down.test');
    const final = hooks.deliveryFailed(plan, { failures: [{ mx: 'mx1.h-down.test', ip: '127.0.0.77', reason: 'connect ECONNREFUSED' }] });
    expect(final).toMatchObject({ action: 'defer', temporary: true, enhancedStatus: '4.4.1', resultTypes: [] });
    expect(final.reason).toMatch(/mx1\.h-down\.test \[127\.0\.0\.77\]: connect ECONNREFUSED/);
  });

  it('validates its options at creation, engine options included (MTASTS_INVALID_OPTIONS)', () => {
    const error = (options: Record<string, unknown>) => {
      try {
        createMtaStsHooks(options as never);
      } catch (e) {
        return e as { code: string; message: string; details: Record<string, unknown> };
      }
      throw new Error('expected a throw');
    };
    expect(error({ mtaSts: engine, recorder: {} })).toMatchObject({ code: 'MTASTS_INVALID_OPTIONS', details: { option: 'recorder' } });
    expect(error({ mtaSts: engine, plaintextFallback: 1 })).toMatchObject({ details: { option: 'plaintextFallback' } });
    expect(error({ dnsServer: ['127.0.0.1'] }).message).toMatch(/^createMtaStsHooks\(\): unknown option dnsServer \(did you mean dnsServers\?\)/);
    expect(error({ ca: [null] })).toMatchObject({ details: { option: 'ca' } });
  });

  it('handshakeFailed classifies TLS errors (RFC 8460 §4.3.1); plaintext fallback only outside enforce', async () => {
    await world.addMx('h-hs.test', 'mx1.h-hs.test');
    world.publishPolicy('h-hs.test', { id: 'x', mode: 'enforce', mx: ['mx1.h-hs.test'], maxAge: 86400 });
    await world.addMx('h-hs2.test', 'mx1.h-hs2.test');
    world.publishPolicy('h-hs2.test', { id: 'y', mode: 'testing', mx: ['mx1.h-hs2.test'], maxAge: 86400 });
    const { hooks } = hooksWithRecorder();
    const enforce = (await hooks.planDelivery('h-hs.test')).allowed[0]!;
    const testing = (await hooks.planDelivery('h-hs2.test')).allowed[0]!;
    expect(hooks.handshakeFailed(enforce, Object.assign(new Error('x'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }))).toMatchObject({ proceed: false, plaintextFallback: false, resultType: 'certificate-not-trusted', failureReasonCode: 'DEPTH_ZERO_SELF_SIGNED_CERT' });
    expect(hooks.handshakeFailed(testing, Object.assign(new Error('x'), { code: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' }))).toMatchObject({ proceed: false, plaintextFallback: true, resultType: 'validation-failure' });
    expect(hooks.handshakeFailed(testing, new Error('refused'), { starttlsRefused: { replyCode: 454, text: '454 4.7.0 TLS not available' } })).toMatchObject({ resultType: 'starttls-not-supported', failureReasonCode: 'starttls refused 454' });
    // The generic hooks do not know Nodemailer's wrapper codes: its integration translates them.
    expect(hooks.handshakeFailed(enforce, Object.assign(new Error('x'), { code: 'ESOCKET', originalCode: 'DEPTH_ZERO_SELF_SIGNED_CERT' })).resultType).toBe('validation-failure');
    const wrapped = nodemailerHandshakeFailure(Object.assign(new Error('x'), { code: 'ESOCKET', originalCode: 'DEPTH_ZERO_SELF_SIGNED_CERT' }));
    expect(hooks.handshakeFailed(enforce, wrapped.error)).toMatchObject({ resultType: 'certificate-not-trusted', failureReasonCode: 'DEPTH_ZERO_SELF_SIGNED_CERT' });
    const refused = nodemailerHandshakeFailure(Object.assign(new Error('Error upgrading connection with STARTTLS'), { code: 'ETLS', command: 'STARTTLS', response: '454 4.7.0 TLS not available', responseCode: 454 }));
    expect(refused.starttlsRefused).toEqual({ text: '454 4.7.0 TLS not available', replyCode: 454 });
    expect(classifyTlsFailure('mx', refused.error, undefined, refused.starttlsRefused).resultType).toBe('starttls-not-supported');
    expect(classifyTlsFailure('mx', { code: 'CERT_HAS_EXPIRED' }).resultType).toBe('certificate-expired');
    expect(classifyTlsFailure('mx', { code: 'ERR_TLS_CERT_ALTNAME_INVALID' }).resultType).toBe('certificate-host-mismatch');
    const strict = createMtaStsHooks({ mtaSts: engine, plaintextFallback: false });
    const testing2 = (await strict.planDelivery('h-hs2.test')).allowed[0]!;
    expect(strict.handshakeFailed(testing2, { code: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' }).plaintextFallback).toBe(false);
  });

  it('RFC 8460 §4.3.2 a policy that cannot be fetched (invalid policy-host certificate): sessions are reported as sts-webpki-invalid', async () => {
    await world.addMx('h-webpki.test', 'mx1.h-webpki.test');
    world.publishPolicy('h-webpki.test', { id: 'w', mode: 'enforce', mx: ['mx1.h-webpki.test'], maxAge: 86400, host: { kind: 'cert', cert: 'self-signed' } });
    const { hooks, recorder } = hooksWithRecorder();
    const plan = await hooks.planDelivery('h-webpki.test');
    expect(plan.mode).toBe('none');
    hooks.recordOutcome(plan.allowed[0]!, { success: true });
    expect(recorder.of('h-webpki.test')).toEqual([expect.objectContaining({ success: false, policy: { type: 'sts', domain: 'h-webpki.test' }, failure: expect.objectContaining({ resultType: 'sts-webpki-invalid' }) })]);
  });

  it('rejects a candidate it did not plan (unless the plan is given)', async () => {
    await world.addMx('h-foreign.test', 'mx1.h-foreign.test');
    const { hooks } = hooksWithRecorder();
    const plan = await engine.plan('h-foreign.test');
    expect(() => hooks.verifySession(plan.candidates[0]!, null)).toThrow(TypeError);
    expect(hooks.verifySession(plan.candidates[0]!, null, { plan })).toMatchObject({ proceed: true, mode: 'none' });
  });
});
