import https from 'node:https';
import tls from 'node:tls';
import { Resolver } from 'node:dns/promises';
import { Agent, request as undiciRequest } from 'undici';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createTestWorld, formatPolicy, REDIRECT_TARGET_PATH, UNKNOWN_HOST_CERT_NAME, type TestWorld } from '../../src/testing/index.js';
import { httpsGet, policyUrl, worldLookup } from './helpers.js';

let world: TestWorld;
const warn = vi.fn();
beforeAll(async () => {
  world = await createTestWorld({ logger: { debug: () => undefined, warn } });
});
afterAll(async () => {
  await world.close();
});

const POLICY = { id: '20240101', mode: 'enforce', mx: ['mx1.example.test', '*.example.test'] } as const;

describe('policy hosts', () => {
  it('publishes the TXT record, the A record and the policy file', async () => {
    world.publishPolicy('Example.test', { ...POLICY, maxAge: 604800 });
    const resolver = new Resolver({ timeout: 1000, tries: 1 });
    resolver.setServers(world.dns.servers);
    expect(await resolver.resolveTxt('_mta-sts.example.test')).toEqual([['v=STSv1; id=20240101;']]);
    expect(await resolver.resolve4('mta-sts.example.test')).toEqual(['127.0.0.1']);

    const res = await httpsGet(world, policyUrl(world, 'example.test'));
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/plain');
    expect(res.body.toString()).toBe('version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\nmx: *.example.test\r\nmax_age: 604800\r\n');
    expect(world.httpsRequests.at(-1)).toMatchObject({ hostname: 'mta-sts.example.test', method: 'GET', path: '/.well-known/mta-sts.txt' });
  });

  it('replaces the policy when published again, and honours txt and body overrides', async () => {
    const resolver = new Resolver({ timeout: 1000, tries: 1 });
    resolver.setServers(world.dns.servers);
    world.publishPolicy('replace.test', { id: 'a', mode: 'testing', mx: ['mx.replace.test'] });
    world.publishPolicy('replace.test', { id: 'b', mode: 'none', mx: [], body: 'version: STSv1\nmode: none\nmax_age: 1\n' });
    expect(await resolver.resolveTxt('_mta-sts.replace.test')).toEqual([['v=STSv1; id=b;']]);
    expect((await httpsGet(world, policyUrl(world, 'replace.test'))).body.toString()).toBe('version: STSv1\nmode: none\nmax_age: 1\n');

    world.publishPolicy('replace.test', { id: 'c', mode: 'enforce', mx: ['mx.replace.test'], txt: ['v=STSv1; id=c;', 'v=STSv1; id=d;'] });
    expect((await resolver.resolveTxt('_mta-sts.replace.test')).sort()).toEqual([['v=STSv1; id=c;'], ['v=STSv1; id=d;']]);
    world.publishPolicy('replace.test', { id: 'c', mode: 'enforce', mx: ['mx.replace.test'], txt: 'v=STSv1; id=' + 'z'.repeat(300) + ';' });
    expect((await resolver.resolveTxt('_mta-sts.replace.test'))[0]).toHaveLength(2);
    world.publishPolicy('replace.test', { id: 'c', mode: 'enforce', mx: ['mx.replace.test'], txt: null });
    await expect(resolver.resolveTxt('_mta-sts.replace.test')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    expect((await httpsGet(world, policyUrl(world, 'replace.test'))).status).toBe(200);

    world.unpublishPolicy('replace.test');
    await expect(resolver.resolve4('mta-sts.replace.test')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    expect(() => world.setPolicyHost('replace.test', { kind: 'ok' })).toThrow(/no MTA-STS policy/);
  });

  it('serves a custom content type, error statuses and the wrong content type', async () => {
    world.publishPolicy('ct.test', { ...POLICY, host: { kind: 'ok', contentType: 'text/plain; charset=utf-8' } });
    expect((await httpsGet(world, policyUrl(world, 'ct.test'))).headers['content-type']).toBe('text/plain; charset=utf-8');

    for (const status of [404, 500, 503]) {
      world.setPolicyHost('ct.test', { kind: 'status', status });
      expect((await httpsGet(world, policyUrl(world, 'ct.test'))).status).toBe(status);
    }
    world.setPolicyHost('ct.test', { kind: 'wrong-content-type' });
    const res = await httpsGet(world, policyUrl(world, 'ct.test'));
    expect([res.status, res.headers['content-type']]).toEqual([200, 'text/html']);
    expect(res.body.toString()).toBe(formatPolicy(POLICY));
    expect((await httpsGet(world, policyUrl(world, 'ct.test', '/other'))).status).toBe(404);
    expect((await httpsGet(world, policyUrl(world, 'ct.test'), { method: 'POST' })).status).toBe(405);
  });

  it('redirects to a target that serves the policy; clients that do not follow redirects stop there', async () => {
    world.publishPolicy('redirect.test', { ...POLICY, host: { kind: 'redirect' } });
    const before = world.httpsRequests.length;
    const res = await httpsGet(world, policyUrl(world, 'redirect.test'));
    expect(res.status).toBe(301);
    expect(res.headers.location).toBe(`https://mta-sts.redirect.test:${world.httpsPort}${REDIRECT_TARGET_PATH}`);

    const dispatcher = new Agent({ connect: { ca: world.ca.rootPem, lookup: worldLookup(world) } });
    try {
      world.setPolicyHost('redirect.test', { kind: 'redirect', status: 302, location: 'https://elsewhere.test/' });
      const undiciRes = await undiciRequest(policyUrl(world, 'redirect.test'), { dispatcher });
      await undiciRes.body.dump();
      expect([undiciRes.statusCode, undiciRes.headers.location]).toEqual([302, 'https://elsewhere.test/']);
    } finally {
      await dispatcher.close();
    }
    expect(world.httpsRequests.slice(before).map((r) => r.path)).toEqual(['/.well-known/mta-sts.txt', '/.well-known/mta-sts.txt']);
    // A client that wrongly followed the first redirect would have got a policy:
    expect((await httpsGet(world, res.headers.location!)).body.toString()).toBe(formatPolicy(POLICY));
  });

  it('sends an oversize body, chunked or with Content-Length', async () => {
    world.publishPolicy('big.test', { ...POLICY, host: { kind: 'oversize' } });
    const chunked = await httpsGet(world, policyUrl(world, 'big.test'));
    expect(chunked.body.length).toBe(100 * 1024);
    expect(chunked.headers['transfer-encoding']).toBe('chunked');
    expect(chunked.body.subarray(0, 14).toString()).toBe('version: STSv1');

    world.setPolicyHost('big.test', { kind: 'oversize', bytes: 70_000, contentLength: true });
    const sized = await httpsGet(world, policyUrl(world, 'big.test'));
    expect([sized.headers['content-length'], sized.body.length]).toEqual(['70000', 70_000]);
  });

  it('trickles the body one byte at a time and cuts the connection after maxMs', async () => {
    world.publishPolicy('slow.test', { ...POLICY, body: 'abc', host: { kind: 'trickle', intervalMs: 5 } });
    const complete = await httpsGet(world, policyUrl(world, 'slow.test'));
    expect(complete.body.toString()).toBe('abc');

    world.publishPolicy('slow.test', { ...POLICY, host: { kind: 'trickle', intervalMs: 20, maxMs: 150 } });
    const started = Date.now();
    await expect(httpsGet(world, policyUrl(world, 'slow.test'))).rejects.toThrow();
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('never answers when hanging: clients time out, the server gives up after maxMs', async () => {
    world.publishPolicy('hang.test', { ...POLICY, host: { kind: 'hang' } });
    await expect(httpsGet(world, policyUrl(world, 'hang.test'), { timeoutMs: 100 })).rejects.toMatchObject({ code: 'CLIENT_TIMEOUT' });
    world.setPolicyHost('hang.test', { kind: 'hang', maxMs: 100 });
    await expect(httpsGet(world, policyUrl(world, 'hang.test'))).rejects.toMatchObject({ code: 'ECONNRESET' });
  });

  it.each([
    ['wrong-name', 'ERR_TLS_CERT_ALTNAME_INVALID'],
    ['expired', 'CERT_HAS_EXPIRED'],
    ['not-yet-valid', 'CERT_NOT_YET_VALID'],
    ['self-signed', 'DEPTH_ZERO_SELF_SIGNED_CERT'],
  ] as const)('a %s certificate is rejected by verification (%s)', async (cert, code) => {
    const domain = `cert-${cert}.test`;
    world.publishPolicy(domain, { ...POLICY, host: { kind: 'cert', cert } });
    await expect(httpsGet(world, policyUrl(world, domain))).rejects.toMatchObject({ code });
    // the policy itself is fine
    expect((await httpsGet(world, policyUrl(world, domain), { rejectUnauthorized: false })).status).toBe(200);
  });

  it('a cn-only certificate names the host only in its subject CN', async () => {
    world.publishPolicy('cn-only.test', { ...POLICY, host: { kind: 'cert', cert: 'cn-only' } });
    const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const tlsSocket = tls.connect({ host: '127.0.0.1', port: world.httpsPort, servername: 'mta-sts.cn-only.test', ca: world.ca.rootPem });
      tlsSocket.once('secureConnect', () => resolve(tlsSocket));
      tlsSocket.once('error', reject);
    });
    const peer = socket.getPeerCertificate();
    socket.destroy();
    expect(peer.subject.CN).toBe('mta-sts.cn-only.test');
    expect(peer.subjectaltname).toBeUndefined();
  });

  it('a certificate change takes effect on the next connection, even for clients caching TLS sessions', async () => {
    world.publishPolicy('rotate.test', POLICY);
    const agent = new https.Agent({ keepAlive: false, maxCachedSessions: 10 });
    try {
      expect((await httpsGet(world, policyUrl(world, 'rotate.test'), { agent })).status).toBe(200);
      world.setPolicyHost('rotate.test', { kind: 'cert', cert: 'expired' });
      await expect(httpsGet(world, policyUrl(world, 'rotate.test'), { agent })).rejects.toMatchObject({ code: 'CERT_HAS_EXPIRED' });
    } finally {
      agent.destroy();
    }
  });
});

describe('generic HTTPS hosts', () => {
  it('routes to the handler, gives it the body and logs the request', async () => {
    world.addHttpsHost('tlsrpt.receiver.test', {
      handler: (req, res, body) => {
        res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ got: body.length, type: req.headers['content-type'] }));
      },
    });
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = https.request(
        `https://tlsrpt.receiver.test:${world.httpsPort}/report?x=1`,
        { method: 'POST', ca: world.ca.rootPem, lookup: worldLookup(world), agent: false, headers: { 'content-type': 'application/tlsrpt+gzip' } },
        (r) => {
          let body = '';
          r.on('data', (c: Buffer) => (body += c.toString()));
          r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.end(Buffer.alloc(1234, 1));
    });
    expect(res).toEqual({ status: 201, body: JSON.stringify({ got: 1234, type: 'application/tlsrpt+gzip' }) });
    const logged = world.httpsRequests.at(-1)!;
    expect(logged).toMatchObject({ hostname: 'tlsrpt.receiver.test', method: 'POST', path: '/report?x=1' });
    expect(logged.body.length).toBe(1234);
    expect(logged.headers['content-type']).toBe('application/tlsrpt+gzip');
    expect(logged.at).toBeLessThanOrEqual(Date.now());
  });

  it('presents the requested certificate variant', async () => {
    world.addHttpsHost('expired-receiver.test', { cert: 'expired', handler: (_req, res) => res.end('ok') });
    await expect(httpsGet(world, `https://expired-receiver.test:${world.httpsPort}/`)).rejects.toMatchObject({ code: 'CERT_HAS_EXPIRED' });
  });

  it('answers 500 and warns when a handler throws', async () => {
    world.addHttpsHost('broken.test', {
      handler: () => {
        throw new Error('boom');
      },
    });
    expect((await httpsGet(world, `https://broken.test:${world.httpsPort}/`)).status).toBe(500);
    expect(warn).toHaveBeenCalledWith(expect.stringContaining('broken.test'), expect.any(Error));
  });

  it('unknown hosts get a certificate for no real name, and 421 when verification is skipped', async () => {
    world.dns.setRecords('nobody.test', { a: ['127.0.0.1'] });
    await expect(httpsGet(world, `https://nobody.test:${world.httpsPort}/`)).rejects.toMatchObject({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
    expect((await httpsGet(world, `https://nobody.test:${world.httpsPort}/`, { rejectUnauthorized: false })).status).toBe(421);
    world.removeHttpsHost('tlsrpt.receiver.test');
    await expect(httpsGet(world, `https://tlsrpt.receiver.test:${world.httpsPort}/`)).rejects.toThrow(UNKNOWN_HOST_CERT_NAME);
  });
});
