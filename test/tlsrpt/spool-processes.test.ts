/**
 * The file spool with real processes: several writers on one spool directory (no count may be lost), a report
 * sender in another process while writers run (RFC 8460 §4.1 days are reported once; late counts stay), and a
 * writer killed with SIGKILL mid-recording (the loss stays within the documented bound; a restart goes on).
 * Writers are child processes running test/tlsrpt/fixtures/spool-writer.ts with a real TlsRptAggregator.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createDefaultResolver } from '../../src/discovery/resolver.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';
import { totalSessions } from '../../src/tlsrpt/aggregate.js';
import { gunzipTlsRptReport, utcDayKey } from '../../src/tlsrpt/report.js';
import { createTlsRptReporter } from '../../src/tlsrpt/scheduler.js';
import { FileSpoolStore } from '../../src/tlsrpt/file-spool.js';
import { TlsRptAggregator } from '../../src/tlsrpt/recorder.js';
import type { TlsRptReport } from '../../src/tlsrpt/types.js';

const WRITER = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'spool-writer.ts');
const DAY_MS = 86_400_000;
let dir: string;
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  if (dir) await rm(dir, { recursive: true, force: true });
});

function writer(args: string[]): { child: ChildProcess; out: () => string; done: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx', WRITER, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (out += s));
  const done = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, out: () => out, done };
}

/** Sessions stored in the spool, read straight from the files (day directories only). */
async function spoolTotal(spool: string): Promise<{ total: number; failures: number }> {
  let total = 0;
  let failures = 0;
  for (const day of await readdir(spool)) {
    if (!/^\d{4}-\d{2}-\d{2}$/.test(day)) continue;
    for (const name of await readdir(join(spool, day))) {
      if (!name.endsWith('.json')) continue;
      const record = JSON.parse(await readFile(join(spool, day, name), 'utf8')) as { policies: Array<{ successCount: number; failureCount: number }> };
      for (const p of record.policies) {
        total += p.successCount + p.failureCount;
        failures += p.failureCount;
      }
    }
  }
  return { total, failures };
}

describe('several writer processes on one spool directory', () => {
  it('4 processes × 20 000 outcomes: exactly 80 000 stored (72 000 successes, 8 000 failures)', { timeout: 120_000 }, async () => {
    dir = await mkdtemp(join(tmpdir(), 'tlsrpt-procs-'));
    // flushDelayMs 0: every writer merges after every event-loop turn, the most contention there can be.
    const writers = Array.from({ length: 4 }, () => writer([dir, '20000', '3', 'finite', '0']));
    const codes = await Promise.all(writers.map((w) => w.done));
    expect(codes, writers.map((w) => w.out()).join('\n')).toEqual([0, 0, 0, 0]);
    for (const w of writers) expect(w.out()).toMatch(/^done 20000 .*"storeErrors":0/);
    expect(await spoolTotal(dir)).toEqual({ total: 80_000, failures: 8_000 });
    expect((await readdir(join(dir, utcDayKey(Date.now())))).filter((n) => !n.endsWith('.json'))).toEqual([]); // no lock or temp file left
  });
});

describe('sending a live spool from another process', () => {
  let world: TestWorld;
  const received: TlsRptReport[] = [];
  beforeAll(async () => {
    world = await createTestWorld();
    for (let i = 0; i < 3; i++) world.dns.setRecords(`_smtp._tls.d${i}.test`, { txt: ['v=TLSRPTv1; rua=https://rua.collector.test/r'] });
    world.addHttpsHost('rua.collector.test', {
      handler: (_req, res, body) => {
        void gunzipTlsRptReport(body).then((report) => {
          received.push(report);
          res.writeHead(200).end();
        });
      },
    });
  });
  afterAll(async () => {
    await world.close();
  });

  it('reports sent while 2 writers still record the same day carry every session exactly once', { timeout: 120_000 }, async () => {
    dir = await mkdtemp(join(tmpdir(), 'tlsrpt-send-'));
    const writers = [writer([dir, '20000', '3', 'finite', '0']), writer([dir, '20000', '3', 'finite', '0'])];
    // The sender's clock is a day ahead: the writers' day is a closed day to it (as the CLI sees yesterday).
    const sender = createTlsRptReporter({
      organizationName: 'o',
      contactInfo: 'c@o.test',
      submitter: 'mta.o.test',
      spoolDir: dir,
      resolver: createDefaultResolver({ dnsServers: world.dns.servers, timeoutMs: 1000, tries: 1 }),
      ca: world.ca.rootPem,
      httpsPort: world.httpsPort,
      allowInternalDestinations: true, // the test world's report endpoints are on loopback
      now: () => Date.now() + DAY_MS,
      delayMs: 0,
      jitterMs: 0,
    });
    let running = true;
    void Promise.all(writers.map((w) => w.done)).then(() => (running = false));
    let rounds = 0;
    while (running) {
      await sender.flush();
      rounds++;
    }
    await sender.flush(); // what the writers wrote last
    await sender.close();
    expect(rounds).toBeGreaterThan(1);
    const sessions = received.reduce((n, r) => n + r.policies.reduce((m, p) => m + p.summary['total-successful-session-count'] + p.summary['total-failure-session-count'], 0), 0);
    expect(sessions).toBe(40_000);
    expect(await spoolTotal(dir)).toEqual({ total: 0, failures: 0 });
  });
});

describe('a writer killed with SIGKILL while recording (crash loss bound)', () => {
  it('at ~2 000 outcomes/s with the default settings: at most maxUnflushedOutcomes (1 000) + one write lost; a restart goes on', { timeout: 60_000 }, async () => {
    dir = await mkdtemp(join(tmpdir(), 'tlsrpt-kill-'));
    const w = writer([dir, '20', '3', 'paced']); // 20 every 10 ms
    await new Promise((resolve) => setTimeout(resolve, 3500));
    w.child.kill('SIGKILL');
    await w.done;
    const progress = w
      .out()
      .trim()
      .split('\n')
      .filter((l) => /^\d+ \d+$/.test(l))
      .map((l) => l.split(' ').map(Number) as [number, number]);
    const [recorded, at] = progress.at(-1)!;
    // What was recorded while the last write could have been under way (generous: half a second).
    const duringWrite = recorded - progress.find(([, t]) => t >= at - 500)![0];
    const { total } = await spoolTotal(dir);
    const lost = recorded + 20 - total; // at most one batch more than the last progress line was recorded
    expect(recorded).toBeGreaterThan(3000);
    expect(lost).toBeGreaterThanOrEqual(0);
    expect(lost).toBeLessThanOrEqual(1000 + duringWrite);

    // A restart on the same spool: a lock left by the killed process is broken (its pid is gone).
    const agg = new TlsRptAggregator({ store: new FileSpoolStore(dir, { lockTimeoutMs: 2000 }) });
    for (let i = 0; i < 10; i++) agg.record({ policy: { type: 'no-policy-found', domain: 'd0.test' }, success: true });
    await agg.close();
    expect((await spoolTotal(dir)).total).toBe(total + 10);
  });

  it('at full speed (~10^5 outcomes/s): at most the outcomes of the last second are lost', { timeout: 60_000 }, async () => {
    dir = await mkdtemp(join(tmpdir(), 'tlsrpt-kill-'));
    const w = writer([dir, '1000', '3', 'endless']);
    await new Promise((resolve) => setTimeout(resolve, 3500));
    w.child.kill('SIGKILL');
    await w.done;
    const lines = w
      .out()
      .trim()
      .split('\n')
      .filter((l) => /^\d+ \d+$/.test(l))
      .map((l) => l.split(' ').map(Number) as [number, number]);
    const [recorded, at] = lines.at(-1)!;
    const lastSecond = recorded - lines.find(([, t]) => t >= at - 1000)![0];
    const { total } = await spoolTotal(dir);
    const lost = recorded + 1000 - total;
    expect(recorded).toBeGreaterThan(20_000);
    expect(lost).toBeLessThanOrEqual(lastSecond + 1000);
  });

  it('a lock file left by a dead process is broken; a live one is waited for', async () => {
    dir = await mkdtemp(join(tmpdir(), 'tlsrpt-lock-'));
    const day = utcDayKey(Date.now());
    await mkdir(join(dir, day), { recursive: true });
    const { hostname } = await import('node:os');
    // pid 2^22 + 1 is above Linux's pid_max: never a live process.
    await writeFile(join(dir, day, 'stale.test.json.lock'), `${2 ** 22 + 1} ${hostname()} ${Date.now()}\n`);
    const store = new FileSpoolStore(dir, { lockTimeoutMs: 1000 });
    const delta = { day, policyDomain: 'stale.test', policies: [{ policy: { type: 'no-policy-found' as const, domain: 'stale.test' }, successCount: 2, failureCount: 0, failures: [] }] };
    const limits = new TlsRptAggregator({ store }).limits;
    await store.merge(delta, limits);
    expect(totalSessions((await store.get({ day, policyDomain: 'stale.test' }))!)).toBe(2);
    // A lock of this (live) process held elsewhere: the write waits, then fails (and would be retried by the recorder).
    await writeFile(join(dir, day, 'stale.test.json.lock'), `${process.ppid} ${hostname()} ${Date.now()}\n`);
    await expect(store.merge(delta, limits)).rejects.toMatchObject({ code: 'TLSRPT_STORE_FAILED' });
  });
});
