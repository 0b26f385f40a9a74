/**
 * Where a report goes (RFC 8460 §3 `rua`, §5.3 mail, §5.4 HTTPS, §7 "Reports as DDoS"): the record is the policy
 * domain's choice, the traffic and the network are the sender's. A record cannot make one report into thousands of
 * mails, cannot point the reporter into the sender's own network (by IP literal, by a name whose A record is
 * internal, by userinfo, by `mailto:` to local names), and slow destinations cannot stall a flush beyond its bound.
 * Through the public `/tlsrpt` API, against the loopback test world (DNS, HTTPS with the test CA) and a real
 * smtp-server relay.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createDefaultResolver, type DnsResolver } from '../../src/discovery/resolver.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';
import { createTlsRptReporter, MemoryTlsRptStore, type TlsRptEvent, type TlsRptReporter, type TlsRptReporterOptions } from '../../src/tlsrpt/index.js';
import { DAY_START, HOUR, clock, stsPolicy } from './helpers.js';

let world: TestWorld;
let resolver: DnsResolver;
const reporters: TlsRptReporter[] = [];

/** A real SMTP relay (the caller's `mailTransport`): every RCPT TO it accepted, per message. */
let relay: SMTPServer;
let relayPort: number;
const relayed: string[][] = [];

/** A TCP server that accepts and never says a word (neither TLS nor SMTP). */
let silent: Server;
let silentPort: number;
const silentSockets = new Set<Socket>();
let silentConnections = 0;

const REPORT_DAY = DAY_START; // 2026-11-22; the reporter's clock is on the next day

beforeAll(async () => {
  world = await createTestWorld();
  resolver = createDefaultResolver({ dnsServers: world.dns.servers, timeoutMs: 2000, tries: 1 });
  relay = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData(stream, session, callback) {
      stream.resume();
      stream.on('end', () => {
        relayed.push(session.envelope.rcptTo.map((r) => r.address));
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', () => resolve()));
  relayPort = (relay.server.address() as { port: number }).port;
  silent = createServer((socket) => {
    silentConnections++;
    silentSockets.add(socket);
    socket.on('close', () => silentSockets.delete(socket));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', () => resolve()));
  silentPort = (silent.address() as { port: number }).port;

  // Public names (under .com) that the world's DNS answers with 127.0.0.1, as an attacker's zone could.
  world.addHttpsHost('rebind.example.com', { handler: (_req, res) => void res.writeHead(200).end() });
  world.addHttpsHost('fast.example.com', { handler: (_req, res) => void res.writeHead(200).end() });
  for (const host of ['stall1.example.com', 'stall2.example.com', 'stall3.example.com', 'stall4.example.com', 'stall5.example.com', 'stall6.example.com']) {
    world.addHttpsHost(host, { handler: () => undefined }); // reads the request, never answers
  }
});

afterAll(async () => {
  for (const socket of silentSockets) socket.destroy();
  await Promise.all([world.close(), new Promise<void>((resolve) => relay.close(() => resolve())), new Promise<void>((resolve) => silent.close(() => resolve()))]);
});

afterEach(async () => {
  await Promise.all(reporters.splice(0).map((r) => r.close().catch(() => undefined)));
  relayed.length = 0;
});

/** A reporter on the day after REPORT_DAY with one session recorded for `domain`, publishing `rua`. */
function reporterFor(domain: string, rua: string, extra: Partial<TlsRptReporterOptions> = {}) {
  world.dns.setRecords(`_smtp._tls.${domain}`, { txt: [`v=TLSRPTv1; rua=${rua}`] });
  const events: TlsRptEvent[] = [];
  const warnings: string[] = [];
  const c = clock(REPORT_DAY + 34 * HOUR);
  const r = createTlsRptReporter({
    organizationName: 'Sender Test Org',
    contactInfo: 'tlsrpt@sender.example.com',
    submitter: 'mta.sender.example.com',
    store: new MemoryTlsRptStore(),
    resolver,
    ca: world.ca.rootPem,
    httpsPort: world.httpsPort,
    mailTransport: { host: '127.0.0.1', port: relayPort, ignoreTLS: true },
    transportSignsDkim: true,
    now: c.now,
    flushDelayMs: 60_000,
    logger: { warn: (message: string) => void warnings.push(message) },
    onEvent: (e) => events.push(e),
    ...extra,
  });
  reporters.push(r);
  r.recorder.record({ policy: stsPolicy(domain), at: REPORT_DAY + 10 * HOUR, success: true });
  return { r, events, warnings };
}

const requestsTo = (host: string) => world.httpsRequests.filter((q) => q.hostname === host).length;

describe('RFC 8460 §3 / §7: one record cannot fan a report out', () => {
  it('2 000 addresses in one mailto: URI → maxDestinationsPerReport mails (default 10), duplicates removed, a destinations-limited event and a warning', { timeout: 60_000 }, async () => {
    const addresses = Array.from({ length: 2000 }, (_, i) => `r${i}@rpt.example.com`);
    // A duplicate: the domain compares case-insensitively.
    const rua = `mailto:${['r0@RPT.Example.COM', ...addresses].join('%2C')}`;
    const { r, events, warnings } = reporterFor('fanout.example.org', rua);
    const result = await r.flush();
    expect(relayed.flat().sort()).toEqual(addresses.slice(0, 10).sort());
    expect(relayed).toHaveLength(10);
    expect(result.sent).toHaveLength(1);
    expect(result.sent[0]!.delivered).toHaveLength(10);
    const limited = { type: 'destinations-limited', policyDomain: 'fanout.example.org', published: 2001, duplicates: 1, limit: 10, leftOut: 1990 };
    expect(result.limited).toEqual([expect.objectContaining(limited)]);
    expect(events).toContainEqual(expect.objectContaining(limited));
    expect(warnings.some((w) => /2001 report destinations .*first 10, 1990 left out/.test(w))).toBe(true);
  });

  it('maxDestinationsPerReport is an option, validated at creation', async () => {
    const { r } = reporterFor('three.example.org', `mailto:${['a@rpt.example.com', 'b@rpt.example.com', 'c@rpt.example.com', 'd@rpt.example.com'].join('%2C')}`, { maxDestinationsPerReport: 3 });
    await r.flush();
    expect(relayed.flat().sort()).toEqual(['a@rpt.example.com', 'b@rpt.example.com', 'c@rpt.example.com']);
    expect(() => createTlsRptReporter({ organizationName: 'o', contactInfo: 'c@o.example.com', submitter: 'o.example.com', maxDestinationsPerReport: 0 })).toThrow(/maxDestinationsPerReport/);
    expect(() => createTlsRptReporter({ organizationName: 'o', contactInfo: 'c@o.example.com', submitter: 'o.example.com', maxDestinationPerReport: 3 } as never)).toThrow(/did you mean maxDestinationsPerReport/);
  });
});

describe('report destinations inside the sender network are refused unless allowInternalDestinations', () => {
  it('https://127.0.0.1:… is refused by default (event, warning, no connection) and connected to with allowInternalDestinations', async () => {
    const rua = `https://127.0.0.1:${silentPort}/v1`;
    const before = silentConnections;
    const refused = reporterFor('literal.example.org', rua, { httpsPort: undefined as never, httpsTimeoutMs: 1000 });
    const result = await refused.r.flush();
    expect(result.refused).toEqual([expect.objectContaining({ type: 'destination-refused', destination: `https://127.0.0.1:${silentPort}/v1`, reason: 'internal-address', error: expect.objectContaining({ code: 'TLSRPT_DESTINATION_REFUSED' }) })]);
    expect(refused.events.filter((e) => e.type === 'destination-refused')).toHaveLength(1);
    expect(refused.warnings.some((w) => w.includes('127.0.0.1') && w.includes('refused'))).toBe(true);
    expect(silentConnections).toBe(before);

    const allowed = reporterFor('literal-ok.example.org', `https://127.0.0.1:${silentPort}/v1`, { httpsPort: undefined as never, httpsTimeoutMs: 1000, allowInternalDestinations: true });
    const second = await allowed.r.flush();
    expect(second.refused).toBeUndefined();
    expect(silentConnections).toBe(before + 1); // connected (the silent server then times the POST out)
    expect(second.failed[0]!.failures[0]!.error.code).toBe('TLSRPT_DELIVERY_FAILED');
  });

  it('https://[::1]/, https://169.254.169.254/, https://10.0.0.1/ and IPv4-mapped https://[::ffff:127.0.0.1]/ are refused before connecting', async () => {
    const before = requestsTo('fast.example.com');
    const { r } = reporterFor('literals.example.org', 'https://[::1]/x,https://169.254.169.254/latest,https://10.0.0.1/,https://[::ffff:127.0.0.1]/,https://fast.example.com/literals');
    const result = await r.flush();
    expect(requestsTo('fast.example.com')).toBe(before);
    expect((result.refused ?? []).map((e) => [e.destination, e.reason])).toEqual([
      ['https://[::1]/x', 'internal-address'],
      ['https://169.254.169.254/latest', 'internal-address'],
      ['https://10.0.0.1/', 'internal-address'],
      ['https://[::ffff:127.0.0.1]/', 'internal-address'],
      ['https://fast.example.com/literals', 'internal-address'], // refused at connect: its A record is 127.0.0.1
    ]);
  });

  it('a public name whose A record (test world DNS) is 127.0.0.1 is refused at connect time; delivered with allowInternalDestinations', async () => {
    const before = requestsTo('rebind.example.com');
    const { r, events } = reporterFor('rebind.example.org', 'https://rebind.example.com/v1');
    const result = await r.flush();
    expect(requestsTo('rebind.example.com')).toBe(before);
    expect(events).toContainEqual(expect.objectContaining({ type: 'destination-refused', destination: 'https://rebind.example.com/v1', reason: 'internal-address' }));
    expect(result.failed[0]!.failures[0]!.error).toMatchObject({ code: 'TLSRPT_DESTINATION_REFUSED', details: { reason: 'internal-address', host: 'rebind.example.com', address: '127.0.0.1' } });
    expect(result.sent).toEqual([]);

    const allowed = reporterFor('rebind-ok.example.org', 'https://rebind.example.com/v1', { allowInternalDestinations: true });
    const ok = await allowed.r.flush();
    expect(ok.sent[0]!.delivered).toEqual(['https://rebind.example.com/v1']);
    expect(requestsTo('rebind.example.com')).toBe(before + 1);
  });

  it('https://user:pass@host/ is refused (userinfo), with allowInternalDestinations too', async () => {
    const before = requestsTo('fast.example.com');
    const { r } = reporterFor('userinfo.example.org', 'https://user:pass@fast.example.com/v1', { allowInternalDestinations: true });
    const result = await r.flush();
    expect(result.refused).toEqual([expect.objectContaining({ destination: 'https://user:pass@fast.example.com/v1', reason: 'userinfo' })]);
    expect(result.skipped).toEqual([expect.objectContaining({ type: 'skipped-no-record', error: expect.objectContaining({ code: 'TLSRPT_DESTINATION_REFUSED' }) })]);
    expect(requestsTo('fast.example.com')).toBe(before);
  });

  it('mailto:root@localhost, mailto:x@[127.0.0.1] and other non-public names get no mail; the public address does', async () => {
    const rua = ['mailto:root@localhost', 'mailto:x@[127.0.0.1]', 'mailto:a@printer.local', 'mailto:b@intranet', 'mailto:c@host.localhost', 'mailto:ok@rpt.example.com'].join(',');
    const { r } = reporterFor('mailto.example.org', rua);
    const result = await r.flush();
    expect(relayed).toEqual([['ok@rpt.example.com']]);
    expect(result.sent[0]!.delivered).toEqual(['mailto:ok@rpt.example.com']);
    expect((result.refused ?? []).map((e) => [e.destination, e.reason])).toEqual([
      ['mailto:root@localhost', 'non-public-name'],
      ['mailto:a@printer.local', 'non-public-name'],
      ['mailto:b@intranet', 'non-public-name'],
      ['mailto:c@host.localhost', 'non-public-name'],
    ]);
    // x@[127.0.0.1] is not even a destination: a domain literal is no report address (the record keeps it in `ignored`).

    const allowed = reporterFor('mailto-ok.example.org', 'mailto:root@localhost', { allowInternalDestinations: true });
    await allowed.r.flush();
    expect(relayed).toContainEqual(['root@localhost']);
  });
});

describe('slow destinations do not stall the others beyond the bound', () => {
  it('destinations are sent in parallel: two that never answer cost one httpsTimeoutMs, and the fast one is delivered', { timeout: 30_000 }, async () => {
    const rua = 'https://stall1.example.com/,https://stall2.example.com/,https://fast.example.com/parallel';
    const { r } = reporterFor('parallel.example.org', rua, { allowInternalDestinations: true, httpsTimeoutMs: 3000 });
    const t0 = Date.now();
    const result = await r.flush();
    const elapsed = Date.now() - t0;
    expect(result.sent[0]!.delivered).toEqual(['https://fast.example.com/parallel']);
    expect(result.sent[0]!.failures.map((f) => f.uri)).toEqual(['https://stall1.example.com/', 'https://stall2.example.com/']);
    expect(elapsed).toBeLessThan(5500); // one after another: 2 × 3000 ms and more
  });

  it('sendTimeoutMs bounds one report: 6 silent HTTPS endpoints and a silent SMTP relay, 2 at a time, end at the deadline', { timeout: 30_000 }, async () => {
    const rua = [1, 2, 3, 4, 5, 6].map((i) => `https://stall${i}.example.com/`).join(',') + ',mailto:x@rpt.example.com';
    const { r, events } = reporterFor('bounded.example.org', rua, {
      allowInternalDestinations: true,
      sendTimeoutMs: 1500,
      sendConcurrency: 2,
      mailTransport: { host: '127.0.0.1', port: silentPort, ignoreTLS: true }, // greets never (Nodemailer would wait 30 s)
    });
    const t0 = Date.now();
    const result = await r.flush();
    const elapsed = Date.now() - t0;
    expect(elapsed).toBeLessThan(4000);
    expect(result.failed).toHaveLength(1);
    const failures = result.failed[0]!.failures;
    expect(failures).toHaveLength(7);
    for (const f of failures) expect(f.error).toMatchObject({ code: 'TLSRPT_DELIVERY_FAILED', details: { reason: 'deadline', sendTimeoutMs: 1500 } });
    expect(events.filter((e) => e.type === 'failed')).toHaveLength(1);
  });

  it('sendTimeoutMs, sendConcurrency and allowInternalDestinations are options, validated at creation', async () => {
    const base = { organizationName: 'o', contactInfo: 'c@o.example.com', submitter: 'o.example.com' };
    await createTlsRptReporter({ ...base, sendTimeoutMs: 30_000, sendConcurrency: 2, allowInternalDestinations: false, maxDestinationsPerReport: 5 }).close();
    expect(() => createTlsRptReporter({ ...base, sendTimeoutMs: 0 })).toThrow(/sendTimeoutMs/);
    expect(() => createTlsRptReporter({ ...base, sendConcurrency: 0.5 })).toThrow(/sendConcurrency/);
    expect(() => createTlsRptReporter({ ...base, allowInternalDestinations: 'yes' as never })).toThrow(/allowInternalDestinations/);
  });
});
