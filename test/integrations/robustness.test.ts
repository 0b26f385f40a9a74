/**
 * Failures of the seams around a delivery (a TLS-RPT recorder, an `outcome` listener, custom hooks) against the
 * loopback world: reporting never affects delivery, no unhandled rejection, and a hook that throws never leaves an
 * SMTP connection open (the session is closed and refused for that MX host: fail closed, RFC 8461 §5.1 defers).
 */
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MtaSts } from '../../src/engine.js';
import { createMtaStsTransport, type MtaStsSentMessageInfo } from '../../src/integrations/nodemailer/index.js';
import { MtaStsHooks, type SessionVerdict } from '../../src/integrations/hooks.js';
import type { TestMxHost, TestWorld } from '../../src/testing/index.js';
import { FAST_MS, mail, sendError, startWorld, stopWorld, transportOptions } from './helpers.js';

let world: TestWorld;
let engine: MtaSts;

beforeAll(async () => {
  ({ world, engine } = await startWorld());
});
afterAll(async () => {
  await stopWorld(world, engine);
});

/** Transport options around given hooks (which carry the engine and the DNS deadline). */
const withHooks = (hooks: MtaStsHooks) => ({ hooks, smtpPort: world.smtpPort, name: 'sender.example', ...FAST_MS, socketTimeoutMs: 120_000 });

const ENFORCE = (mx: string[]) => ({ id: 'r1', mode: 'enforce' as const, mx, maxAge: 86400 });

/** Resolves when `check()` holds, or rejects after `withinMs`. */
async function eventually(check: () => boolean, withinMs: number): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${withinMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Collects unhandled rejections while `run` runs (and a little after, for late promise jobs). */
async function watchUnhandled(run: () => Promise<void>): Promise<unknown[]> {
  const seen: unknown[] = [];
  const listener = (reason: unknown) => seen.push(reason);
  process.on('unhandledRejection', listener);
  try {
    await run();
    await new Promise((resolve) => setTimeout(resolve, 100));
  } finally {
    process.off('unhandledRejection', listener);
  }
  return seen;
}

describe('RFC 8460 reporting never affects delivery', () => {
  it('a recorder whose record() rejects: no unhandled rejection, the mail delivered once, logged once per burst', async () => {
    const mx = await world.addMx('rb-recorder.test', 'mx1.rb-recorder.test');
    world.publishPolicy('rb-recorder.test', ENFORCE(['mx1.rb-recorder.test']));
    const warnings: string[] = [];
    const logger = { warn: (message: string) => warnings.push(message) };
    let calls = 0;
    const recorder = {
      record: async () => {
        calls++;
        throw new Error('db down');
      },
    };
    const transport = createMtaStsTransport(transportOptions(world, { mtaSts: engine, recorder, logger }));
    const transporter = nodemailer.createTransport(transport);
    const infos: MtaStsSentMessageInfo[] = [];
    const unhandled = await watchUnhandled(async () => {
      infos.push((await transporter.sendMail(mail('amy@rb-recorder.test', 'one'))) as unknown as MtaStsSentMessageInfo);
      infos.push((await transporter.sendMail(mail('amy@rb-recorder.test', 'two'))) as unknown as MtaStsSentMessageInfo);
    });
    transport.close();
    expect(unhandled).toEqual([]);
    expect(calls).toBe(2);
    expect(infos.map((i) => i.accepted)).toEqual([['amy@rb-recorder.test'], ['amy@rb-recorder.test']]);
    expect(mx.messages.map((m) => m.recipients)).toEqual([['amy@rb-recorder.test'], ['amy@rb-recorder.test']]);
    expect(warnings.filter((w) => /TLS-RPT recorder failed/.test(w))).toHaveLength(1);
  });

  it('an outcome listener that throws, or an async one that rejects: no unhandled rejection, the mail delivered once', async () => {
    const mx = await world.addMx('rb-listener.test', 'mx1.rb-listener.test');
    world.publishPolicy('rb-listener.test', ENFORCE(['mx1.rb-listener.test']));
    const hooks = new MtaStsHooks({ mtaSts: engine, dnsTimeoutMs: 2000 });
    hooks.on('outcome', async () => {
      throw new Error('async listener bug');
    });
    const transport = createMtaStsTransport(withHooks(hooks));
    transport.on('outcome', async () => {
      throw new Error('async transport listener bug');
    });
    hooks.on('outcome', () => {
      throw new Error('listener bug');
    });
    const transporter = nodemailer.createTransport(transport);
    let info: MtaStsSentMessageInfo | undefined;
    const unhandled = await watchUnhandled(async () => {
      info = (await transporter.sendMail(mail('bo@rb-listener.test'))) as unknown as MtaStsSentMessageInfo;
    });
    transport.close();
    expect(unhandled).toEqual([]);
    expect(info?.accepted).toEqual(['bo@rb-listener.test']);
    expect(mx.messages).toHaveLength(1);
  });
});

/** Hooks whose session checks have a bug. */
class BrokenHooks extends MtaStsHooks {
  broken: 'verifySession' | 'handshakeFailed' = 'verifySession';
  override verifySession(...args: Parameters<MtaStsHooks['verifySession']>): SessionVerdict {
    if (this.broken === 'verifySession') throw new Error('verifySession bug');
    return super.verifySession(...args);
  }
  override handshakeFailed(...args: Parameters<MtaStsHooks['handshakeFailed']>): SessionVerdict {
    if (this.broken === 'handshakeFailed') throw new Error('handshakeFailed bug');
    return super.handshakeFailed(...args);
  }
}

describe('custom hooks that throw during a session', () => {
  it('verifySession throws: the connection is closed at once (not at the socket timeout), nothing sent, a temporary failure', async () => {
    const mx: TestMxHost = await world.addMx('rb-verify.test', 'mx1.rb-verify.test');
    world.publishPolicy('rb-verify.test', ENFORCE(['mx1.rb-verify.test']));
    const hooks = new BrokenHooks({ mtaSts: engine, dnsTimeoutMs: 2000 });
    const transport = createMtaStsTransport(withHooks(hooks));
    const transporter = nodemailer.createTransport(transport);
    const error = await sendError(() => transporter.sendMail(mail('cy@rb-verify.test')));
    expect(error).toMatchObject({ temporary: true, responseCode: 451 });
    expect(error.attempts[0]).toMatchObject({ mx: 'mx1.rb-verify.test', outcome: 'refused', stage: 'policy', reason: expect.stringMatching(/verifySession\(\) threw/) });
    expect(mx.connections).toBe(1);
    await eventually(() => mx.openConnections === 0, 1500);
    expect(mx.messages).toHaveLength(0);
    expect(mx.mailFrom).toHaveLength(0);
    transport.close();
  });

  it('handshakeFailed throws: only that MX host is refused, the next one (valid) gets the message', async () => {
    const bad = await world.addMx('rb-handshake.test', 'mx1.rb-handshake.test', { cert: 'expired', priority: 10 });
    const good = await world.addMx('rb-handshake.test', 'mx2.rb-handshake.test', { priority: 20 });
    world.publishPolicy('rb-handshake.test', ENFORCE(['*.rb-handshake.test']));
    const hooks = new BrokenHooks({ mtaSts: engine, dnsTimeoutMs: 2000 });
    hooks.broken = 'handshakeFailed';
    const transport = createMtaStsTransport(withHooks(hooks));
    const info = (await nodemailer.createTransport(transport).sendMail(mail('di@rb-handshake.test'))) as unknown as MtaStsSentMessageInfo;
    expect(info.mtaSts['rb-handshake.test']).toMatchObject({ status: 'delivered', mx: 'mx2.rb-handshake.test', validated: true });
    expect(info.mtaSts['rb-handshake.test']!.attempts[0]).toMatchObject({ mx: 'mx1.rb-handshake.test', outcome: 'refused', reason: expect.stringMatching(/handshakeFailed\(\) threw/) });
    expect(bad.messages).toHaveLength(0);
    await eventually(() => bad.openConnections === 0, 1500);
    expect(good.messages).toHaveLength(1);
    transport.close();
  });
});
