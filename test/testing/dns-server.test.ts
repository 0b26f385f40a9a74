import { Resolver } from 'node:dns/promises';
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startTestDnsServer, type TestDnsServer } from '../../src/testing/index.js';

let dns: TestDnsServer;
beforeAll(async () => {
  dns = await startTestDnsServer();
});
afterAll(async () => {
  await dns.close();
});
beforeEach(() => {
  dns.clearQueryLog();
});

function resolver(timeout = 2000): Resolver {
  const r = new Resolver({ timeout, tries: 1 });
  r.setServers(dns.servers);
  return r;
}

/** One raw query over TCP with 2-byte framing. */
async function tcpQuery(packet: dnsPacket.Packet): Promise<dnsPacket.DecodedPacket> {
  const socket = net.connect(dns.port, dns.address);
  const query = dnsPacket.encode(packet);
  const frame = Buffer.alloc(2 + query.length);
  frame.writeUInt16BE(query.length, 0);
  query.copy(frame, 2);
  socket.write(frame);
  let buffer = Buffer.alloc(0);
  for await (const chunk of socket) {
    buffer = Buffer.concat([buffer, chunk as Buffer]);
    if (buffer.length >= 2 && buffer.length >= 2 + buffer.readUInt16BE(0)) break;
  }
  socket.destroy();
  return dnsPacket.decode(buffer.subarray(2));
}

describe('test DNS server', () => {
  it('listens on the same port for UDP and TCP on 127.0.0.1', () => {
    expect(dns.address).toBe('127.0.0.1');
    expect(dns.servers).toEqual([`127.0.0.1:${dns.port}`]);
  });

  it('answers A, AAAA, MX and TXT, case-insensitively and ignoring a trailing dot', async () => {
    dns.setRecords('Example.TEST.', {
      a: ['192.0.2.1', '192.0.2.2'],
      aaaa: ['2001:db8::1'],
      mx: [{ exchange: 'mx1.example.test', priority: 10 }, { exchange: 'mx2.example.test', priority: 20 }],
      txt: ['v=spf1 -all', ['two', 'strings']],
    });
    const r = resolver();
    expect((await r.resolve4('example.test')).sort()).toEqual(['192.0.2.1', '192.0.2.2']);
    expect(await r.resolve6('EXAMPLE.test')).toEqual(['2001:db8::1']);
    expect((await r.resolveMx('example.test.')).map(({ exchange, priority }) => ({ exchange, priority })).sort((a, b) => a.priority - b.priority)).toEqual([
      { exchange: 'mx1.example.test', priority: 10 },
      { exchange: 'mx2.example.test', priority: 20 },
    ]);
    expect(await r.resolveTxt('example.test')).toEqual(expect.arrayContaining([['v=spf1 -all'], ['two', 'strings']]));
    expect(dns.queries.map((q) => q.type)).toEqual(['A', 'AAAA', 'MX', 'TXT']);
    expect(dns.queries.every((q) => q.name === 'example.test')).toBe(true);
  });

  it('sends every answer with TTL 0', async () => {
    dns.setRecords('ttl.test', { a: ['192.0.2.9'] });
    expect(await resolver().resolve4('ttl.test', { ttl: true })).toEqual([{ address: '192.0.2.9', ttl: 0 }]);
  });

  it('splits long TXT values into 255-byte character-strings and retries a too-big answer over TCP', async () => {
    const long = 'v=STSv1; id=' + 'x'.repeat(600) + ';';
    dns.setRecords('_mta-sts.long.test', { txt: [long] });
    const records = await resolver().resolveTxt('_mta-sts.long.test');
    expect(records).toHaveLength(1);
    expect(records[0]!.map((s) => s.length)).toEqual([255, 255, long.length - 510]);
    expect(records[0]!.join('')).toBe(long);

    dns.setRecords('big.test', { txt: Array.from({ length: 10 }, (_, i) => `${i}`.repeat(200)) });
    expect(await resolver().resolveTxt('big.test')).toHaveLength(10);
    expect(dns.queries.filter((q) => q.name === 'big.test').map((q) => q.transport)).toEqual(['udp', 'tcp']);
  });

  it('refuses explicit TXT character-strings over 255 bytes', () => {
    expect(() => dns.setRecords('bad.test', { txt: [['y'.repeat(256)]] })).toThrow(RangeError);
  });

  it('follows CNAME chains and answers CNAME queries', async () => {
    dns.setRecords('alias.test', { cname: 'middle.test' });
    dns.setRecords('middle.test', { cname: 'target.test' });
    dns.setRecords('target.test', { a: ['192.0.2.7'], txt: ['hello'] });
    const r = resolver();
    expect(await r.resolve4('alias.test')).toEqual(['192.0.2.7']);
    expect(await r.resolveTxt('alias.test')).toEqual([['hello']]);
    expect(await r.resolveCname('alias.test')).toEqual(['middle.test']);
    const answer = await tcpQuery({ type: 'query', id: 1, questions: [{ type: 'A', name: 'alias.test' }] });
    expect(answer.answers?.map((a) => a.type)).toEqual(['CNAME', 'CNAME', 'A']);
  });

  it('bounds CNAME loops', async () => {
    dns.setRecords('loop1.test', { cname: 'loop2.test' });
    dns.setRecords('loop2.test', { cname: 'loop1.test' });
    const answer = await tcpQuery({ type: 'query', id: 2, questions: [{ type: 'A', name: 'loop1.test' }] });
    expect(answer.answers!.length).toBeLessThanOrEqual(9);
  });

  it('answers NXDOMAIN for unknown names and NODATA for missing types', async () => {
    dns.setRecords('only-a.test', { a: ['192.0.2.3'] });
    const r = resolver();
    await expect(r.resolveTxt('nowhere.test')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    await expect(r.resolveTxt('only-a.test')).rejects.toMatchObject({ code: 'ENODATA' });
    dns.setRecords('_mta-sts.parent.test', { txt: ['v=STSv1; id=1;'] });
    await expect(r.resolveMx('parent.test')).rejects.toMatchObject({ code: 'ENODATA' }); // empty non-terminal
    const nx = await tcpQuery({ type: 'query', id: 3, questions: [{ type: 'TXT', name: 'nowhere.test' }] });
    expect(nx).toMatchObject({ rcode: 'NXDOMAIN', flag_aa: true });
  });

  it('replaces, merges and removes records', async () => {
    dns.setRecords('edit.test', { a: ['192.0.2.1'], mx: [{ exchange: 'mx.edit.test', priority: 10 }] });
    dns.addRecords('edit.test', { a: ['192.0.2.2', '192.0.2.1'], mx: [{ exchange: 'MX.edit.test', priority: 5 }] });
    expect(dns.getRecords('edit.test')).toEqual({ a: ['192.0.2.1', '192.0.2.2'], mx: [{ exchange: 'MX.edit.test', priority: 5 }] });
    dns.setRecords('edit.test', { txt: ['new'] });
    const r = resolver();
    await expect(r.resolve4('edit.test')).rejects.toMatchObject({ code: 'ENODATA' });
    dns.removeName('edit.test');
    await expect(r.resolveTxt('edit.test')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    expect(dns.getRecords('edit.test')).toBeUndefined();
  });

  it('injects SERVFAIL, REFUSED and timeouts, per name or per name and type', async () => {
    dns.setRecords('flaky.test', { a: ['192.0.2.5'], txt: ['ok'] });
    const r = resolver(150);
    dns.fail('flaky.test', 'servfail');
    await expect(r.resolve4('flaky.test')).rejects.toMatchObject({ code: 'ESERVFAIL' });
    dns.fail('flaky.test', 'refused');
    await expect(r.resolve4('flaky.test')).rejects.toMatchObject({ code: 'EREFUSED' });
    dns.fail('flaky.test', null);
    dns.fail('FLAKY.test', 'timeout', 'TXT');
    const started = Date.now();
    await expect(r.resolveTxt('flaky.test')).rejects.toMatchObject({ code: 'ETIMEOUT' });
    expect(Date.now() - started).toBeLessThan(2000);
    expect(await r.resolve4('flaky.test')).toEqual(['192.0.2.5']);
    dns.fail('flaky.test', null, 'TXT');
    expect(await r.resolveTxt('flaky.test')).toEqual([['ok']]);
    dns.fail('nxdomain-but-failing.test', 'servfail');
    await expect(r.resolve4('nxdomain-but-failing.test')).rejects.toMatchObject({ code: 'ESERVFAIL' });
  });

  it('logs queries so tests can count them', async () => {
    dns.setRecords('_mta-sts.count.test', { txt: ['v=STSv1; id=1;'] });
    const r = resolver();
    await Promise.all([r.resolveTxt('_mta-sts.count.test'), r.resolveTxt('_mta-sts.count.test')]);
    expect(dns.queries.filter((q) => q.name === '_mta-sts.count.test' && q.type === 'TXT')).toHaveLength(2);
    dns.clearQueryLog();
    expect(dns.queries).toHaveLength(0);
  });

  it('answers EDNS queries with an OPT record and ignores malformed packets', async () => {
    dns.setRecords('edns.test', { a: ['192.0.2.8'] });
    const socket = dgram.createSocket('udp4');
    const replies: Buffer[] = [];
    socket.on('message', (msg) => replies.push(msg));
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    const send = (buf: Buffer): Promise<void> =>
      new Promise((resolve, reject) => socket.send(buf, dns.port, dns.address, (e) => (e ? reject(e) : resolve())));
    await send(Buffer.from([1, 2, 3]));
    await send(Buffer.alloc(40, 0xff));
    await send(
      dnsPacket.encode({
        type: 'query',
        id: 42,
        flags: dnsPacket.RECURSION_DESIRED,
        questions: [{ type: 'A', name: 'edns.test' }],
        additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }],
      }),
    );
    for (let i = 0; i < 100 && replies.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    socket.close();
    expect(replies).toHaveLength(1);
    const reply = dnsPacket.decode(replies[0]!);
    expect(reply).toMatchObject({ id: 42, rcode: 'NOERROR', flag_aa: true, flag_rd: true });
    expect(reply.answers).toEqual([expect.objectContaining({ type: 'A', data: '192.0.2.8', ttl: 0 })]);
    expect(reply.additionals?.[0]?.type).toBe('OPT');
    // still serving after the garbage
    expect(await resolver().resolve4('edns.test')).toEqual(['192.0.2.8']);
  });

  it('close() is idempotent', async () => {
    const other = await startTestDnsServer();
    await Promise.all([other.close(), other.close()]);
    await other.close();
  });
});
