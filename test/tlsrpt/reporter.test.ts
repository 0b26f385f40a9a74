/**
 * The reporter end to end: real DNS (`_smtp._tls` records in the test world's DNS server), real HTTPS report
 * endpoints, real SMTP servers (the world's MX hosts and an smtp-server started here). Only the clock is injected.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { simpleParser } from 'mailparser';
import nodemailer from 'nodemailer';
import { SMTPServer } from 'smtp-server';
import { createDefaultResolver, type DnsResolver } from '../../src/discovery/resolver.js';
import { createTestWorld, type TestMxHost, type TestWorld } from '../../src/testing/index.js';
import type { TlsRptMailTransport } from '../../src/tlsrpt/deliver.js';
import { gunzipTlsRptReport } from '../../src/tlsrpt/report.js';
import { createTlsRptReporter, type TlsRptEvent, type TlsRptReporter, type TlsRptReporterOptions } from '../../src/tlsrpt/scheduler.js';
import Database from 'better-sqlite3';
import { MemoryTlsRptStore } from '../../src/tlsrpt/store.js';
import type { TlsRptReport } from '../../src/tlsrpt/types.js';
import { DAY, DAY_START, HOUR, clock, schemaErrors, stsPolicy } from './helpers.js';

let world: TestWorld;
let resolver: DnsResolver;
let mx: TestMxHost;
const received = new Map<string, TlsRptReport[]>();
const reporters: TlsRptReporter[] = [];
let dir: string;

/** An HTTPS report endpoint that stores what it receives, answering `status`. */
function endpoint(host: string, status = 200): void {
  world.addHttpsHost(host, {
    handler: (_req, res, body) => {
      void gunzipTlsRptReport(body).then(
        (report) => {
          if (status < 300) received.set(host, [...(received.get(host) ?? []), report]);
          res.writeHead(status).end();
        },
        () => res.writeHead(400).end(),
      );
    },
  });
}

beforeAll(async () => {
  world = await createTestWorld();
  resolver = createDefaultResolver({ dnsServers: world.dns.servers, timeoutMs: 1000, tries: 1 });
  mx = await world.addMx('mail.test', 'mx.mail.test');
  await world.addMx('both.test', 'mx.mail.test');
  world.dns.setRecords('_smtp._tls.https.test', { txt: ['v=TLSRPTv1; rua=https://tlsrpt.https.test/v1'] });
  world.dns.setRecords('_smtp._tls.mail.test', { txt: ['v=TLSRPTv1; rua=mailto:tlsrpt@mail.test'] });
  world.dns.setRecords('_smtp._tls.both.test', { txt: ['v=TLSRPTv1; rua=https://down.both.test/x,mailto:tls%2Breports@both.test'] });
  world.dns.setRecords('_smtp._tls.two.test', { txt: ['v=TLSRPTv1; rua=https://tlsrpt.https.test/two', 'v=TLSRPTv1; rua=mailto:x@two.test'] });
  world.dns.setRecords('_smtp._tls.down.test', { txt: ['v=TLSRPTv1; rua=https://tlsrpt.down.test/'] });
  world.dns.setRecords('_smtp._tls.mailonly.test', { txt: ['v=TLSRPTv1; rua=mailto:tlsrpt@mailonly.test'] });
  endpoint('tlsrpt.https.test');
  endpoint('down.both.test', 500);
  endpoint('tlsrpt.down.test', 503);
});

afterAll(async () => {
  await world.close();
});

afterEach(async () => {
  await Promise.all(reporters.splice(0).map((r) => r.close()));
  received.clear();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function reporter(extra: Partial<TlsRptReporterOptions> = {}): { r: TlsRptReporter; events: TlsRptEvent[]; clock: ReturnType<typeof clock> } {
  const events: TlsRptEvent[] = [];
  const c = clock(DAY_START + 10 * HOUR);
  const r = createTlsRptReporter({
    organizationName: 'Sender Test Org',
    contactInfo: 'tlsrpt-contact@sender.test',
    submitter: 'mta.sender.test',
    store: new MemoryTlsRptStore(),
    resolver,
    ca: world.ca.rootPem,
    httpsPort: world.httpsPort,
    allowInternalDestinations: true, // the test world's report endpoints are on loopback
    mailTransport: { host: mx.ip, port: world.smtpPort, tls: { ca: [world.ca.rootPem], servername: 'mx.mail.test' } },
    transportSignsDkim: true, // the test MX does not check DKIM (signing is tested in deliver.test.ts)
    now: c.now,
    flushDelayMs: 60_000,
    onEvent: (e) => events.push(e),
    ...extra,
  });
  reporters.push(r);
  return { r, events, clock: c };
}

function recordDay(r: TlsRptReporter, domain: string, ok: number, failed: number, at = DAY_START + 10 * HOUR): void {
  for (let i = 0; i < ok; i++) r.recorder.record({ policy: stsPolicy(domain), success: true, at: at + i });
  for (let i = 0; i < failed; i++) {
    r.recorder.record({ policy: stsPolicy(domain), success: false, at: at + i, failure: { resultType: 'certificate-host-mismatch', receivingMxHostname: `mx.${domain}`, receivingIp: '127.0.0.9', sendingMtaIp: '127.0.0.1' } });
  }
}

describe('createTlsRptReporter', () => {
  it('§4.1 a day of mixed outcomes: after the UTC day one report per policy domain, right counts, by HTTPS and mail', async () => {
    const { r, events, clock: c } = reporter();
    recordDay(r, 'https.test', 40, 3);
    recordDay(r, 'mail.test', 5, 1);
    recordDay(r, 'both.test', 2, 0);
    recordDay(r, 'none.test', 9, 9);
    recordDay(r, 'two.test', 1, 0);
    r.recorder.record({ policy: { type: 'no-policy-found', domain: 'https.test' }, success: true, at: DAY_START + 9 * HOUR });

    // the day is not over: nothing is sent
    expect(await r.flush()).toEqual({ sent: [], failed: [], dropped: [], skipped: [] });
    const mailBefore = world.messages.length;

    c.set(DAY_START + 25 * HOUR);
    const result = await r.flush();
    expect(result.sent.map((s) => s.policyDomain).sort()).toEqual(['both.test', 'https.test', 'mail.test']);
    expect(result.skipped.map((s) => [s.type, s.policyDomain, s.type === 'skipped-no-record' ? s.error?.code : undefined])).toEqual([
      ['skipped-no-record', 'none.test', undefined],
      ['skipped-no-record', 'two.test', 'TLSRPT_RECORD_MULTIPLE'],
    ]);
    expect(result.failed).toEqual([]);
    expect(events.filter((e) => e.type === 'sent')).toHaveLength(3);

    // HTTPS: exactly what the event says was sent
    const viaHttps = received.get('tlsrpt.https.test')!;
    expect(viaHttps).toHaveLength(1);
    const report = viaHttps[0]!;
    expect(schemaErrors(report)).toBe('');
    expect(report).toEqual(result.sent.find((s) => s.policyDomain === 'https.test')!.report);
    expect(report['date-range']).toEqual({ 'start-datetime': '2026-11-22T00:00:00Z', 'end-datetime': '2026-11-22T23:59:59Z' });
    expect(report['organization-name']).toBe('Sender Test Org');
    expect(report['contact-info']).toBe('tlsrpt-contact@sender.test');
    expect(report['report-id']).toMatch(/^2026-11-22_https\.test_[0-9a-f]{16}@mta\.sender\.test$/);
    expect(report.policies.map((p) => [p.policy['policy-type'], p.summary])).toEqual([
      ['sts', { 'total-successful-session-count': 40, 'total-failure-session-count': 3 }],
      ['no-policy-found', { 'total-successful-session-count': 1, 'total-failure-session-count': 0 }],
    ]);
    expect(report.policies[0]!['failure-details']).toEqual([
      { 'result-type': 'certificate-host-mismatch', 'sending-mta-ip': '127.0.0.1', 'receiving-mx-hostname': 'mx.https.test', 'receiving-ip': '127.0.0.9', 'failed-session-count': 3 },
    ]);

    // mail: mail.test, and both.test through its mailto (its https endpoint failed: still delivered, §3)
    const mails = await Promise.all(world.messages.slice(mailBefore).map((m) => simpleParser(m.raw)));
    expect(mails.map((m) => m.headers.get('tls-report-domain')).sort()).toEqual(['both.test', 'mail.test']);
    expect(world.messages.slice(mailBefore).map((m) => m.recipients[0]).sort()).toEqual(['tls+reports@both.test', 'tlsrpt@mail.test']);
    const mailReport = await gunzipTlsRptReport(mails.find((m) => m.headers.get('tls-report-domain') === 'mail.test')!.attachments[0]!.content);
    expect(mailReport.policies[0]!.summary).toEqual({ 'total-successful-session-count': 5, 'total-failure-session-count': 1 });
    expect(mails[0]!.from?.text).toBe('noreply-tlsrpt@mta.sender.test');
    const both = result.sent.find((s) => s.policyDomain === 'both.test')!;
    expect(both.delivered).toEqual(['mailto:tls%2Breports@both.test']);
    expect(both.failures.map((f) => [f.uri, f.error.code])).toEqual([['https://down.both.test/x', 'TLSRPT_HTTP_STATUS']]);

    // §5.1: once per day per domain: nothing left, a second flush sends nothing
    expect(await r.pending()).toEqual([]);
    expect(await r.flush()).toEqual({ sent: [], failed: [], dropped: [], skipped: [] });
  });

  it('§5.5 a failing endpoint is retried with backoff, then dropped with an event; never loops', async () => {
    const { r, events, clock: c } = reporter({ retry: { attempts: 3, baseDelayMs: 60_000, maxAgeMs: 24 * HOUR } });
    recordDay(r, 'down.test', 3, 0);
    c.set(DAY_START + 29 * HOUR); // past the due time (day end + 15 min + up to 4 h of jitter): attempts count
    const before = world.httpsRequests.filter((q) => q.hostname === 'tlsrpt.down.test').length;

    const first = await r.flush();
    expect(first.failed).toHaveLength(1);
    expect(first.failed[0]).toMatchObject({ attempt: 1, nextAttemptAt: c.now() + 60_000, error: { code: 'TLSRPT_HTTP_STATUS' } });
    const pending = await r.pending();
    expect(pending).toHaveLength(1);
    expect(pending[0]!.delivery).toMatchObject({ attempts: 1, firstAttemptAt: c.now(), nextAttemptAt: c.now() + 60_000 });
    expect(pending[0]!.report['report-id']).toBe(first.failed[0]!.reportId);

    c.advance(60_000);
    const second = await r.flush();
    expect(second.failed[0]).toMatchObject({ attempt: 2, nextAttemptAt: c.now() + 120_000, reportId: first.failed[0]!.reportId });

    c.advance(120_000);
    const third = await r.flush();
    expect(third.failed).toEqual([]);
    expect(third.dropped).toHaveLength(1);
    expect(third.dropped[0]).toMatchObject({ type: 'dropped', policyDomain: 'down.test', reason: 'retries-exhausted', attempts: 3, reportId: first.failed[0]!.reportId, error: { code: 'TLSRPT_HTTP_STATUS' } });

    expect(await r.flush()).toEqual({ sent: [], failed: [], dropped: [], skipped: [] });
    expect(world.httpsRequests.filter((q) => q.hostname === 'tlsrpt.down.test').length - before).toBe(3);
    expect(events.map((e) => e.type)).toEqual(['failed', 'failed', 'dropped']);
  });

  it('§5.5 retries stop after maxAgeMs even with attempts left', async () => {
    const { r, clock: c } = reporter({ retry: { attempts: 100, baseDelayMs: 4 * HOUR, maxAgeMs: 10 * HOUR } });
    recordDay(r, 'down.test', 1, 0);
    c.set(DAY_START + 29 * HOUR);
    expect((await r.flush()).failed[0]?.nextAttemptAt).toBe(c.now() + 4 * HOUR); // 4h after the first attempt
    c.advance(4 * HOUR);
    // the next attempt would be 4h + 8h = 12h after the first one, past maxAgeMs (10h): dropped now
    expect((await r.flush()).dropped.map((d) => [d.reason, d.attempts])).toEqual([['retries-exhausted', 2]]);
  });

  it('§4.1 timers: reports go out after the day closes plus delay and jitter; failures retried by the timer, then dropped', async () => {
    const { r, events, clock: c } = reporter({ delayMs: 15 * 60_000, jitterMs: 4 * HOUR, random: () => 0.5, checkIntervalMs: 20, retry: { attempts: 2, baseDelayMs: 1000, maxAgeMs: HOUR } });
    recordDay(r, 'https.test', 2, 0);
    recordDay(r, 'down.test', 1, 0);
    c.set(DAY_START + 24 * HOUR + HOUR); // 01:00 the next day: due at 00:15 + 2h = 02:15
    r.start();
    r.start(); // idempotent
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect(events).toEqual([]);
    const pending = await r.pending();
    expect(pending.map((p) => [p.policyDomain, p.closed, p.delivery?.dueAt])).toEqual([
      ['down.test', true, DAY_START + 24 * HOUR + 15 * 60_000 + 2 * HOUR],
      ['https.test', true, DAY_START + 24 * HOUR + 15 * 60_000 + 2 * HOUR],
    ]);

    c.set(DAY_START + 24 * HOUR + 3 * HOUR);
    await waitFor(() => events.some((e) => e.type === 'sent') && events.some((e) => e.type === 'failed'));
    c.advance(1000);
    await waitFor(() => events.some((e) => e.type === 'dropped'));
    expect(events.map((e) => `${e.type} ${'policyDomain' in e ? e.policyDomain : ''}`)).toEqual(['failed down.test', 'sent https.test', 'dropped down.test']);
    expect(received.get('tlsrpt.https.test')).toHaveLength(1);
  });

  it('§5.3 report sessions are not counted in the next report', async () => {
    // An MTA-STS-aware transport that records the outcome of every session it runs, as the integration does.
    let r!: TlsRptReporter;
    const inner = nodemailer.createTransport({ host: mx.ip, port: world.smtpPort, tls: { ca: [world.ca.rootPem], servername: 'mx.mail.test' } });
    const recording: TlsRptMailTransport = {
      async sendMail(mail) {
        const info = await inner.sendMail(mail);
        setTimeout(() => r.recorder.record({ policy: stsPolicy('mail.test'), success: true }), 1);
        return info;
      },
    };
    const made = reporter({ mailTransport: recording });
    r = made.r;
    recordDay(r, 'mail.test', 2, 0);
    made.clock.set(DAY_START + 25 * HOUR);
    expect((await r.flush()).sent).toHaveLength(1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    // an ordinary session recorded the same way is counted
    await inner.sendMail({ from: 'a@sender.test', to: 'tlsrpt@mail.test', text: 'hi' }).then(() => r.recorder.record({ policy: stsPolicy('mail.test'), success: true }));
    inner.close();
    expect(r.recorder.stats().dropped['report-session']).toBe(1);
    expect((await r.pending()).map((p) => p.report.policies[0]!.summary['total-successful-session-count'])).toEqual([1]);
  });

  it('skips mailto-only domains without a mail transport', async () => {
    const { r, clock: c } = reporter({ mailTransport: undefined });
    recordDay(r, 'mailonly.test', 1, 0);
    c.set(DAY_START + 25 * HOUR);
    expect((await r.flush()).skipped).toEqual([{ type: 'skipped-no-transport', day: DAY, policyDomain: 'mailonly.test', uris: ['mailto:tlsrpt@mailonly.test'] }]);
  });

  it('keepUndeliverable: a mailto-only report without a mail transport stays in the store, for a run with one', async () => {
    const store = new MemoryTlsRptStore();
    const { r, clock: c, events } = reporter({ mailTransport: undefined, keepUndeliverable: true, store });
    recordDay(r, 'mailonly.test', 3, 1);
    c.set(DAY_START + 25 * HOUR);
    const kept = { type: 'skipped-no-transport', day: DAY, policyDomain: 'mailonly.test', uris: ['mailto:tlsrpt@mailonly.test'], kept: true };
    expect((await r.flush()).skipped).toEqual([kept]);
    expect((await r.flush()).skipped).toEqual([kept]); // again: still there, nothing counted
    expect(events.filter((e) => e.type === 'skipped-no-transport')).toEqual([kept, kept]);
    expect(await store.list()).toEqual([{ day: DAY, policyDomain: 'mailonly.test' }]);
    expect((await store.get({ day: DAY, policyDomain: 'mailonly.test' }))?.delivery?.attempts).toBe(0);
  });

  it('a temporary DNS failure is retried, not taken for "no record"', async () => {
    const { r, clock: c } = reporter();
    world.dns.setRecords('_smtp._tls.flaky.test', { txt: ['v=TLSRPTv1; rua=https://tlsrpt.https.test/flaky'] });
    world.dns.fail('_smtp._tls.flaky.test', 'servfail');
    recordDay(r, 'flaky.test', 1, 0);
    c.set(DAY_START + 25 * HOUR);
    expect((await r.flush()).failed[0]?.error.code).toBe('TLSRPT_DNS_TEMPORARY');
    world.dns.fail('_smtp._tls.flaky.test', null);
    expect((await r.flush()).sent.map((s) => s.policyDomain)).toEqual(['flaky.test']);
  });

  it('reports that would be too large are dropped', async () => {
    const { r, clock: c } = reporter({ maxReportBytes: 100 });
    recordDay(r, 'https.test', 1, 0);
    c.set(DAY_START + 25 * HOUR);
    expect((await r.flush()).dropped.map((d) => [d.reason, d.error.code])).toEqual([['too-large', 'TLSRPT_TOO_LARGE']]);
  });

  it('pending() previews current and closed days, including counts not yet flushed', async () => {
    const { r, clock: c } = reporter();
    recordDay(r, 'https.test', 2, 1);
    c.set(DAY_START + 24 * HOUR + HOUR);
    recordDay(r, 'https.test', 1, 0, c.now());
    const pending = await r.pending();
    expect(pending.map((p) => [p.day, p.closed, p.report.policies[0]!.summary['total-successful-session-count']])).toEqual([
      [DAY, true, 2],
      ['2026-11-23', false, 1],
    ]);
    for (const p of pending) expect(schemaErrors(p.report)).toBe('');
  });
});

describe('createTlsRptReporter with an SQLite database (store: path)', () => {
  it('survives a restart: counts and the report id of a failed attempt carry over', async () => {
    dir = await mkdtemp(join(tmpdir(), 'tlsrpt-reporter-'));
    world.dns.setRecords('_smtp._tls.restart.test', { txt: ['v=TLSRPTv1; rua=https://tlsrpt.restart.test/'] });
    endpoint('tlsrpt.restart.test', 503);

    const one = reporter({ store: join(dir, 'tlsrpt.db') });
    recordDay(one.r, 'restart.test', 4, 1);
    await one.r.recorder.flush(); // a crash after this loses nothing
    recordDay(one.r, 'restart.test', 1, 0, DAY_START + 9 * HOUR + 1000);
    await one.r.close(); // close flushes too
    const two = reporter({ store: join(dir, 'tlsrpt.db') });
    recordDay(two.r, 'restart.test', 10, 0, DAY_START + 9 * HOUR);
    two.clock.set(DAY_START + 29 * HOUR); // past the due time: the failed attempt counts
    const failed = (await two.r.flush()).failed[0]!;
    await two.r.close();

    endpoint('tlsrpt.restart.test', 200);
    const three = reporter({ store: join(dir, 'tlsrpt.db') });
    three.clock.set(DAY_START + 30 * HOUR);
    const sent = (await three.r.flush()).sent[0]!;
    expect(sent.reportId).toBe(failed.reportId);
    expect(sent.attempt).toBe(2);
    expect(sent.report.policies[0]!.summary).toEqual({ 'total-successful-session-count': 15, 'total-failure-session-count': 1 });
    expect(received.get('tlsrpt.restart.test')).toEqual([sent.report]);
  });

  it('a corrupt record is skipped with a spool-corrupt event; other reports still go out', async () => {
    dir = await mkdtemp(join(tmpdir(), 'tlsrpt-reporter-'));
    const { r, events, clock: c } = reporter({ store: join(dir, 'tlsrpt.db') });
    recordDay(r, 'mail.test', 1, 0);
    recordDay(r, 'https.test', 1, 0);
    await r.recorder.flush();
    const raw = new Database(join(dir, 'tlsrpt.db'));
    raw.prepare("UPDATE tlsrpt_policy SET policy_key = '[\"sts\",\"mail.test\"' WHERE policy_domain = 'mail.test'").run();
    raw.close();
    c.set(DAY_START + 25 * HOUR);
    const result = await r.flush();
    expect(result.sent.map((s) => s.policyDomain)).toEqual(['https.test']);
    expect(events.filter((e) => e.type === 'spool-corrupt').map((e) => (e.type === 'spool-corrupt' ? e.error.code : ''))).toEqual(['TLSRPT_SPOOL_CORRUPT']);
  });
});

describe('mail delivery through an smtp-server started here', () => {
  it('§5.5 a temporary SMTP failure (451) is retried and then delivered', async () => {
    let calls = 0;
    const messages: Buffer[] = [];
    const server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS', 'AUTH'],
      logger: false,
      onData(stream, _session, callback) {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          calls++;
          if (calls === 1) return callback(Object.assign(new Error('4.3.0 try again later'), { responseCode: 451 }));
          messages.push(Buffer.concat(chunks));
          callback();
        });
      },
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.server.address() as AddressInfo).port;
    try {
      const { r, clock: c } = reporter({ mailTransport: { host: '127.0.0.1', port, ignoreTLS: true } });
      recordDay(r, 'mail.test', 3, 2);
      c.set(DAY_START + 25 * HOUR);
      const first = await r.flush();
      expect(first.failed[0]?.error).toMatchObject({ code: 'TLSRPT_DELIVERY_FAILED', details: { responseCode: 451 } });
      const second = await r.flush();
      expect(second.sent).toHaveLength(1);
      const mail = await simpleParser(messages[0]!);
      expect(mail.headers.get('tls-report-domain')).toBe('mail.test');
      expect(mail.attachments[0]!.filename).toMatch(/^mta\.sender\.test!mail\.test!1795305600!1795391999![0-9a-f]{16}\.json\.gz$/);
      expect((await gunzipTlsRptReport(mail.attachments[0]!.content)).policies[0]!.summary).toEqual({ 'total-successful-session-count': 3, 'total-failure-session-count': 2 });
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('store: a path', () => {
  it('a reporter with store: <path> keeps recorded sessions across a restart (and closes the database it opened)', async () => {
    const tmp = await mkdtemp(join(tmpdir(), 'tlsrpt-storepath-'));
    try {
      const first = reporter({ store: join(tmp, 'tlsrpt.db') });
      recordDay(first.r, 'path-restart.test', 3, 1);
      await first.r.close();
      const second = reporter({ store: join(tmp, 'tlsrpt.db') });
      const pending = await second.r.pending();
      const mine = pending.find((p) => p.policyDomain === 'path-restart.test');
      expect(mine?.report.policies[0]?.summary).toEqual({ 'total-successful-session-count': 3, 'total-failure-session-count': 1 });
      await second.r.close();
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });
});
