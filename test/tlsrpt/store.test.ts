import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtemp, readdir, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveLimits } from '../../src/tlsrpt/aggregate.js';
import type { TlsRptError } from '../../src/tlsrpt/errors.js';
import { TlsRptAggregator } from '../../src/tlsrpt/recorder.js';
import { FileSpoolStore } from '../../src/tlsrpt/file-spool.js';
import { MemoryTlsRptStore, type TlsRptStore, type TlsRptStoreEvent } from '../../src/tlsrpt/store.js';
import { DAY, DAY_START, HOUR, mixedDay, stsPolicy } from './helpers.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tlsrpt-spool-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const limits = resolveLimits();

describe('FileSpoolStore', () => {
  it('§4.1 a restart mid-day loses nothing that was flushed', async () => {
    const now = () => DAY_START + 12 * HOUR;
    // Process 1: records the morning, flushes, "crashes" (no close).
    const first = new TlsRptAggregator({ store: new FileSpoolStore(dir), now, flushDelayMs: 60_000 });
    const day = mixedDay(DAY_START + 9 * HOUR);
    for (const o of day) first.record(o);
    await first.flush();
    first.record({ policy: stsPolicy(), success: true }); // not flushed: lost with the crash, by design

    // Process 2: a new store on the same directory keeps counting.
    const store2 = new FileSpoolStore(dir);
    const second = new TlsRptAggregator({ store: store2, now: () => DAY_START + 18 * HOUR, flushDelayMs: 60_000 });
    for (const o of mixedDay(DAY_START + 15 * HOUR)) second.record(o);
    await second.close();

    const com = await store2.get({ day: DAY, policyDomain: 'example.com' });
    const full = com!.policies.find((p) => p.policy.policyString)!;
    expect(full).toMatchObject({ successCount: 14, failureCount: 8 });
    expect(full.failures.find((f) => f.resultType === 'certificate-expired')?.count).toBe(6);
    const net = await store2.get({ day: DAY, policyDomain: 'example.net' });
    expect(net!.policies[0]).toMatchObject({ successCount: 8, failureCount: 2 });
    expect((await store2.list()).sort((a, b) => a.policyDomain.localeCompare(b.policyDomain))).toEqual([
      { day: DAY, policyDomain: 'example.com' },
      { day: DAY, policyDomain: 'example.net' },
    ]);
  });

  it('spool format: one JSON file per day and domain, written atomically (no temp files left)', async () => {
    const store = new FileSpoolStore(dir);
    await store.merge({ day: DAY, policyDomain: 'example.com', policies: [{ policy: stsPolicy(), successCount: 1, failureCount: 0, failures: [] }] }, limits);
    expect(await readdir(dir)).toEqual([DAY]);
    expect(await readdir(join(dir, DAY))).toEqual(['example.com.json']);
    const json = JSON.parse(await readFile(join(dir, DAY, 'example.com.json'), 'utf8'));
    expect(json).toMatchObject({ format: 'mta-sts-sender/tlsrpt-spool', version: 1, day: DAY, policyDomain: 'example.com' });
    expect(json.policies[0].successCount).toBe(1);
  });

  it('concurrent merges of one record are serialised (no lost update)', async () => {
    const store = new FileSpoolStore(dir, { fsync: false });
    const delta = { day: DAY, policyDomain: 'example.com', policies: [{ policy: stsPolicy(), successCount: 1, failureCount: 0, failures: [] }] };
    await Promise.all(Array.from({ length: 25 }, () => store.merge(delta, limits)));
    expect((await store.get({ day: DAY, policyDomain: 'example.com' }))!.policies[0]!.successCount).toBe(25);
  });

  it('a corrupt or partial spool file is skipped, moved aside and reported, never fatal', async () => {
    const events: TlsRptStoreEvent[] = [];
    const onCorrupt: TlsRptError[] = [];
    const store = new FileSpoolStore(dir, { onCorrupt: (e) => onCorrupt.push(e) });
    store.subscribe((e) => events.push(e));
    await store.merge({ day: DAY, policyDomain: 'good.example', policies: [{ policy: stsPolicy('good.example'), successCount: 2, failureCount: 0, failures: [] }] }, limits);
    await writeFile(join(dir, DAY, 'partial.example.json'), '{"format":"mta-sts-sender/tlsrpt-spool","version":1,"day":"2026-11-22","polic');
    await writeFile(join(dir, DAY, 'wrong.example.json'), JSON.stringify({ format: 'mta-sts-sender/tlsrpt-spool', version: 1, day: DAY, policyDomain: 'wrong.example', policies: [{ policy: { type: 'sts', domain: 'wrong.example' }, successCount: -4, failureCount: 0, failures: [] }] }));

    const keys = await store.list();
    expect(keys.map((k) => k.policyDomain).sort()).toEqual(['good.example', 'partial.example', 'wrong.example']);
    const read = await Promise.all(keys.map((k) => store.get(k)));
    expect(read.filter(Boolean).map((r) => r!.policyDomain)).toEqual(['good.example']);
    expect(events.map((e) => [e.type, e.error.code, e.error.domain]).sort()).toEqual([
      ['corrupt', 'TLSRPT_SPOOL_CORRUPT', 'partial.example'],
      ['corrupt', 'TLSRPT_SPOOL_CORRUPT', 'wrong.example'],
    ]);
    expect(onCorrupt).toHaveLength(2);
    expect(onCorrupt[0]!.details.movedTo).toMatch(/corrupt/);
    expect((await readdir(join(dir, 'corrupt'))).length).toBe(2);
    expect((await store.list()).map((k) => k.policyDomain)).toEqual(['good.example']);
    // a merge into a record whose file was corrupt starts afresh
    await writeFile(join(dir, DAY, 'again.example.json'), 'garbage');
    await store.merge({ day: DAY, policyDomain: 'again.example', policies: [{ policy: { type: 'no-policy-found', domain: 'again.example' }, successCount: 1, failureCount: 0, failures: [] }] }, limits);
    expect((await store.get({ day: DAY, policyDomain: 'again.example' }))!.policies[0]!.successCount).toBe(1);
  });

  it('leftover temp files of a crash mid-write are removed and never read', async () => {
    const store = new FileSpoolStore(dir);
    await mkdir(join(dir, DAY), { recursive: true });
    await writeFile(join(dir, DAY, 'example.com.json.123.abcd.tmp'), '{"half');
    await writeFile(join(dir, 'not-a-day'), 'ignored');
    expect(await store.list()).toEqual([]);
    expect(await readdir(join(dir, DAY))).toEqual([]);
  });

  it('keeps delivery state with the counts; delete removes the record and its empty day directory', async () => {
    const store = new FileSpoolStore(dir);
    const key = { day: DAY, policyDomain: 'example.com' };
    await store.setDelivery(key, { uniqueId: 'a1', dueAt: 1, attempts: 0, nextAttemptAt: 1 }); // no record: no-op
    expect(await store.list()).toEqual([]);
    await store.merge({ ...key, policies: [{ policy: stsPolicy(), successCount: 1, failureCount: 0, failures: [] }] }, limits);
    await store.setDelivery(key, { uniqueId: 'a1', dueAt: 10, attempts: 2, firstAttemptAt: 5, nextAttemptAt: 20, lastError: 'boom' });
    await store.merge({ ...key, policies: [{ policy: stsPolicy(), successCount: 1, failureCount: 0, failures: [] }] }, limits);
    const again = await new FileSpoolStore(dir).get(key);
    expect(again?.delivery).toEqual({ uniqueId: 'a1', dueAt: 10, attempts: 2, firstAttemptAt: 5, nextAttemptAt: 20, lastError: 'boom' });
    expect(again?.policies[0]?.successCount).toBe(2);
    await store.delete(key);
    await store.delete(key);
    expect(await readdir(dir)).toEqual([]);
  });

  it('a missing spool directory is an empty store', async () => {
    const store = new FileSpoolStore(join(dir, 'nope'));
    expect(await store.list()).toEqual([]);
    expect(await store.get({ day: DAY, policyDomain: 'example.com' })).toBeUndefined();
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
    ['FileSpoolStore', () => new FileSpoolStore(dir) as TlsRptStore],
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
