/**
 * An MX (or a path attacker) that swallows STARTTLS: the command is sent and never answered (issue 16 item 3). Two
 * variants of the loopback world's MX (`starttlsNoReply`): STARTTLS omitted from the EHLO reply (the client sends it
 * anyway because it requires TLS) and STARTTLS advertised. Through the direct transport, `guardTransport()` and the
 * hooks (a custom client with its own bounded wait): the session is `starttls-not-supported` (RFC 8460 §4.3.1),
 * `failure-reason-code` `starttls no reply`, after the bounded wait (not the socket timeout), and under `enforce` the
 * domain is deferred with 4.7.5 (RFC 8461 §5.1); nothing is sent in plaintext.
 */
import net from 'node:net';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MtaSts } from '../../src/engine.js';
import { createMtaStsTransport, guardTransport, type MtaStsSentMessageInfo, type MtaStsTransportOptions } from '../../src/integrations/nodemailer/index.js';
import { createMtaStsHooks } from '../../src/integrations/hooks.js';
import type { MxHostOptions, TestMxHost, TestWorld } from '../../src/testing/index.js';
import { FAST, mail, MemoryRecorder, receivedFor, sendError, startWorld, stopWorld, transportOptions } from './helpers.js';

let world: TestWorld;
let engine: MtaSts;
const closers: Array<() => void> = [];

beforeAll(async () => {
  ({ world, engine } = await startWorld());
});
afterAll(async () => {
  for (const close of closers) close();
  await stopWorld(world, engine);
});

const ENFORCE = (mx: string[]) => ({ id: 'sw1', mode: 'enforce' as const, mx, maxAge: 86400 });
/** The socket timeout of these tests: far above the STARTTLS bound, so an answer in time proves the bound works. */
const SOCKET_TIMEOUT_MS = 15_000;

function transport(extra: Partial<MtaStsTransportOptions> = {}) {
  const recorder = new MemoryRecorder();
  const t = createMtaStsTransport(transportOptions(world, { mtaSts: engine, recorder, socketTimeoutMs: SOCKET_TIMEOUT_MS, ...extra }));
  closers.push(() => t.close());
  const mailer = nodemailer.createTransport(t);
  return { recorder, send: (m: ReturnType<typeof mail>) => mailer.sendMail(m) as Promise<MtaStsSentMessageInfo> };
}

/** Times an async step. */
async function timed<T>(step: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await step();
  return { value, ms: performance.now() - started };
}

/** Nothing reached the MX but the swallowed STARTTLS: no MAIL FROM, no message. */
function expectUntouched(mx: TestMxHost, domain: string) {
  expect(mx.starttlsSwallowed).toBe(1);
  expect(mx.mailFrom).toHaveLength(0);
  expect(mx.messages).toHaveLength(0);
  expect(receivedFor(world, domain)).toHaveLength(0);
}

/** Enforce, through the direct transport: refused after `starttlsTimeoutMs`, 451 4.7.5, recorded, nothing sent. */
async function transportCase(domain: string, behaviour: MxHostOptions) {
  const mx = await world.addMx(domain, `mx1.${domain}`, behaviour);
  world.publishPolicy(domain, ENFORCE([`mx1.${domain}`]));
  const { send, recorder } = transport({ starttlsTimeoutMs: 300 });
  const { value: error, ms } = await timed(() => sendError(() => send(mail(`ann@${domain}`))));

  expect(ms).toBeLessThan(SOCKET_TIMEOUT_MS / 2);
  expectUntouched(mx, domain);
  expect(error).toMatchObject({ code: 'EMTASTS', responseCode: 451, temporary: true });
  expect(error.response).toMatch(/^451 4\.7\.5 /);
  expect(error.attempts).toEqual([expect.objectContaining({ mx: `mx1.${domain}`, ip: mx.ip, outcome: 'refused', stage: 'tls', resultType: 'starttls-not-supported' })]);
  expect(error.attempts[0]!.reason).toMatch(/did not answer STARTTLS \(no reply to STARTTLS after 300 ms\)/);
  expect(recorder.of(domain)).toEqual([
    expect.objectContaining({ success: false, failure: expect.objectContaining({ resultType: 'starttls-not-supported', failureReasonCode: 'starttls no reply', receivingMxHostname: `mx1.${domain}`, receivingIp: mx.ip }) }),
  ]);
}

describe.concurrent('createMtaStsTransport: an MX that never answers STARTTLS', () => {
  it('RFC 8461 §4.2 enforce, MX omits STARTTLS from its EHLO and swallows the command the client sends anyway: starttls-not-supported, 451 4.7.5 after starttlsTimeoutMs', async () => {
    await transportCase('sw-omit.test', { starttls: false, starttlsNoReply: true });
  });

  it('RFC 8461 §4.2 enforce, MX advertises STARTTLS and never answers the command: starttls-not-supported, 451 4.7.5 after starttlsTimeoutMs', async () => {
    await transportCase('sw-adv.test', { starttlsNoReply: true });
  });

  it('the wait is bounded by default (5000 ms), not by the socket timeout', async () => {
    const mx = await world.addMx('sw-default.test', 'mx1.sw-default.test', { starttls: false, starttlsNoReply: true });
    world.publishPolicy('sw-default.test', ENFORCE(['mx1.sw-default.test']));
    const { send, recorder } = transport();
    const { value: error, ms } = await timed(() => sendError(() => send(mail('bea@sw-default.test'))));
    expect(ms).toBeGreaterThanOrEqual(4_900);
    expect(ms).toBeLessThan(SOCKET_TIMEOUT_MS - 2_000);
    expectUntouched(mx, 'sw-default.test');
    expect(error).toMatchObject({ code: 'EMTASTS', responseCode: 451 });
    expect(error.attempts[0]!.reason).toMatch(/after 5000 ms/);
    expect(recorder.of('sw-default.test')[0]!.failure).toMatchObject({ resultType: 'starttls-not-supported', failureReasonCode: 'starttls no reply' });
  });

  it('§4.2 enforce: a swallowing first MX is refused and the next (compliant) MX gets the message over TLS', async () => {
    const bad = await world.addMx('sw-next.test', 'mx1.sw-next.test', { priority: 10, starttlsNoReply: true });
    const good = await world.addMx('sw-next.test', 'mx2.sw-next.test', { priority: 20 });
    world.publishPolicy('sw-next.test', ENFORCE(['*.sw-next.test']));
    const { send, recorder } = transport({ starttlsTimeoutMs: 300 });
    const info = await send(mail('cid@sw-next.test'));
    expect(bad).toMatchObject({ starttlsSwallowed: 1, mailFrom: [], messages: [] });
    expect(good.messages).toHaveLength(1);
    expect(good.messages[0]).toMatchObject({ secure: true, sni: 'mx2.sw-next.test' });
    expect(info.mtaSts['sw-next.test']!.attempts.map((a) => [a.mx, a.outcome, a.resultType])).toEqual([
      ['mx1.sw-next.test', 'refused', 'starttls-not-supported'],
      ['mx2.sw-next.test', 'delivered', undefined],
    ]);
    expect(recorder.of('sw-next.test').map((o) => o.success)).toEqual([false, true]);
  });

  it('§5 testing, STARTTLS advertised and swallowed: reported, then delivered as without MTA-STS (plaintext retry)', async () => {
    const mx = await world.addMx('sw-testing.test', 'mx1.sw-testing.test', { starttlsNoReply: true });
    world.publishPolicy('sw-testing.test', { id: 'swt', mode: 'testing', mx: ['mx1.sw-testing.test'], maxAge: 86400 });
    const { send, recorder } = transport({ starttlsTimeoutMs: 300 });
    const info = await send(mail('dee@sw-testing.test'));
    expect(mx.messages).toHaveLength(1);
    expect(mx.messages[0]!.secure).toBe(false);
    expect(info.mtaSts['sw-testing.test']).toMatchObject({ status: 'delivered', plaintextFallback: true, resultType: 'starttls-not-supported', validated: false });
    expect(recorder.of('sw-testing.test')[0]!.failure).toMatchObject({ resultType: 'starttls-not-supported', failureReasonCode: 'starttls no reply' });
  });

  it('starttlsTimeoutMs is validated at creation (a number of ms; typos get a suggestion)', () => {
    const error = (options: Record<string, unknown>) => {
      try {
        createMtaStsTransport(transportOptions(world, { mtaSts: engine, ...options }));
      } catch (e) {
        return e as { code: string; message: string; details: Record<string, unknown> };
      }
      throw new Error('expected a throw');
    };
    expect(error({ starttlsTimeoutMs: 0 })).toMatchObject({ code: 'MTASTS_INVALID_OPTIONS', details: { option: 'starttlsTimeoutMs' } });
    expect(error({ starttlsTimeoutMs: '5s' })).toMatchObject({ code: 'MTASTS_INVALID_OPTIONS', details: { option: 'starttlsTimeoutMs' } });
    expect(error({ starttlsTimeout: 5000 }).message).toMatch(/unknown option starttlsTimeout \(did you mean starttlsTimeoutMs\?\)/);
  });
});

/** Enforce, through guardTransport() on a transport pointed at the MX: as {@link transportCase}. */
async function guardCase(domain: string, behaviour: MxHostOptions) {
  const mx = await world.addMx(domain, `mx1.${domain}`, behaviour);
  world.publishPolicy(domain, ENFORCE([`mx1.${domain}`]));
  const transporter = nodemailer.createTransport({ host: `mx1.${domain}`, port: world.smtpPort, name: 'sender.example', ...FAST, socketTimeout: SOCKET_TIMEOUT_MS } as never);
  const recorder = new MemoryRecorder();
  const guard = guardTransport(transporter, { mtaSts: engine, recorder, starttlsTimeoutMs: 300 });
  closers.push(() => guard.unguard());
  const { value: error, ms } = await timed(() => sendError(() => transporter.sendMail(mail(`eve@${domain}`))));

  expect(ms).toBeLessThan(SOCKET_TIMEOUT_MS / 2);
  expectUntouched(mx, domain);
  expect(error).toMatchObject({ code: 'EMTASTS', responseCode: 451, temporary: true });
  expect(error.response).toMatch(/^451 4\.7\.5 /);
  expect(error.attempts).toEqual([expect.objectContaining({ mx: `mx1.${domain}`, outcome: 'refused', stage: 'tls', resultType: 'starttls-not-supported' })]);
  expect(recorder.of(domain)[0]!.failure).toMatchObject({ resultType: 'starttls-not-supported', failureReasonCode: 'starttls no reply', receivingIp: mx.ip });
}

describe.concurrent('guardTransport: the transport points at an MX that never answers STARTTLS', () => {
  it('RFC 8461 §4.2 guard, enforce, MX omits STARTTLS from its EHLO and swallows the command: starttls-not-supported, 451 4.7.5 after starttlsTimeoutMs', async () => {
    await guardCase('sw-g-omit.test', { starttls: false, starttlsNoReply: true });
  });

  it('RFC 8461 §4.2 guard, enforce, MX advertises STARTTLS and never answers the command: starttls-not-supported, 451 4.7.5 after starttlsTimeoutMs', async () => {
    await guardCase('sw-g-adv.test', { starttlsNoReply: true });
  });

  it('starttlsTimeoutMs is a validated guard option', () => {
    const transporter = nodemailer.createTransport({ host: 'mx1.example.test', port: world.smtpPort } as never);
    expect(() => guardTransport(transporter, { mtaSts: engine, starttlsTimeoutMs: -1 })).toThrow(/starttlsTimeoutMs/);
  });
});

/** A minimal custom SMTP client (raw socket): greeting, EHLO, then STARTTLS with its own bounded wait for the reply. */
async function customClientStartTls(ip: string, port: number, waitMs: number): Promise<{ reply?: string; error?: Error }> {
  const socket = net.connect({ host: ip, port });
  socket.setEncoding('latin1');
  let buffer = '';
  const nextReply = (ms: number) =>
    new Promise<string | undefined>((resolve) => {
      const check = () => {
        const end = /(?:^|\r\n)\d{3} [^\r\n]*\r\n/.exec(buffer);
        if (!end) return false;
        const reply = buffer.slice(0, end.index + end[0].length);
        buffer = buffer.slice(reply.length);
        cleanup();
        resolve(reply);
        return true;
      };
      const timer = setTimeout(() => (cleanup(), resolve(undefined)), ms);
      const onData = (chunk: string) => ((buffer += chunk), check());
      const cleanup = () => (clearTimeout(timer), socket.off('data', onData));
      socket.on('data', onData);
      check();
    });
  try {
    await nextReply(2000);
    socket.write('EHLO client.example\r\n');
    await nextReply(2000);
    socket.write('STARTTLS\r\n');
    const reply = await nextReply(waitMs);
    return reply !== undefined ? { reply } : { error: Object.assign(new Error(`no reply to STARTTLS within ${waitMs} ms`), { code: 'ETIMEDOUT' }) };
  } finally {
    socket.destroy();
  }
}

describe('hooks: a custom client says "no reply to STARTTLS" (context.starttlsNoReply)', () => {
  it('RFC 8460 §4.3.1 handshakeFailed(…, { starttlsNoReply: true }): starttls-not-supported, reason code "starttls no reply", deferred 4.7.5 under enforce', async () => {
    const mx = await world.addMx('sw-hooks.test', 'mx1.sw-hooks.test', { starttlsNoReply: true });
    world.publishPolicy('sw-hooks.test', ENFORCE(['mx1.sw-hooks.test']));
    const recorder = new MemoryRecorder();
    const hooks = createMtaStsHooks({ mtaSts: engine, recorder });
    const plan = await hooks.planDelivery('sw-hooks.test');
    const candidate = plan.allowed[0]!;
    const [ip] = await hooks.addressesFor(candidate);

    const { reply, error } = await customClientStartTls(ip!, world.smtpPort, 300);
    expect(reply).toBeUndefined();
    expect(mx.starttlsSwallowed).toBe(1);

    const verdict = hooks.handshakeFailed(candidate, error, { ip: ip!, starttlsNoReply: true });
    expect(verdict).toMatchObject({ proceed: false, success: false, plaintextFallback: false, resultType: 'starttls-not-supported', failureReasonCode: 'starttls no reply' });
    expect(verdict.reason).toMatch(/^mx1\.sw-hooks\.test did not answer STARTTLS/);
    hooks.recordOutcome(candidate, verdict, { ip: ip! });
    expect(recorder.of('sw-hooks.test')[0]!.failure).toMatchObject({ resultType: 'starttls-not-supported', failureReasonCode: 'starttls no reply', receivingIp: ip });
    expect(hooks.deliveryFailed(plan)).toMatchObject({ action: 'defer', temporary: true, replyCode: 451, enhancedStatus: '4.7.5', resultTypes: ['starttls-not-supported'] });

    // Whatever error the client passes (even none), the signal decides; it wins over a starttlsRefused given too.
    expect(hooks.handshakeFailed(candidate, undefined, { starttlsNoReply: true, starttlsRefused: { replyCode: 454 } })).toMatchObject({ resultType: 'starttls-not-supported', failureReasonCode: 'starttls no reply' });
    await hooks.close();
  });
});
