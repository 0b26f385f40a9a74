/**
 * Reused DNS answers never outlive their TTL (RFC 1035 §3.2.1, RFC 2181 §8), through the direct Nodemailer
 * transport on the loopback world, whose records have TTL 0 unless a test sets one. Delivery is judged from what
 * the MX servers received.
 */
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMtaStsTransport, type MtaStsSentMessageInfo } from '../../src/integrations/nodemailer/index.js';
import type { MtaSts } from '../../src/engine.js';
import type { TestMxHost, TestWorld } from '../../src/testing/index.js';
import { LoopbackAddressPool, startMxHost } from '../../src/testing/smtp-hosts.js';
import { mail, startWorld, stopWorld, transportOptions } from './helpers.js';

let world: TestWorld;
let engine: MtaSts;
const closers: Array<() => unknown> = [];

beforeAll(async () => {
  ({ world, engine } = await startWorld());
});
afterAll(async () => {
  for (const close of closers) await close();
  await stopWorld(world, engine);
});

const ENFORCE = (mx: string[], id: string) => ({ id, mode: 'enforce' as const, mx, maxAge: 86400 });

function sender(mtaSts: MtaSts = engine) {
  const transport = createMtaStsTransport(transportOptions(world, { mtaSts }));
  closers.push(() => transport.close());
  const mailer = nodemailer.createTransport(transport);
  return (to: string, subject?: string) => mailer.sendMail(mail(to, subject)) as Promise<MtaStsSentMessageInfo>;
}

/** A second MX server for `host` (a valid certificate for that name) on a fresh loopback address. */
async function anotherServerFor(host: string): Promise<TestMxHost> {
  const pool = new LoopbackAddressPool();
  for (let attempt = 0; ; attempt++) {
    try {
      const mx = await startMxHost({ host, ip: pool.take(), port: world.smtpPort, ca: world.ca });
      closers.push(() => mx.close());
      return mx;
    } catch (error) {
      if (attempt >= 4) throw error;
      pool.switchSubnet();
    }
  }
}

const count = (name: string, type: string) => world.dns.queries.filter((q) => q.name === name && q.type === type).length;

describe.concurrent('RFC 1035 §3.2.1 / RFC 2181 §8: TTL 0 answers are not reused by the transport', () => {
  it('a new enforce policy listing only mx2, with the MX record moved to mx2: the next message goes to mx2 at once', async () => {
    const d = 'ttl-move.test';
    const mx1 = await world.addMx(d, `mx1.${d}`);
    world.publishPolicy(d, ENFORCE([`mx1.${d}`], 'v1'));
    const send = sender();
    expect((await send(`ann@${d}`)).mtaSts[d]).toMatchObject({ status: 'delivered', policyId: 'v1', mx: `mx1.${d}` });

    const mx2 = await world.addMx(`other.${d}`, `mx2.${d}`);
    world.dns.setRecords(d, { mx: [{ exchange: `mx2.${d}`, priority: 10 }] }); // TTL 0
    world.publishPolicy(d, ENFORCE([`mx2.${d}`], 'v2'));
    const info = await send(`ann@${d}`, 'after the move');
    expect(info.mtaSts[d]).toMatchObject({ status: 'delivered', mode: 'enforce', policyId: 'v2', mx: `mx2.${d}`, validated: true });
    expect(mx2.messages).toHaveLength(1);
    expect(mx1.messages).toHaveLength(1);
  });

  it("after a cached enforce delivery the MX host's address record changes: the next message goes to the new address", async () => {
    const d = 'ttl-addr.test';
    const before = await world.addMx(d, `mx.${d}`);
    world.publishPolicy(d, ENFORCE([`mx.${d}`], 'a1'));
    const send = sender();
    expect((await send(`bea@${d}`)).mtaSts[d]).toMatchObject({ status: 'delivered', policyId: 'a1', ip: before.ip });

    const after = await anotherServerFor(`mx.${d}`);
    world.dns.setRecords(`mx.${d}`, { a: [after.ip] }); // TTL 0
    const info = await send(`bea@${d}`, 'after the renumbering');
    expect(info.mtaSts[d]).toMatchObject({ status: 'delivered', mode: 'enforce', policySource: 'cache', ip: after.ip, validated: true });
    expect(after.messages).toHaveLength(1);
    expect(before.messages).toHaveLength(1);
  });

  it('nothing changed: the MX answer (no TTL from node:dns) is reused within dnsAnswerCacheMs, the TTL 0 address is asked again', async () => {
    const d = 'ttl-same.test';
    await world.addMx(d, `mx.${d}`);
    world.publishPolicy(d, ENFORCE([`mx.${d}`], 's1'));
    const send = sender();
    await send(`cai@${d}`);
    const [mx, a] = [count(d, 'MX'), count(`mx.${d}`, 'A')];
    await send(`cai@${d}`, 'again');
    expect(count(d, 'MX')).toBe(mx);
    expect(count(`mx.${d}`, 'A')).toBe(a + 1);
  });
});

describe('answers with a TTL are reused up to min(TTL, dnsAnswerCacheMs)', () => {
  it('with the default dnsAnswerCacheMs (5 s), an address record with TTL 1 is reused for a second, then asked again; one with TTL 60 is reused', async () => {
    const d = 'ttl-one.test';
    const mx = await world.addMx(d, `mx.${d}`);
    world.dns.setRecords(`mx.${d}`, { a: [mx.ip], ttl: 1 });
    world.dns.setRecords(`long.${d}`, { a: ['192.0.2.1'], ttl: 60 });
    world.publishPolicy(d, ENFORCE([`mx.${d}`], 'o1'));
    const send = sender();
    await send(`dee@${d}`);
    await engine.resolver.resolve4(`long.${d}`);
    await send(`dee@${d}`, 'within the TTL');
    expect(count(`mx.${d}`, 'A')).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await send(`dee@${d}`, 'after the TTL');
    expect(await engine.resolver.resolve4(`long.${d}`)).toEqual(['192.0.2.1']);
    expect(count(`mx.${d}`, 'A')).toBe(2);
    expect(count(`long.${d}`, 'A')).toBe(1);
    expect(mx.messages).toHaveLength(3);
  });
});
