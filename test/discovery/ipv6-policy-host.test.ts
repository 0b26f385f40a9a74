/**
 * A policy host reachable over IPv6 only (RFC 8461 §3.3: the policy is fetched from `mta-sts.<domain>` whatever its
 * address family). The engine asks A and AAAA for the policy host at the same time (bench/README.md: why AAAA is not
 * skipped when A answers), so an AAAA-only host works, and so does a dual-stack host from an IPv6-only sender.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMtaSts } from '../../src/engine.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';

let world: TestWorld;
let forwarder: net.Server;
let forwarded = 0;
beforeAll(async () => {
  world = await createTestWorld();
  // The world's HTTPS hosts listen on 127.0.0.1; a plain TCP forwarder makes them reachable at [::1] on the same port.
  forwarder = net.createServer((client) => {
    forwarded++;
    const upstream = net.connect(world.httpsPort, '127.0.0.1');
    client.pipe(upstream).pipe(client);
    const close = () => (client.destroy(), upstream.destroy());
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  });
  await new Promise<void>((resolve, reject) => forwarder.once('error', reject).listen(world.httpsPort, '::1', () => resolve()));
  world.publishPolicy('v6only.test', { id: 'v6', mode: 'enforce', mx: ['mx.v6only.test'], maxAge: 3600 });
  world.dns.setRecords('mta-sts.v6only.test', { aaaa: ['::1'] }); // no A record
});
afterAll(async () => {
  await new Promise((resolve) => forwarder?.close(resolve));
  await world?.close();
});

describe('policy host addresses', () => {
  it('a policy host with only an AAAA record is fetched over IPv6', async () => {
    const mta = createMtaSts(world.mtaStsOptions());
    try {
      world.dns.clearQueryLog();
      const result = await mta.getPolicy('v6only.test');
      expect(result).toMatchObject({ status: 'policy', source: 'fetched', policy: { mode: 'enforce', id: 'v6' } });
      expect(forwarded).toBe(1);
      const asked = world.dns.queries.filter((q) => q.name === 'mta-sts.v6only.test').map((q) => q.type).sort();
      expect(asked).toEqual(['A', 'AAAA']);
    } finally {
      await mta.close();
    }
  });
});
