/**
 * Sending from a shared SQLite TLS-RPT database (RFC 8460 §4.1: one report per policy domain and day; §4.4 / §5.1:
 * one report id): two sender processes started together deliver every report exactly once, counted at the receiving
 * HTTPS servers of the test world; a sender killed between the delivery and marking the report sent leaves it to be
 * sent again with the same report id; a report whose "sent" state cannot be saved is not sent again by that process;
 * a read-only database and a full disk (a small tmpfs) deliver nothing twice, report errors as events without
 * looping, and make `close()` reject with the number of sessions not stored.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createDefaultResolver } from '../../src/discovery/resolver.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';
import { createSqliteTlsRptStore, createTlsRptReporter, gunzipTlsRptReport, type TlsRptEvent, type TlsRptReport, type TlsRptReporterOptions } from '../../src/tlsrpt/index.js';
import { spawnTs, type TsChild } from '../stores/child.js';

const DAY_MS = 86_400_000;
const SENDER = '../tlsrpt/fixtures/report-sender.ts';
let world: TestWorld;
let dir: string;
let caFile: string;
/** Reports received per policy domain. */
const received = new Map<string, TlsRptReport[]>();
/** Called when a report arrives, before the answer (a test may take the database's write lock there). */
let onReport: ((report: TlsRptReport) => void | Promise<void>) | undefined;
const children: TsChild[] = [];

beforeAll(async () => {
  world = await createTestWorld();
  world.addHttpsHost('rua.collector.test', {
    handler: (_req, res, body) => {
      void gunzipTlsRptReport(body).then(async (report) => {
        const domain = report.policies[0]?.policy['policy-domain'] ?? '?';
        received.set(domain, [...(received.get(domain) ?? []), report]);
        await onReport?.(report);
        res.writeHead(200).end();
      });
    },
  });
});
afterAll(async () => {
  await world.close();
});
afterEach(() => {
  for (const c of children.splice(0)) c.child.kill('SIGKILL');
  onReport = undefined;
  received.clear();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function setup(): string {
  dir = mkdtempSync(join(tmpdir(), 'tlsrpt-senders-'));
  caFile = join(dir, 'ca.pem');
  writeFileSync(caFile, world.ca.rootPem);
  return join(dir, 'tlsrpt.db');
}

const publish = (domain: string) => world.dns.setRecords(`_smtp._tls.${domain}`, { txt: ['v=TLSRPTv1; rua=https://rua.collector.test/r'] });

/** Today's counts for `domains` (a closed day for senders whose clock is a day ahead). */
async function seed(path: string, domains: string[], sessions = 3): Promise<void> {
  const reporter = createTlsRptReporter({ organizationName: 'o', contactInfo: 'c@o.test', submitter: 'mta.o.test', store: path, flushDelayMs: 600_000, maxUnflushedOutcomes: 1_000_000 });
  for (const domain of domains) {
    publish(domain);
    for (let i = 0; i < sessions; i++) reporter.recorder.record({ policy: { type: 'no-policy-found', domain }, success: i > 0, ...(i === 0 ? { failure: { resultType: 'validation-failure' } } : {}) });
  }
  await reporter.close();
}

function sender(args: Record<string, unknown>): TsChild {
  const child = spawnTs(SENDER, [JSON.stringify({ dnsServer: world.dns.servers[0], caFile, httpsPort: world.httpsPort, nowOffsetMs: DAY_MS, ...args })]);
  children.push(child);
  return child;
}

/** An in-process sender on the database, its clock a day ahead. */
function inProcessSender(extra: Partial<TlsRptReporterOptions>) {
  const events: TlsRptEvent[] = [];
  const reporter = createTlsRptReporter({
    organizationName: 'Sender Test Org',
    contactInfo: 'tlsrpt@sender.test',
    submitter: 'mta.sender.test',
    resolver: createDefaultResolver({ dnsServers: world.dns.servers, timeoutMs: 2000, tries: 2 }),
    ca: world.ca.rootPem,
    httpsPort: world.httpsPort,
    allowInternalDestinations: true, // the test world's report endpoints are on loopback
    now: () => Date.now() + DAY_MS,
    delayMs: 0,
    jitterMs: 0,
    flushDelayMs: 600_000,
    onEvent: (e) => events.push(e),
    ...extra,
  });
  return { reporter, events };
}

/** The sender fixture to its end, optionally as another user (spawnTs has no uid option). */
function runSender(args: Record<string, unknown>, uid?: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const entry = fileURLToPath(new URL('fixtures/report-sender.ts', import.meta.url));
  const json = JSON.stringify({ dnsServer: world.dns.servers[0], caFile, httpsPort: world.httpsPort, nowOffsetMs: DAY_MS, ...args });
  const child = spawn(process.execPath, ['--import', 'tsx', entry, json], { cwd: fileURLToPath(new URL('../../', import.meta.url)), env: { ...process.env, HOME: dir, TMPDIR: dir }, ...(uid !== undefined ? { uid, gid: uid } : {}) });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

const lines = (stdout: string): Array<{ sent?: string[]; storeErrors?: string[]; close?: { code: string; unpersistedSessions: number } | null }> =>
  stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as never);

describe('two sender processes started together on one database', () => {
  it('every report is delivered exactly once (counted at the receiving server), with one report id each', { timeout: 180_000 }, async () => {
    const path = setup();
    const domains = Array.from({ length: 200 }, (_, i) => `s${i}.pair.test`);
    await seed(path, domains);
    const goFile = join(dir, 'go');
    const [a, b] = [sender({ db: path, goFile }), sender({ db: path, goFile })];
    await Promise.all([a!.waitFor(/^ready$/, 60_000), b!.waitFor(/^ready$/, 60_000)]);
    writeFileSync(goFile, '');
    const [ra, rb] = await Promise.all([a!.exited, b!.exited]);
    expect([ra.code, rb.code], ra.stderr + rb.stderr).toEqual([0, 0]);
    const sentA = lines(ra.stdout).flatMap((l) => l.sent ?? []);
    const sentB = lines(rb.stdout).flatMap((l) => l.sent ?? []);
    console.log(`two senders: ${sentA.length} + ${sentB.length} reports sent`);
    expect(sentA.length + sentB.length).toBe(200);
    expect(new Set([...sentA, ...sentB]).size).toBe(200);
    for (const domain of domains) {
      const reports = received.get(domain) ?? [];
      expect(reports.map((r) => r['report-id']), domain).toHaveLength(1);
      expect(reports[0]!.policies[0]!.summary).toEqual({ 'total-successful-session-count': 2, 'total-failure-session-count': 1 });
    }
    expect(await createSqliteTlsRptStore({ path, readOnly: true }).list()).toEqual([]);
  });
});

describe('a sender killed between the delivery and marking the report sent', () => {
  it('the report is sent again by the next sender with the same report id and the same counts', { timeout: 120_000 }, async () => {
    const path = setup();
    await seed(path, ['crash.test']);
    const child = sender({ db: path });
    // When the report arrives, another connection takes the write lock: the sender cannot mark it sent, and is killed.
    const blocker = new Database(path);
    onReport = () => {
      blocker.exec('BEGIN IMMEDIATE');
      setTimeout(() => child.child.kill('SIGKILL'), 300);
    };
    const exited = await child.exited;
    expect(exited.signal).toBe('SIGKILL');
    blocker.exec('ROLLBACK');
    blocker.close();
    onReport = undefined;
    expect(received.get('crash.test')).toHaveLength(1);

    // The next sender (its owner's process is gone, so the claim is free at once) sends it again, same id.
    const { reporter } = inProcessSender({ store: path });
    const result = await reporter.flush();
    await reporter.close();
    const [first, again] = received.get('crash.test')!;
    expect(result.sent.map((e) => e.reportId)).toEqual([first!['report-id']]);
    expect(again!['report-id']).toBe(first!['report-id']);
    expect(again!.policies).toEqual(first!.policies);
    expect(await createSqliteTlsRptStore({ path, readOnly: true }).list()).toEqual([]);
  });
});

describe('a delivered report whose "sent" state cannot be saved', () => {
  it('is not counted as sent, is an error event, and is never sent again by that process; a restart resends it with the same id', { timeout: 60_000 }, async () => {
    const path = setup();
    await seed(path, ['unsaved.test']);
    const blocker = new Database(path);
    onReport = () => {
      // The write lock is held past the sender's busy timeout: marking the report sent fails.
      blocker.exec('BEGIN IMMEDIATE');
      setTimeout(() => blocker.exec('ROLLBACK'), 1000);
    };
    const { reporter, events } = inProcessSender({ store: createSqliteTlsRptStore({ path, busyTimeoutMs: 100, reportLockMs: 1000 }) });
    const first = await reporter.flush();
    onReport = undefined;
    expect(first.sent).toEqual([]);
    const errors = events.filter((e) => e.type === 'store-error');
    expect(errors.map((e) => (e.type === 'store-error' ? e.error.code : ''))).toEqual(['TLSRPT_STORE_FAILED']);
    expect(errors[0]!.type === 'store-error' && errors[0]!.error.message).toMatch(/unsaved\.test .* marking it sent .* failed; this process will not send it again/);
    await new Promise((resolve) => setTimeout(resolve, 1200)); // the lock is free again
    for (let i = 0; i < 3; i++) expect((await reporter.flush()).sent).toEqual([]);
    expect(received.get('unsaved.test')).toHaveLength(1);
    await reporter.close();
    blocker.close();

    // Another process (a restart; the claim of this live process is respected until its lease ends, here 1 s) sends it again, with the same report id: a receiver can drop the duplicate.
    const next = await runSender({ db: path });
    expect(next.code, next.stderr).toBe(0);
    const [a, b] = received.get('unsaved.test')!;
    expect(lines(next.stdout)[0]!.sent).toEqual([a!['report-id']]);
    expect(b!['report-id']).toBe(a!['report-id']);
  });
});

/** Can this process mount a tmpfs (root, or CAP_SYS_ADMIN)? */
function canMount(): boolean {
  const probe = mkdtempSync(join(tmpdir(), 'tlsrpt-mount-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe], { stdio: 'ignore' });
    execFileSync('umount', [probe], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}
const MOUNT = canMount();
const ROOT = process.getuid?.() === 0;
/**
 * As root the chmod test runs its sender as nobody, who must be able to run this Node and read the project (a Node
 * installed under a private temporary directory is not): otherwise that test says so and is skipped.
 */
const NOBODY_CAN_RUN = !ROOT || spawnSync(process.execPath, ['--import', 'tsx', '-e', '0'], { cwd: fileURLToPath(new URL('../../', import.meta.url)), uid: 65534, gid: 65534, env: { ...process.env, HOME: tmpdir(), TMPDIR: tmpdir() }, timeout: 30_000 }).status === 0;
if (!NOBODY_CAN_RUN) console.warn(`skipping the chmod 444 test: uid 65534 cannot run ${process.execPath} in this project`);

describe('a read-only database and a full disk', () => {
  it('read-only open: nothing is delivered, errors are events (one per pass), close() rejects with the sessions not stored', { timeout: 60_000 }, async () => {
    const path = setup();
    await seed(path, ['ro1.test', 'ro2.test']);
    const { reporter, events } = inProcessSender({ store: createSqliteTlsRptStore({ path, readOnly: true }) });
    for (let i = 0; i < 7; i++) reporter.recorder.record({ policy: { type: 'no-policy-found', domain: 'new.test' }, success: true });
    for (let i = 0; i < 3; i++) expect((await reporter.flush()).sent).toEqual([]);
    expect(received.size).toBe(0);
    const storeErrors = events.filter((e) => e.type === 'store-error');
    // Per pass: the recorder's failed write and the first report that could not be scheduled; the rest wait.
    expect(storeErrors.length).toBeLessThanOrEqual(6);
    await expect(reporter.close()).rejects.toMatchObject({ code: 'TLSRPT_STORE_FAILED', details: { unpersistedSessions: 7 } });
  });

  it.skipIf(!NOBODY_CAN_RUN)('a database file made read-only (chmod 444, a process without the right to write): nothing is delivered twice, close() rejects with the sessions not stored', { timeout: 120_000 }, async () => {
    const path = setup();
    await seed(path, ['chmod.test']);
    chmodSync(path, 0o444);
    chmodSync(dir, 0o777); // the process may create SQLite's -shm beside it, not write the database
    // As root, chmod does not stop writes: the sender then runs as nobody (uid 65534).
    const run = await runSender({ db: path, rounds: 3, record: 5 }, ROOT ? 65534 : undefined);
    expect(run.code, run.stderr).toBe(0);
    expectReadOnlyRun(run.stdout);
  });

  function expectReadOnlyRun(stdout: string): void {
    const out = lines(stdout);
    expect(out.flatMap((l) => l.sent ?? [])).toEqual([]);
    expect((received.get('chmod.test') ?? []).length).toBeLessThanOrEqual(1);
    for (const l of out.filter((x) => x.storeErrors)) expect(l.storeErrors!.length).toBeLessThanOrEqual(2);
    expect(out.find((l) => 'close' in l)?.close).toMatchObject({ code: 'TLSRPT_STORE_FAILED', unpersistedSessions: 5 });
  }

  it.skipIf(!MOUNT)('full disk (a small tmpfs): no report is delivered twice, errors are events without a loop, close() rejects with the sessions not stored', { timeout: 120_000 }, async () => {
    setup();
    const mnt = join(dir, 'tmpfs');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]);
    try {
      const path = join(mnt, 'tlsrpt.db');
      const domains = Array.from({ length: 50 }, (_, i) => `f${i}.full.test`);
      await seed(path, domains);
      // The disk fills up while the reporter runs (a database cannot even be opened on a full disk: SQLite's -shm).
      const { reporter, events } = inProcessSender({ store: path });
      // Fill the disk to the last block.
      try {
        for (let i = 0; ; i++) writeFileSync(join(mnt, `filler-${i}`), Buffer.alloc(64 * 1024));
      } catch {
        for (let i = 0; ; i++) {
          try {
            writeFileSync(join(mnt, `small-${i}`), Buffer.alloc(512));
          } catch {
            break;
          }
        }
      }
      for (let i = 0; i < 20_000; i++) reporter.recorder.record({ policy: { type: 'no-policy-found', domain: `n${i % 5000}.new.test` }, success: true });
      for (let i = 0; i < 3; i++) await reporter.flush();
      const storeErrors = events.filter((e) => e.type === 'store-error');
      console.log(`full disk: ${[...received.values()].flat().length} reports delivered, ${storeErrors.length} store-error events over 3 passes: ${storeErrors.map((e) => (e.type === 'store-error' ? e.error.message : '')).slice(0, 2).join(' | ')}`);
      for (const domain of domains) expect((received.get(domain) ?? []).length, domain).toBeLessThanOrEqual(1);
      expect(storeErrors.length).toBeGreaterThan(0);
      // At most: the recorder's write forced by maxUnflushedOutcomes, then per pass its write and one report.
      expect(storeErrors.length).toBeLessThanOrEqual(1 + 3 * 2);
      const closed = await reporter.close().then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(closed).toMatchObject({ code: 'TLSRPT_STORE_FAILED', details: { unpersistedSessions: 20_000 } });

      // Space again: whatever was not delivered goes out now, and a report sent before is never sent with another id.
      for (const name of readdirSync(mnt)) if (/^(filler|small)-/.test(name)) rmSync(join(mnt, name));
      const next = inProcessSender({ store: path });
      await next.reporter.flush();
      await next.reporter.close();
      for (const domain of domains) {
        const ids = (received.get(domain) ?? []).map((r) => r['report-id']);
        expect(ids.length, domain).toBeGreaterThanOrEqual(1);
        expect(new Set(ids).size, domain).toBe(1);
      }
    } finally {
      execFileSync('umount', ['-l', mnt]);
    }
  });
});
