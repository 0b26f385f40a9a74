/**
 * The reporter never loses or deletes silently: a failed final write makes `close()` reject with what was lost;
 * the cap on unwritten outcomes forces a write; a configuration error is no delivery attempt; repeated forced runs
 * do not drop a report before its retry window (RFC 8460 §5.5); a read-only store (preview) changes nothing; report
 * mail without DKIM (RFC 8460 §5.3) is warned about at creation. Real DNS, HTTPS and SMTP of the test world.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import Database from 'better-sqlite3';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createDefaultResolver, type DnsResolver } from '../../src/discovery/resolver.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';
import { TlsRptAggregator } from '../../src/tlsrpt/recorder.js';
import { createTlsRptReporter, type TlsRptEvent, type TlsRptReporter, type TlsRptReporterOptions } from '../../src/tlsrpt/scheduler.js';
import { createSqliteTlsRptStore } from '../../src/tlsrpt/index.js';
import { MemoryTlsRptStore } from '../../src/tlsrpt/store.js';
import { DAY, DAY_START, HOUR, clock, stsPolicy } from './helpers.js';

let world: TestWorld;
let resolver: DnsResolver;
let dir: string | undefined;
const reporters: TlsRptReporter[] = [];

beforeAll(async () => {
  world = await createTestWorld();
  resolver = createDefaultResolver({ dnsServers: world.dns.servers, timeoutMs: 1000, tries: 1 });
  world.dns.setRecords('_smtp._tls.mailrua.test', { txt: ['v=TLSRPTv1; rua=mailto:tlsrpt@mailrua.test'] });
  world.dns.setRecords('_smtp._tls.down.test', { txt: ['v=TLSRPTv1; rua=https://tlsrpt.down.test/'] });
  world.addHttpsHost('tlsrpt.down.test', { handler: (_req, res) => res.writeHead(503).end() });
  world.dns.setRecords('_smtp._tls.late.test', { txt: ['v=TLSRPTv1; rua=https://tlsrpt.late.test/'] });
  world.addHttpsHost('tlsrpt.late.test', {
    handler: (_req, res) => {
      // Another writer of the same store records late sessions of the reported day while the report is in flight.
      const writer = lateWriter;
      if (!writer) return void res.writeHead(200).end();
      for (let i = 0; i < 3; i++) writer.record({ policy: stsPolicy('late.test'), at: DAY_START + 23 * HOUR, success: true });
      void writer.flush().then(() => res.writeHead(200).end());
    },
  });
});
let lateWriter: TlsRptAggregator | undefined;
afterAll(async () => {
  await world.close();
});
afterEach(async () => {
  await Promise.all(reporters.splice(0).map((r) => r.close().catch(() => undefined)));
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

function reporter(extra: Partial<TlsRptReporterOptions> = {}) {
  const events: TlsRptEvent[] = [];
  const c = clock(DAY_START + 10 * HOUR);
  const r = createTlsRptReporter({
    organizationName: 'Sender Test Org',
    contactInfo: 'tlsrpt@sender.test',
    submitter: 'mta.sender.test',
    store: new MemoryTlsRptStore(),
    resolver,
    ca: world.ca.rootPem,
    httpsPort: world.httpsPort,
    allowInternalDestinations: true, // the test world's report endpoints are on loopback
    now: c.now,
    onEvent: (e) => events.push(e),
    ...extra,
  });
  reporters.push(r);
  return { r, events, clock: c };
}

describe('crash and write-failure bounds of the recorder', () => {
  it('close() rejects with TLSRPT_STORE_FAILED and the number of sessions it could not persist', async () => {
    dir = await mkdtemp(join(tmpdir(), 'tlsrpt-full-'));
    const notADir = join(dir, 'file');
    await writeFile(notADir, 'x');
    // A database that cannot be opened at all is refused at creation, not a day later.
    expect(() => createTlsRptReporter({ organizationName: 'o', contactInfo: 'c@o.test', submitter: 's.test', store: join(notADir, 'tlsrpt.db') })).toThrow(expect.objectContaining({ code: 'TLSRPT_STORE_FAILED' }));
    // A database opened read-only: every write fails, as on a full or read-only disk.
    await createSqliteTlsRptStore({ path: join(dir, 'tlsrpt.db') }).close();
    const events: TlsRptEvent[] = [];
    const r = createTlsRptReporter({ organizationName: 'o', contactInfo: 'c@o.test', submitter: 's.test', store: createSqliteTlsRptStore({ path: join(dir, 'tlsrpt.db'), readOnly: true }), flushDelayMs: 60_000, onEvent: (e) => events.push(e) });
    for (let i = 0; i < 7; i++) r.recorder.record({ policy: stsPolicy('full.test'), success: i !== 0, ...(i === 0 ? { failure: { resultType: 'certificate-expired' } } : {}) });
    const error = await r.close().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ name: 'TlsRptError', code: 'TLSRPT_STORE_FAILED', details: { unpersistedSessions: 7 } });
    expect((error as Error).message).toMatch(/^7 recorded session\(s\) could not be written/);
    expect(events.map((e) => e.type)).toContain('store-error');
    await expect(r.close()).resolves.toBeUndefined(); // idempotent
  });

  it('maxUnflushedOutcomes forces a write without waiting for flushDelayMs', async () => {
    const store = new MemoryTlsRptStore();
    const agg = new TlsRptAggregator({ store, flushDelayMs: 3_600_000, maxUnflushedOutcomes: 100 });
    for (let i = 0; i < 250; i++) agg.record({ policy: stsPolicy('cap.test'), success: true });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const keys = await store.list();
    expect(keys).toHaveLength(1);
    const stored = (await store.get(keys[0]!))!.policies[0]!.successCount;
    expect(stored).toBe(250); // the write forced at 100 takes everything recorded by the time it runs
    expect(agg.unflushedCount()).toBe(0);
    for (let i = 0; i < 99; i++) agg.record({ policy: stsPolicy('cap.test'), success: true });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(agg.unflushedCount()).toBe(99); // under the cap: waits for the timer
    await agg.close();
    expect((await store.get(keys[0]!))!.policies[0]!.successCount).toBe(349);
  });

  it('the default flush delay is 1 s (a crash loses at most about a second of outcomes)', async () => {
    const store = new MemoryTlsRptStore();
    const agg = new TlsRptAggregator({ store });
    agg.record({ policy: stsPolicy('delay.test'), success: true });
    await new Promise((resolve) => setTimeout(resolve, 1300));
    expect(await store.list()).toHaveLength(1);
    await agg.close();
  });
});

describe('RFC 8460 §5.5: a report is dropped only after its retry window, never by a usage error', () => {
  it('an unusable mailTransport (a typo) is refused at creation, before any report is touched', async () => {
    for (const typo of ['not a url', 'smtp:/host', 'http://host']) {
      const error = (() => {
        try {
          reporter({ mailTransport: typo, transportSignsDkim: true });
        } catch (e) {
          return e as { code?: string; details?: { option?: string } };
        }
        return undefined;
      })();
      expect(error, typo).toMatchObject({ code: 'MTASTS_INVALID_OPTIONS', details: { option: 'mailTransport' } });
    }
  });

  it('repeated forced runs ahead of schedule do not count; scheduled failures drop it after the window, with an event', async () => {
    // Due at day end + 15 min + 0.9 × 4 h of jitter (27:51 UTC); a CLI run every few minutes before that.
    const { r, events, clock: c } = reporter({ random: () => 0.9, retry: { attempts: 3, baseDelayMs: 60_000, maxAgeMs: HOUR } });
    r.recorder.record({ policy: stsPolicy('down.test'), at: DAY_START + 9 * HOUR, success: true });
    c.set(DAY_START + 25 * HOUR);
    for (let i = 0; i < 20; i++) {
      const result = await r.flush();
      expect(result.dropped).toEqual([]);
      expect(result.failed[0]).toMatchObject({ counted: false, attempt: 0, error: { code: 'TLSRPT_HTTP_STATUS' } });
      c.advance(5 * 60_000);
    }
    expect((await r.pending())[0]!.delivery).toMatchObject({ attempts: 0 });
    // On schedule: 3 attempts (1 min, 2 min apart), then dropped with an event saying so.
    c.set(DAY_START + 28 * HOUR);
    expect((await r.flush()).failed[0]).toMatchObject({ counted: true, attempt: 1 });
    c.advance(60_000);
    expect((await r.flush()).failed[0]).toMatchObject({ counted: true, attempt: 2 });
    c.advance(120_000);
    const last = await r.flush();
    expect(last.dropped).toEqual([expect.objectContaining({ type: 'dropped', reason: 'retries-exhausted', attempts: 3, policyDomain: 'down.test' })]);
    expect(await r.pending()).toEqual([]);
    expect(events.filter((e) => e.type === 'dropped')).toHaveLength(1);
  });
});

describe('sending while another writer records the same day', () => {
  it.each([
    ['MemoryTlsRptStore', async () => new MemoryTlsRptStore()],
    ['createSqliteTlsRptStore', async () => {
      dir = await mkdtemp(join(tmpdir(), 'tlsrpt-late-'));
      return createSqliteTlsRptStore({ path: join(dir, 'tlsrpt.db'), now: () => DAY_START + 30 * HOUR });
    }],
  ])('%s: sessions merged while the report was delivered stay for a new report (settle, not delete)', async (_name, make) => {
    const store = await make();
    const { r, clock: c } = reporter({ store });
    for (let i = 0; i < 5; i++) r.recorder.record({ policy: stsPolicy('late.test'), at: DAY_START + 9 * HOUR, success: true });
    lateWriter = new TlsRptAggregator({ store, now: () => DAY_START + 23 * HOUR + 30 * 60_000, flushDelayMs: 60_000 });
    c.set(DAY_START + 30 * HOUR);
    const first = await r.flush();
    lateWriter = undefined;
    expect(first.sent.map((e) => e.report.policies[0]!.summary['total-successful-session-count'])).toEqual([5]);
    const second = await r.flush();
    expect(second.sent.map((e) => e.report.policies[0]!.summary['total-successful-session-count'])).toEqual([3]);
    expect(second.sent[0]!.reportId).not.toBe(first.sent[0]!.reportId);
  });
});

describe('a read-only store (preview) changes nothing', () => {
  it('a corrupt record stays where it is (reported); the database file is not written; writes are refused', async () => {
    dir = await mkdtemp(join(tmpdir(), 'tlsrpt-ro-'));
    const path = join(dir, 'tlsrpt.db');
    const writable = createSqliteTlsRptStore({ path, now: () => DAY_START + 30 * HOUR });
    const limits = new TlsRptAggregator({ store: writable }).limits;
    const counts = (domain: string) => ({ day: DAY, policyDomain: domain, policies: [{ policy: stsPolicy(domain), successCount: 3, failureCount: 0, failures: [] }] });
    await writable.mergeMany([counts('ok.test'), counts('broken.test')], limits);
    await writable.close();
    const raw = new Database(path);
    raw.prepare("UPDATE tlsrpt_policy SET policy_key = '{ not json' WHERE policy_domain = 'broken.test'").run();
    raw.close();
    const before = await readFile(path);

    const corrupt: string[] = [];
    const store = createSqliteTlsRptStore({ path, readOnly: true });
    store.subscribe((e) => corrupt.push(e.error.code));
    const { r } = reporter({ store, now: () => DAY_START + 30 * HOUR });
    const pending = await r.pending();
    expect(pending.map((p) => p.policyDomain)).toEqual(['ok.test']);
    expect(corrupt).toEqual(['TLSRPT_SPOOL_CORRUPT']);
    await expect(store.merge(counts('ok.test'), limits)).rejects.toMatchObject({ code: 'TLSRPT_STORE_FAILED' });
    await expect(store.delete({ day: DAY, policyDomain: 'ok.test' })).rejects.toMatchObject({ code: 'TLSRPT_STORE_FAILED' });
    await expect(store.setDelivery({ day: DAY, policyDomain: 'ok.test' }, { uniqueId: 'x', dueAt: 1, attempts: 0, nextAttemptAt: 1 })).rejects.toMatchObject({ code: 'TLSRPT_STORE_FAILED' });
    await store.close();
    expect((await readFile(path)).equals(before)).toBe(true);
    expect((await createSqliteTlsRptStore({ path, readOnly: true }).list()).map((k) => k.policyDomain).sort()).toEqual(['broken.test', 'ok.test']);
  });
});

describe('RFC 8460 §5.3: report mail without DKIM is warned about at creation', () => {
  it('mailTransport without dkim: a TLSRPT_UNSIGNED_MAIL warning (logger, event, reporter.warnings)', () => {
    const warned: string[] = [];
    const { r, events } = reporter({ mailTransport: { host: '127.0.0.1', port: world.smtpPort }, logger: { warn: (m: string) => warned.push(m) } });
    expect(r.warnings).toEqual([expect.objectContaining({ type: 'warning', code: 'TLSRPT_UNSIGNED_MAIL' })]);
    expect(r.warnings[0]!.message).toMatch(/RFC 8460 §5\.3/);
    expect(events).toEqual(r.warnings);
    expect(warned).toEqual([expect.stringMatching(/without DKIM/)]);
  });

  it('no warning with dkim, with transportSignsDkim, or without mail delivery', () => {
    const dkim = { domainName: 'sender.test', keySelector: 's1', privateKey: '-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----' };
    expect(reporter({ mailTransport: { host: '127.0.0.1' }, dkim }).r.warnings).toEqual([]);
    expect(reporter({ mailTransport: { host: '127.0.0.1' }, transportSignsDkim: true }).r.warnings).toEqual([]);
    expect(reporter({}).r.warnings).toEqual([]);
  });
});
