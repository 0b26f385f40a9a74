import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSqliteTlsRptStore, mergeDomainDayCounts, MemoryTlsRptStore, TlsRptAggregator, type DomainDayCounts, type SqliteTlsRptStoreOptions, type StoredDomainDay, type TlsRptStore, type TlsRptStoreEvent } from '../../src/tlsrpt/index.js';
import { resolveLimits, totalSessions } from '../../src/tlsrpt/aggregate.js';
import { DAY, DAY_START, HOUR, mixedDay, stsPolicy } from './helpers.js';

let dir: string;
const db = () => join(dir, 'tlsrpt.db');
/** The store's clock is on DAY (records of older days are deleted as expired). */
const open = (options: Partial<SqliteTlsRptStoreOptions> = {}) => createSqliteTlsRptStore({ path: db(), now: () => DAY_START + 12 * HOUR, ...options });
const DAY_MS = 86_400_000;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tlsrpt-store-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const limits = resolveLimits();

const sessionsOf = (r: StoredDomainDay | undefined): number => (r ? totalSessions(r) : 0);
const one = (domain: string, successCount = 1): DomainDayCounts => ({ day: DAY, policyDomain: domain, policies: [{ policy: stsPolicy(domain), successCount, failureCount: 0, failures: [] }] });

describe('createSqliteTlsRptStore', () => {
  it('§4.1 a restart mid-day loses nothing that was flushed', async () => {
    const now = () => DAY_START + 12 * HOUR;
    // Process 1: records the morning, flushes, "crashes" (no close).
    const first = new TlsRptAggregator({ store: open(), now, flushDelayMs: 60_000 });
    const day = mixedDay(DAY_START + 9 * HOUR);
    for (const o of day) first.record(o);
    await first.flush();
    first.record({ policy: stsPolicy(), success: true }); // not flushed: lost with the crash, by design

    // Process 2: a new store on the same file keeps counting.
    const store2 = open();
    const second = new TlsRptAggregator({ store: store2, now: () => DAY_START + 18 * HOUR, flushDelayMs: 60_000 });
    for (const o of mixedDay(DAY_START + 15 * HOUR)) second.record(o);
    await second.close();

    const com = await store2.get({ day: DAY, policyDomain: 'example.com' });
    const full = com!.policies.find((p) => p.policy.policyString)!;
    expect(full).toMatchObject({ successCount: 14, failureCount: 8 });
    expect(full.failures.find((f) => f.resultType === 'certificate-expired')?.count).toBe(6);
    const net = await store2.get({ day: DAY, policyDomain: 'example.net' });
    expect(net!.policies[0]).toMatchObject({ successCount: 8, failureCount: 2 });
    expect(await store2.list()).toEqual([
      { day: DAY, policyDomain: 'example.com' },
      { day: DAY, policyDomain: 'example.net' },
    ]);
    await store2.close();
  });

  it('a flush is one transaction whatever the number of domains: all of it is stored, or none', async () => {
    const store = open();
    const agg = new TlsRptAggregator({ store, now: () => DAY_START + HOUR, flushDelayMs: 60_000, maxUnflushedOutcomes: 1_000_000 });
    for (let i = 0; i < 500; i++) agg.record({ policy: stsPolicy(`d${i}.test`), success: true });
    // A second connection holds the write lock: the whole flush waits, then fails; nothing of it is stored.
    const blocker = new Database(db());
    blocker.exec('BEGIN IMMEDIATE');
    const busy = open({ busyTimeoutMs: 50 });
    const agg2 = new TlsRptAggregator({ store: busy, now: () => DAY_START + HOUR, flushDelayMs: 60_000 });
    for (let i = 0; i < 500; i++) agg2.record({ policy: stsPolicy(`d${i}.test`), success: true });
    await expect(agg2.flush()).rejects.toMatchObject({ code: 'TLSRPT_STORE_FAILED', details: { sqliteCode: 'SQLITE_BUSY' } });
    expect(agg2.unflushedCount()).toBe(500);
    blocker.exec('ROLLBACK');
    blocker.close();
    await agg.flush();
    await agg2.flush(); // kept in memory, written now
    const keys = await store.list();
    expect(keys).toHaveLength(500);
    expect(sessionsOf(await store.get({ day: DAY, policyDomain: 'd7.test' }))).toBe(2);
    await Promise.all([store.close(), busy.close()]);
  });

  it('merges of several connections add up (no lost update), with the caps of mergeDomainDayCounts', async () => {
    const stores = [open(), open()];
    await Promise.all(Array.from({ length: 50 }, (_, i) => stores[i % 2]!.merge(one('example.com'), limits)));
    expect(sessionsOf(await stores[0]!.get({ day: DAY, policyDomain: 'example.com' }))).toBe(50);
    // Caps: 2 policies per domain, 2 failure details per policy (more are folded into the overflow detail).
    const small = resolveLimits({ maxPoliciesPerDomain: 2, maxFailureDetailsPerPolicy: 2 });
    const policy = (n: number) => ({ type: 'sts' as const, domain: 'caps.test', policyString: [`version: STSv1`, `mx: mx${n}.caps.test`] });
    const failure = (n: number) => ({ resultType: 'certificate-expired' as const, receivingMxHostname: `mx${n}.caps.test`, count: 1 });
    for (let n = 0; n < 4; n++) {
      await stores[n % 2]!.merge({ day: DAY, policyDomain: 'caps.test', policies: [{ policy: policy(n), successCount: 1, failureCount: 0, failures: [] }] }, small);
      await stores[n % 2]!.merge({ day: DAY, policyDomain: 'caps.test', policies: [{ policy: policy(0), successCount: 0, failureCount: 1, failures: [failure(n)] }] }, small);
    }
    const read = (await stores[1]!.get({ day: DAY, policyDomain: 'caps.test' }))!;
    const expected = [0, 1, 2, 3].reduce<DomainDayCounts | undefined>(
      (acc, n) => mergeDomainDayCounts(mergeDomainDayCounts(acc, { day: DAY, policyDomain: 'caps.test', policies: [{ policy: policy(n), successCount: 1, failureCount: 0, failures: [] }] }, small), { day: DAY, policyDomain: 'caps.test', policies: [{ policy: policy(0), successCount: 0, failureCount: 1, failures: [failure(n)] }] }, small),
      undefined,
    )!;
    const sorted = (c: DomainDayCounts) => c.policies.map((p) => ({ ...p, failures: [...p.failures].sort((x, y) => JSON.stringify(x, Object.keys(x).sort()).localeCompare(JSON.stringify(y, Object.keys(y).sort()))) })).sort((x, y) => JSON.stringify(x.policy).localeCompare(JSON.stringify(y.policy)));
    expect(sorted(read)).toEqual(sorted(expected));
    expect(read.policies).toHaveLength(2);
    await Promise.all(stores.map((s) => s.close()));
  });

  it('a corrupt record is skipped, deleted and reported (TLSRPT_SPOOL_CORRUPT), never fatal; read-only stores leave it', async () => {
    const store = open();
    const events: TlsRptStoreEvent[] = [];
    store.subscribe((e) => events.push(e));
    await store.mergeMany([one('good.example', 2), one('bad.example'), one('edited.example')], limits);
    const raw = new Database(db());
    raw.prepare("UPDATE tlsrpt_policy SET policy_key = '[\"sts\",' WHERE policy_domain = 'bad.example'").run();
    raw.prepare("UPDATE tlsrpt_policy SET success_count = -4 WHERE policy_domain = 'edited.example'").run();
    raw.close();
    const preview = open({ readOnly: true });
    const previewEvents: TlsRptStoreEvent[] = [];
    preview.subscribe((e) => previewEvents.push(e));
    expect(await preview.get({ day: DAY, policyDomain: 'bad.example' })).toBeUndefined();
    expect(previewEvents.map((e) => [e.error.code, e.error.details.removed])).toEqual([['TLSRPT_SPOOL_CORRUPT', false]]);
    await preview.close();

    const keys = await store.list();
    const read = await Promise.all(keys.map((k) => store.get(k)));
    expect(read.filter(Boolean).map((r) => r!.policyDomain)).toEqual(['good.example']);
    expect(events.map((e) => [e.type, e.error.code, e.error.domain, e.error.details.removed]).sort()).toEqual([
      ['corrupt', 'TLSRPT_SPOOL_CORRUPT', 'bad.example', true],
      ['corrupt', 'TLSRPT_SPOOL_CORRUPT', 'edited.example', true],
    ]);
    expect((await store.list()).map((k) => k.policyDomain)).toEqual(['good.example']);
    // a merge into a record that was corrupt starts afresh
    await store.merge(one('bad.example'), limits);
    expect(sessionsOf(await store.get({ day: DAY, policyDomain: 'bad.example' }))).toBe(1);
    await store.close();
  });

  it('keeps delivery state with the counts; its unique id and due time never change once stored; delete removes the record', async () => {
    const store = open();
    const key = { day: DAY, policyDomain: 'example.com' };
    await store.setDelivery(key, { uniqueId: 'a1', dueAt: 1, attempts: 0, nextAttemptAt: 1 }); // no record: no-op
    expect(await store.list()).toEqual([]);
    await store.merge(one('example.com'), limits);
    await store.setDelivery(key, { uniqueId: 'a1', dueAt: 10, attempts: 0, nextAttemptAt: 10 });
    // A second sender scheduling the same report at the same time: its id and due time are not taken.
    await store.setDelivery(key, { uniqueId: 'b2', dueAt: 99, attempts: 2, firstAttemptAt: 5, nextAttemptAt: 20, lastError: 'boom' });
    await store.merge(one('example.com'), limits);
    const again = await open().get(key);
    expect(again?.delivery).toEqual({ uniqueId: 'a1', dueAt: 10, attempts: 2, firstAttemptAt: 5, nextAttemptAt: 20, lastError: 'boom' });
    expect(again?.policies[0]?.successCount).toBe(2);
    await store.delete(key);
    await store.delete(key);
    expect(await store.list()).toEqual([]);
    await store.close();
  });

  it('claim: one sender at a time; the first claim freezes the report and its id; later counts make the next report', async () => {
    const a = open();
    const b = open();
    const key = { day: DAY, policyDomain: 'example.com' };
    await a.merge(one('example.com', 5), limits);
    expect(await a.claim(key)).toBeUndefined(); // not scheduled yet
    await a.setDelivery(key, { uniqueId: 'first', dueAt: 1, attempts: 0, nextAttemptAt: 1 });
    const claimed = await a.claim(key);
    expect(claimed).toMatchObject({ delivery: { uniqueId: 'first' }, policies: [{ successCount: 5 }] });
    expect(await b.claim(key)).toBeUndefined(); // held by a
    await b.merge(one('example.com', 3), limits); // late sessions of the day
    expect(sessionsOf(await b.get(key))).toBe(5); // the frozen report: what will be sent
    await b.setDelivery(key, { uniqueId: 'first', dueAt: 1, attempts: 1, nextAttemptAt: 1 }); // held: no-op
    await a.release(key);
    const byB = await b.claim(key); // released: b may take the next turn, same report, same id
    expect(byB).toEqual(claimed);
    await b.settle(key, byB!);
    // The late sessions: a new record, without delivery state (a new report with its own id).
    expect(await a.get(key)).toMatchObject({ policies: [{ successCount: 3 }] });
    expect((await a.get(key))?.delivery).toBeUndefined();
    await Promise.all([a.close(), b.close()]);
  });

  it('a claim lapses after reportLockMs: the report is sent again with the same content and id', async () => {
    let t = DAY_START + DAY_MS;
    const a = open({ reportLockMs: 1000, now: () => t });
    const b = open({ reportLockMs: 1000, now: () => t });
    const key = { day: DAY, policyDomain: 'example.com' };
    await a.merge(one('example.com', 5), limits);
    await a.setDelivery(key, { uniqueId: 'crash1', dueAt: 1, attempts: 0, nextAttemptAt: 1 });
    const first = await a.claim(key); // a "crashes" after delivering it, before settle
    await b.merge(one('example.com', 2), limits);
    expect(await b.claim(key)).toBeUndefined();
    t += 1001;
    expect(await b.claim(key)).toEqual(first);
    await Promise.all([a.close(), b.close()]);
  });

  it('records of days past retentionMs are deleted (the file stays bounded), with a warning for reports never sent', async () => {
    const warnings: string[] = [];
    let t = DAY_START + 12 * HOUR;
    const store = open({ retentionMs: DAY_MS, now: () => t, logger: { warn: (m: string) => warnings.push(m) } });
    await store.merge(one('old.example'), limits);
    await store.setDelivery({ day: DAY, policyDomain: 'old.example' }, { uniqueId: 'x', dueAt: 1, attempts: 0, nextAttemptAt: 1 });
    t = DAY_START + 2 * DAY_MS - 1;
    expect(await store.list()).toHaveLength(1);
    t = DAY_START + 2 * DAY_MS;
    expect(await store.list()).toEqual([]);
    expect(warnings.join('\n')).toMatch(/never sent: 1 report/);
    await store.close();
  });

  it('schema rule: application_id and user_version stamped; a newer version, a foreign or a non-SQLite file is refused', async () => {
    await open().close();
    const raw = new Database(db());
    expect(raw.pragma('application_id', { simple: true })).toBe(0x4d535452);
    expect(raw.pragma('user_version', { simple: true })).toBe(1);
    raw.pragma('user_version = 2');
    raw.close();
    expect(() => open()).toThrow(expect.objectContaining({ code: 'TLSRPT_STORE_FAILED', details: expect.objectContaining({ reason: 'newer' }) }));
    const foreign = join(dir, 'foreign.db');
    const other = new Database(foreign);
    other.exec('CREATE TABLE t (x)');
    other.close();
    expect(() => createSqliteTlsRptStore({ path: foreign })).toThrow(expect.objectContaining({ code: 'TLSRPT_STORE_FAILED', details: expect.objectContaining({ reason: 'foreign' }) }));
    const text = join(dir, 'text.db');
    await writeFile(text, 'not a database at all, just some text that is long enough to be a header '.repeat(10));
    expect(() => createSqliteTlsRptStore({ path: text })).toThrow(expect.objectContaining({ code: 'TLSRPT_STORE_FAILED', details: expect.objectContaining({ reason: 'not-sqlite' }) }));
  });

  it('options are validated at creation (unknown option, did you mean, path required)', () => {
    expect(() => open({ reportLockMS: 5 } as never)).toThrow(/unknown option reportLockMS \(did you mean reportLockMs\?\)/);
    expect(() => createSqliteTlsRptStore({} as never)).toThrow(/option path must be a file path \(required\)/);
    expect(() => open({ reportLockMs: 10 })).toThrow(/option reportLockMs must be an integer from 1000/);
  });
});

describe('MemoryTlsRptStore', () => {
  it('copies values in and out', async () => {
    const store: TlsRptStore = new MemoryTlsRptStore();
    const key = { day: DAY, policyDomain: 'example.com' };
    await store.merge({ ...key, policies: [{ policy: stsPolicy(), successCount: 1, failureCount: 0, failures: [] }] }, limits);
    const a = await store.get(key);
    a!.policies[0]!.successCount = 99;
    expect((await store.get(key))!.policies[0]!.successCount).toBe(1);
    await store.setDelivery(key, { uniqueId: 'u', dueAt: 1, attempts: 0, nextAttemptAt: 1 });
    await store.merge({ ...key, policies: [{ policy: stsPolicy(), successCount: 1, failureCount: 0, failures: [] }] }, limits);
    expect(await store.get(key)).toMatchObject({ delivery: { uniqueId: 'u' }, policies: [{ successCount: 2 }] });
    await store.delete(key);
    expect(await store.list()).toEqual([]);
  });
});

describe('settle: a sent report removes only what it carried', () => {
  it.each([
    ['MemoryTlsRptStore', () => new MemoryTlsRptStore() as TlsRptStore],
    ['createSqliteTlsRptStore (not claimed)', () => open() as TlsRptStore],
  ])('%s keeps sessions merged after the report was read, without the old delivery state', async (_name, make) => {
    const store = make();
    const key = { day: DAY, policyDomain: 'example.com' };
    const policy = stsPolicy();
    const failure = { resultType: 'certificate-expired' as const, receivingMxHostname: 'mx1.example.com', failureReasonCode: 'CERT_HAS_EXPIRED' };
    await store.merge({ ...key, policies: [{ policy, successCount: 5, failureCount: 2, failures: [{ ...failure, count: 2 }] }] }, limits);
    await store.setDelivery(key, { uniqueId: 'abc', dueAt: 1, attempts: 0, nextAttemptAt: 1 });
    const sent = (await store.get(key))!;
    // Late sessions of the same day arrive while the report is being delivered.
    await store.merge({ ...key, policies: [{ policy, successCount: 3, failureCount: 1, failures: [{ ...failure, count: 1 }] }] }, limits);
    await store.merge({ ...key, policies: [{ policy: { type: 'no-policy-found', domain: 'example.com' }, successCount: 4, failureCount: 0, failures: [] }] }, limits);
    await store.settle!(key, sent);
    const rest = await store.get(key);
    rest?.policies.sort((a, b) => JSON.stringify(b.policy).localeCompare(JSON.stringify(a.policy))); // order is not part of the contract
    expect(rest).toEqual({
      ...key,
      policies: [
        { policy, successCount: 3, failureCount: 1, failures: [{ ...failure, count: 1 }] },
        { policy: { type: 'no-policy-found', domain: 'example.com' }, successCount: 4, failureCount: 0, failures: [] },
      ],
    });
    await store.settle!(key, rest!);
    expect(await store.get(key)).toBeUndefined();
    expect(await store.list()).toEqual([]);
  });
});
