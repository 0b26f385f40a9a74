import net from 'node:net';
import { Resolver } from 'node:dns/promises';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestWorld, type TestMxHost, type TestWorld } from '../../src/testing/index.js';

let world: TestWorld;
beforeAll(async () => {
  world = await createTestWorld();
});
afterAll(async () => {
  await world.close();
});

type TlsClientOptions = { minVersion?: 'TLSv1' | 'TLSv1.2'; maxVersion?: 'TLSv1.2'; ciphers?: string; rejectUnauthorized?: boolean };

/** Sends one message straight to `mx`, verifying its certificate against the world CA for its host name. */
function send(mx: TestMxHost, options: { to?: string | string[]; requireTLS?: boolean; ignoreTLS?: boolean; tls?: TlsClientOptions } = {}) {
  const transport = nodemailer.createTransport({
    host: mx.ip,
    port: world.smtpPort,
    name: 'sender.test',
    requireTLS: options.requireTLS ?? true,
    ignoreTLS: options.ignoreTLS ?? false,
    connectionTimeout: 3000,
    greetingTimeout: 3000,
    socketTimeout: 3000,
    tls: { ca: world.ca.rootPem, servername: mx.host, ...options.tls },
  });
  return transport.sendMail({ from: 'alice@sender.test', to: options.to ?? 'bob@example.test', subject: 'Hello MX', text: 'body' });
}

/** The EHLO reply of `mx`, read over a plain socket. */
async function ehlo(mx: TestMxHost): Promise<string> {
  const socket = net.connect(world.smtpPort, mx.ip);
  let received = '';
  let stage: 'greeting' | 'ehlo' | 'done' = 'greeting';
  let reply = '';
  socket.on('data', (chunk: Buffer) => {
    received += chunk.toString();
    if (stage === 'greeting' && /^220 .*\r\n/m.test(received)) {
      stage = 'ehlo';
      received = '';
      socket.write('EHLO probe.test\r\n');
    } else if (stage === 'ehlo' && /^250 .*\r\n/m.test(received)) {
      stage = 'done';
      reply = received;
      socket.end('QUIT\r\n');
    }
  });
  await new Promise((resolve) => socket.on('close', resolve));
  return reply;
}

describe('MX hosts', () => {
  it('publishes MX and A records and gives each host its own loopback address on the shared port', async () => {
    const mx1 = await world.addMx('example.test', 'MX1.example.test');
    const mx2 = await world.addMx('example.test', 'mx2.example.test', { priority: 20 });
    expect(mx1.host).toBe('mx1.example.test');
    expect(mx1.ip).not.toBe(mx2.ip);
    expect(mx1.ip).toMatch(/^127\.(\d+)\.(\d+)\.(\d+)$/);
    expect(mx1.ip.startsWith('127.0.')).toBe(false);
    expect([mx1.port, mx2.port]).toEqual([world.smtpPort, world.smtpPort]);

    const resolver = new Resolver({ timeout: 1000, tries: 1 });
    resolver.setServers(world.dns.servers);
    expect((await resolver.resolveMx('example.test')).map(({ exchange, priority }) => ({ exchange, priority })).sort((a, b) => a.priority - b.priority)).toEqual([
      { exchange: 'mx1.example.test', priority: 10 },
      { exchange: 'mx2.example.test', priority: 20 },
    ]);
    expect(await resolver.resolve4('mx2.example.test')).toEqual([mx2.ip]);
  });

  it('accepts mail over STARTTLS and records TLS version, SNI and envelope', async () => {
    const mx = await world.addMx('tls.test', 'mx.tls.test');
    const info = await send(mx, { to: ['bob@tls.test', 'carol@tls.test'] });
    expect(info.accepted).toEqual(['bob@tls.test', 'carol@tls.test']);
    expect(mx.messages).toHaveLength(1);
    const message = mx.messages[0]!;
    expect(message).toMatchObject({
      mxHost: 'mx.tls.test',
      ip: mx.ip,
      envelopeFrom: 'alice@sender.test',
      recipients: ['bob@tls.test', 'carol@tls.test'],
      secure: true,
      tlsVersion: 'TLSv1.3',
      sni: 'mx.tls.test',
    });
    expect(message.raw.toString()).toContain('Subject: Hello MX');
    expect(world.messages).toContain(message);
    expect(mx.connections).toBe(1);

    await send(mx, { tls: { maxVersion: 'TLSv1.2' } });
    expect(mx.messages[1]?.tlsVersion).toBe('TLSv1.2');
  });

  it('a stripped host does not offer STARTTLS: requireTLS fails, plaintext delivery is recorded as insecure', async () => {
    const mx = await world.addMx('strip.test', 'mx.strip.test', { starttls: false });
    const reply = await ehlo(mx);
    expect(reply).toMatch(/^250[ -]/m);
    expect(reply).not.toMatch(/STARTTLS/);
    await expect(send(mx)).rejects.toThrow(/STARTTLS/);
    expect(mx.messages).toHaveLength(0);

    await send(mx, { requireTLS: false });
    expect(mx.messages[0]).toMatchObject({ secure: false, recipients: ['bob@example.test'] });
    expect(mx.messages[0]?.tlsVersion).toBeUndefined();
    expect(mx.messages[0]?.sni).toBeUndefined();
  });

  it('a legacy-only host refuses clients that require TLS 1.2 and talks TLS 1.1 to those that allow it', async () => {
    const mx = await world.addMx('legacy.test', 'mx.legacy.test', { tls: 'legacy-only' });
    await expect(send(mx, { tls: { minVersion: 'TLSv1.2' } })).rejects.toThrow(/protocol version|unsupported protocol/i);
    expect(mx.messages).toHaveLength(0);
    await send(mx, { tls: { minVersion: 'TLSv1', ciphers: 'DEFAULT:@SECLEVEL=0' } });
    expect(mx.messages[0]?.tlsVersion).toBe('TLSv1.1');
  });

  it('presents broken certificates on request, and can change them', async () => {
    const mx = await world.addMx('badcert.test', 'mx.badcert.test', { cert: 'expired' });
    await expect(send(mx)).rejects.toMatchObject({ code: 'ESOCKET', message: expect.stringMatching(/expired/) });
    mx.setCert('wrong-name');
    await expect(send(mx)).rejects.toThrow(/altnames/);
    mx.setCert('valid');
    await send(mx);
    expect(mx.messages).toHaveLength(1);
  });

  it('rejects the configured recipients with 550', async () => {
    const mx = await world.addMx('reject.test', 'mx.reject.test', { rejectRecipients: ['Nobody@reject.test'] });
    const info = await send(mx, { to: ['nobody@reject.test', 'somebody@reject.test'] });
    expect(info.rejected).toEqual(['nobody@reject.test']);
    expect(info.rejectedErrors?.[0]?.responseCode).toBe(550);
    expect(mx.messages[0]?.recipients).toEqual(['somebody@reject.test']);
    await expect(send(mx, { to: 'nobody@reject.test' })).rejects.toMatchObject({ responseCode: 550 });
  });

  it('adds a running host to another domain, refusing conflicting options', async () => {
    const shared = await world.addMx('one.test', 'mx.shared.test');
    const again = await world.addMx('two.test', 'mx.shared.test', { priority: 5 });
    expect(again).toBe(shared);
    expect(world.dns.getRecords('two.test')?.mx).toEqual([{ exchange: 'mx.shared.test', priority: 5 }]);
    await expect(world.addMx('three.test', 'mx.shared.test', { starttls: false })).rejects.toThrow(/already running/);
    await expect(world.addMx('three.test', 'mx.other.test', { priority: -1 })).rejects.toThrow(RangeError);
  });

  it('a closed host refuses connections; its DNS records stay; the name can be started again', async () => {
    const mx = await world.addMx('down.test', 'mx.down.test');
    await mx.close();
    await mx.close();
    await expect(send(mx)).rejects.toMatchObject({ code: 'ESOCKET' });
    expect(world.dns.getRecords('mx.down.test')?.a).toEqual([mx.ip]);
    const restarted = await world.addMx('down.test', 'mx.down.test');
    expect(restarted).not.toBe(mx);
    await send(restarted);
    expect(restarted.messages).toHaveLength(1);
  });
});
