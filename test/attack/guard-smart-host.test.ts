/**
 * Issue 16 item 1 attacked end to end through guardTransport(), against the loopback world: an attacker on the DNS
 * path answers the MX query of an `enforce` domain without the guarded transport's host, hoping the guard takes that
 * host for a smart host (RFC 8461 §3.4) and relays the message without the domain's policy. The MX answer is not
 * authenticated: a host the `enforce` policy does not list is a smart host only when the guard is told so
 * (`relay: true`); otherwise the domain is deferred (451 4.7.5, `EMTASTS`), whatever the MX answer says.
 */
import net from 'node:net';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MtaSts } from '../../src/engine.js';
import { guardTransport, type GuardTransportOptions, type MtaStsSentMessageInfo } from '../../src/integrations/nodemailer/index.js';
import type { TestWorld } from '../../src/testing/index.js';
import { mail, MemoryRecorder, sendError, startWorld, stopWorld } from '../integrations/helpers.js';

/** Roomier than the shared FAST deadlines: a refusal must be the policy's, not a greeting timeout on a busy machine. */
const TIMEOUTS = { connectionTimeout: 8000, greetingTimeout: 8000, socketTimeout: 12_000 } as const;

let world: TestWorld;
let engine: MtaSts;

beforeAll(async () => {
  ({ world, engine } = await startWorld());
});
afterAll(async () => {
  await stopWorld(world, engine);
});

const ENFORCE = (mx: string[], id = 'i16') => ({ id, mode: 'enforce' as const, mx, maxAge: 86400 });

function guarded(transportOptions: Record<string, unknown>, guardOptions: GuardTransportOptions = {}) {
  const transporter = nodemailer.createTransport({ port: world.smtpPort, name: 'sender.example', ...TIMEOUTS, ...transportOptions } as never);
  const recorder = new MemoryRecorder();
  guardTransport(transporter, { mtaSts: engine, recorder, ...guardOptions });
  return { recorder, send: (m: ReturnType<typeof mail>) => transporter.sendMail(m) as unknown as Promise<MtaStsSentMessageInfo> };
}

/** A `getSocket` that hands Nodemailer a connection to `ip` (the world's names resolve only in its own DNS). */
const socketTo = (ip: string) => (_options: unknown, callback: (error: Error | null, socket?: { connection: net.Socket }) => void) => callback(null, { connection: net.connect(world.smtpPort, ip) });

/** `d` publishes `enforce` with `mx: mx2.d`; its MX records name mx1.d (STARTTLS stripped) and mx2.d. */
async function strippedUnlistedMx(d: string) {
  const mx1 = await world.addMx(d, `mx1.${d}`, { starttls: false });
  const mx2 = await world.addMx(d, `mx2.${d}`, { priority: 20 });
  world.publishPolicy(d, ENFORCE([`mx2.${d}`]));
  return { mx1, mx2 };
}

describe.concurrent('issue 16 item 1: a spoofed MX answer never makes the guarded host a smart host (RFC 8461 §3.4, §4.1, §5.1)', () => {
  it('the attacker answers the MX query with only mx2 while the transport points at mx1 (STARTTLS stripped): deferred 4.7.5, mx1 gets no MAIL FROM', async () => {
    const d = 'i16-spoof.test';
    const { mx1, mx2 } = await strippedUnlistedMx(d);
    // With honest DNS mx1 is refused as an MX host the policy does not list (guard.test.ts, §4.1). The attacker's
    // MX answer names only mx2, so mx1 looks like a relay: still deferred, never relayed in plaintext.
    world.dns.setRecords(d, { mx: [{ exchange: `mx2.${d}`, priority: 20 }] });
    const { send, recorder } = guarded({ host: `mx1.${d}` });
    const spoofed = await sendError(() => send(mail(`ann@${d}`)));
    expect(spoofed).toMatchObject({ code: 'EMTASTS', responseCode: 451, temporary: true, permanent: false });
    const result = (spoofed as unknown as MtaStsSentMessageInfo).mtaSts[d]!;
    expect(result).toMatchObject({ status: 'failed', mode: 'enforce', policyId: 'i16', secure: false });
    expect(result.relay).toBeUndefined();
    expect(result.error).toMatchObject({ code: 'EMTASTS', responseCode: 451, response: expect.stringMatching(/^451 4\.7\.5 /), temporary: true });
    expect(result.error!.message).toMatch(/not listed in the enforce policy.*relay: true/);
    expect(mx1.mailFrom).toHaveLength(0);
    expect(mx1.messages).toHaveLength(0);
    expect(mx2.messages).toHaveLength(0);
    // Nothing is reported against the recipient domain's MX hosts: the guard never tried one.
    expect(recorder.of(d)).toEqual([]);
  });

  it('a smart host given by IP without relay: true: a domain with an enforce policy is deferred, the host gets nothing', async () => {
    const d = 'i16-ip.test';
    const { mx1 } = await strippedUnlistedMx(d);
    const { send } = guarded({ host: mx1.ip });
    const error = await sendError(() => send(mail(`bob@${d}`)));
    expect(error).toMatchObject({ code: 'EMTASTS', responseCode: 451, temporary: true });
    expect(mx1.connections).toBe(0);
  });

  it('a domain without an enforce policy is still relayed through an undeclared smart host (its mail is not at stake)', async () => {
    const relay = await world.addMx('i16-nopolicy-owner.test', 'relay.i16-nopolicy.test');
    const { send } = guarded({ host: 'relay.i16-nopolicy.test', getSocket: socketTo(relay.ip), tls: { ca: world.ca.rootPem } });
    const info = await send(mail('cid@i16-nopolicy-dest.test'));
    expect(info.mtaSts['i16-nopolicy-dest.test']).toMatchObject({ status: 'delivered', relay: { host: 'relay.i16-nopolicy.test' } });
    expect(relay.messages).toHaveLength(1);
  });
});

describe.concurrent('issue 16 item 1: relay: true declares a smart host; a host the policy lists stays an MX host (RFC 8461 §3.4, §4)', () => {
  it('a guarded relay (a submission host with its own enforce policy) with relay: true delivers under the relay\'s own policy; without it, deferred', async () => {
    const relay = await world.addMx('i16-provider.test', 'smtp.i16-provider.test');
    world.publishPolicy('smtp.i16-provider.test', ENFORCE(['smtp.i16-provider.test'], 'prov'));
    const dest = await world.addMx('i16-dest.test', 'mx.i16-dest.test');
    world.publishPolicy('i16-dest.test', ENFORCE(['mx.i16-dest.test'], 'dest'));
    const declared = guarded({ host: 'smtp.i16-provider.test' }, { relay: true });
    const info = await declared.send(mail('dee@i16-dest.test'));
    expect(info.mtaSts['i16-dest.test']).toMatchObject({ status: 'delivered', mode: 'enforce', policyId: 'prov', policyDomain: 'smtp.i16-provider.test', validated: true, relay: { host: 'smtp.i16-provider.test' } });
    expect(relay.messages).toEqual([expect.objectContaining({ secure: true, sni: 'smtp.i16-provider.test', recipients: ['dee@i16-dest.test'] })]);
    expect(declared.recorder.of('smtp.i16-provider.test')).toEqual([expect.objectContaining({ success: true })]);
    expect(dest.connections).toBe(0);
    // The same transport, not declared a smart host: the MX answer cannot prove it is one.
    const undeclared = guarded({ host: 'smtp.i16-provider.test' });
    const error = await sendError(() => undeclared.send(mail('dee@i16-dest.test', 'undeclared')));
    expect(error).toMatchObject({ code: 'EMTASTS', responseCode: 451, temporary: true });
    expect(relay.messages).toHaveLength(1);
  });

  it('the host is listed in the policy but left out of a spoofed MX answer: validated direct delivery without relay: true', async () => {
    const d = 'i16-listed.test';
    const mx1 = await world.addMx(d, `mx1.${d}`);
    await world.addMx(d, `mx2.${d}`, { priority: 20 });
    world.publishPolicy(d, ENFORCE([`mx1.${d}`, `mx2.${d}`]));
    world.dns.setRecords(d, { mx: [{ exchange: `mx2.${d}`, priority: 20 }] });
    const { send } = guarded({ host: `mx1.${d}` });
    const info = await send(mail(`eve@${d}`));
    expect(info.mtaSts[d]).toMatchObject({ status: 'delivered', mode: 'enforce', mx: `mx1.${d}`, validated: true });
    expect(info.mtaSts[d]!.relay).toBeUndefined();
    expect(mx1.messages).toEqual([expect.objectContaining({ secure: true, sni: `mx1.${d}` })]);
  });

  it('relay: true never takes a domain\'s own policy off a host that policy lists: STARTTLS stripped is refused, nothing in plaintext', async () => {
    const d = 'i16-listed-relay.test';
    const mx1 = await world.addMx(d, `mx1.${d}`, { starttls: false });
    world.publishPolicy(d, ENFORCE([`mx1.${d}`]));
    const { send } = guarded({ host: `mx1.${d}` }, { relay: true });
    const error = await sendError(() => send(mail(`fay@${d}`)));
    expect(error).toMatchObject({ code: 'EMTASTS', responseCode: 451, temporary: true });
    expect(error.attempts[0]).toMatchObject({ mx: `mx1.${d}`, resultType: 'starttls-not-supported' });
    expect(mx1.mailFrom).toHaveLength(0);
  });
});
