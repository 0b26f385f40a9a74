/**
 * Sender requirements of RFC 8461 that docs/conformance.md lists and no other test pinned down, against the loopback
 * world's real DNS, HTTPS policy hosts and SMTP MX hosts.
 *
 * - §4, §5, §8.4: under `enforce` an MX host that fails certificate validation is skipped and the next MX candidate
 *   is tried in the same attempt (MX traversal kept), rather than the message being deferred at the first failure.
 * - §3.3: a failed proactive refresh is made visible to administrators (a logger warning naming the domain), while
 *   the cached policy keeps applying.
 */
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMtaSts, type MtaSts } from '../../src/engine.js';
import { createMtaStsTransport, type MtaStsSentMessageInfo } from '../../src/integrations/nodemailer/index.js';
import type { TestWorld } from '../../src/testing/index.js';
import { mail, MemoryRecorder, receivedFor, startWorld, stopWorld, transportOptions } from '../integrations/helpers.js';

let world: TestWorld;
let engine: MtaSts;
const closers: Array<{ close(): unknown }> = [];

beforeAll(async () => {
  ({ world, engine } = await startWorld());
});
afterAll(async () => {
  for (const c of closers) await c.close();
  await stopWorld(world, engine);
});

describe('RFC 8461 §4, §5, §8.4 MX candidate traversal under enforce', () => {
  it('an MX whose certificate fails validation is skipped and the next MX gets the message, in the same attempt', async () => {
    const bad = await world.addMx('traverse.test', 'mx1.traverse.test', { priority: 10, cert: 'wrong-name' });
    const good = await world.addMx('traverse.test', 'mx2.traverse.test', { priority: 20 });
    world.publishPolicy('traverse.test', { id: 'tr1', mode: 'enforce', mx: ['*.traverse.test'], maxAge: 86400 });
    const recorder = new MemoryRecorder();
    const transport = createMtaStsTransport(transportOptions(world, { mtaSts: engine, recorder }));
    closers.push(transport);
    const info = (await nodemailer.createTransport(transport).sendMail(mail('ivy@traverse.test'))) as MtaStsSentMessageInfo;

    expect(bad.connections).toBeGreaterThan(0); // it was tried first, in MX preference order
    expect(bad.messages).toHaveLength(0); // and got nothing
    expect(good.messages).toHaveLength(1);
    expect(receivedFor(world, 'traverse.test')).toEqual([expect.objectContaining({ mxHost: 'mx2.traverse.test', secure: true, sni: 'mx2.traverse.test' })]);
    expect(info.accepted).toEqual(['ivy@traverse.test']);
    expect(info.mtaSts['traverse.test']).toMatchObject({ status: 'delivered', mode: 'enforce', mx: 'mx2.traverse.test', validated: true });
    expect(recorder.of('traverse.test').map((o) => [o.success, o.failure?.resultType, o.failure?.receivingMxHostname])).toEqual([
      [false, 'certificate-host-mismatch', 'mx1.traverse.test'],
      [true, undefined, undefined],
    ]);
  });
});

describe('RFC 8461 §3.3 failed refreshes are visible to administrators', () => {
  it('a proactive refresh that cannot fetch the policy logs a warning naming the domain; the cached policy still applies', async () => {
    const warnings: Array<{ message: string; details: unknown }> = [];
    const logger = { warn: (message: string, details?: unknown) => void warnings.push({ message, details }) };
    let t = Date.now();
    const mta = createMtaSts({ ...world.mtaStsOptions(), fetchTimeoutMs: 2000, dnsTimeoutMs: 2000, refreshIntervalMs: 0, now: () => t, logger });
    closers.push(mta);
    world.publishPolicy('refresh-alert.test', { id: 'ra1', mode: 'enforce', mx: ['mx.refresh-alert.test'], maxAge: 86400 });
    expect((await mta.getPolicy('refresh-alert.test')).status).toBe('policy');
    expect(warnings).toEqual([]);

    // The domain announces a new policy id, but its policy host now fails.
    world.publishPolicy('refresh-alert.test', { id: 'ra2', mode: 'enforce', mx: ['mx.refresh-alert.test'], maxAge: 86400, host: { kind: 'status', status: 503 } });
    t += 60_000;
    expect(await mta.refreshDue()).toBe(0);

    expect(warnings).toContainEqual({ message: expect.stringMatching(/fetch failed/), details: expect.objectContaining({ domain: 'refresh-alert.test', code: 'MTASTS_HTTP_STATUS' }) });
    const still = await mta.getPolicy('refresh-alert.test');
    expect(still).toMatchObject({ status: 'policy', policy: { mode: 'enforce', id: 'ra1' } });
  });
});
