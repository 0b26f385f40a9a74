import { describe, expect, it } from 'vitest';
import { TRUNCATED_FAILURE_REASON, mergeDomainDayCounts, resolveLimits, type DomainDayCounts } from '../../src/tlsrpt/aggregate.js';
import { TlsRptAggregator, currentReportDelivery, runAsReportDelivery } from '../../src/tlsrpt/recorder.js';
import { buildTlsRptReport, utcDayRange } from '../../src/tlsrpt/report.js';
import { MemoryTlsRptStore, type TlsRptStore } from '../../src/tlsrpt/store.js';
import type { SessionOutcome } from '../../src/tlsrpt/types.js';
import { DAY, DAY_START, HOUR, clock, mixedDay, schemaErrors, stsPolicy } from './helpers.js';

async function collect(store: TlsRptStore): Promise<Map<string, DomainDayCounts>> {
  const out = new Map<string, DomainDayCounts>();
  for (const key of await store.list()) {
    const record = await store.get(key);
    if (record) out.set(`${key.day} ${key.policyDomain}`, record);
  }
  return out;
}

function aggregator(options: Partial<ConstructorParameters<typeof TlsRptAggregator>[0]> = {}) {
  const store = options.store ?? new MemoryTlsRptStore();
  const c = clock(DAY_START + 12 * HOUR);
  const agg = new TlsRptAggregator({ store, now: c.now, flushDelayMs: 60_000, ...options });
  return { agg, store, clock: c };
}

describe('TlsRptAggregator', () => {
  it('§4.2 a day of mixed outcomes: one record per policy domain with the right counts and details', async () => {
    const { agg, store } = aggregator();
    for (const o of mixedDay()) agg.record(o);
    await agg.flush();
    const records = await collect(store);
    expect([...records.keys()].sort()).toEqual([`${DAY} example.com`, `${DAY} example.net`]);

    const com = records.get(`${DAY} example.com`)!;
    expect(com.policies).toHaveLength(2); // the full sts policy, and the sts policy whose fetch failed (no text)
    const full = com.policies.find((p) => p.policy.policyString)!;
    expect(full).toMatchObject({ successCount: 7, failureCount: 4 });
    expect(full.failures).toEqual([
      { resultType: 'certificate-expired', sendingMtaIp: '192.0.2.10', receivingMxHostname: 'mx1.example.com', receivingIp: '198.51.100.25', failureReasonCode: 'CERT_HAS_EXPIRED', count: 3 },
      { resultType: 'starttls-not-supported', sendingMtaIp: '192.0.2.10', receivingMxHostname: 'mx2.mail.example.com', receivingMxHelo: 'mx2.mail.example.com', receivingIp: '2001:db8::25', count: 1 },
    ]);
    const fetchFailed = com.policies.find((p) => !p.policy.policyString)!;
    expect(fetchFailed).toEqual({ policy: { type: 'sts', domain: 'example.com' }, successCount: 0, failureCount: 1, failures: [{ resultType: 'sts-policy-fetch-error', failureReasonCode: 'ECONNREFUSED', count: 1 }] });

    // domain and MX names are normalised, so "EXAMPLE.NET." is the same policy domain
    const net = records.get(`${DAY} example.net`)!;
    expect(net.policies).toEqual([
      { policy: { type: 'no-policy-found', domain: 'example.net' }, successCount: 4, failureCount: 1, failures: [{ resultType: 'validation-failure', receivingMxHostname: 'mx.example.net', count: 1 }] },
    ]);

    const report = buildTlsRptReport({ organizationName: 'S', contactInfo: 'tlsrpt@s.example', reportId: 'x@s.example', dateRange: utcDayRange(DAY), policies: com.policies });
    expect(schemaErrors(report)).toBe('');
    expect(agg.stats().recorded).toBe(mixedDay().length);
  });

  it('§4.4 counts only: no recipient address or message content reaches the store or the report', async () => {
    const { agg, store } = aggregator();
    for (const o of mixedDay()) agg.record(o);
    await agg.flush();
    const everything = JSON.stringify([...(await collect(store)).values()]);
    for (const secret of ['alice@', 'bob@', 'carol@', 'payroll', 'Subject', 'recipient', 'rcpt', 'message']) expect(everything).not.toContain(secret);
    const reports = [...(await collect(store)).values()].map((c) =>
      JSON.stringify(buildTlsRptReport({ organizationName: 'S', contactInfo: 'tlsrpt@s.example', dateRange: utcDayRange(DAY), policies: c.policies })),
    );
    for (const r of reports) for (const secret of ['alice@', 'bob@', 'carol@', 'payroll']) expect(r).not.toContain(secret);
  });

  it('§4.1 sessions are counted on the UTC day of `at`, or of the clock when `at` is missing', async () => {
    const { agg, store, clock: c } = aggregator();
    c.set(DAY_START + 30 * HOUR); // 2026-11-23 06:00Z
    agg.record({ policy: stsPolicy(), success: true, at: DAY_START + 24 * HOUR - 1 }); // 2026-11-22 23:59:59.999
    agg.record({ policy: stsPolicy(), success: true }); // now: 2026-11-23
    agg.record({ policy: stsPolicy(), success: true, at: DAY_START - 1 }); // 2026-11-21: too old, dropped
    agg.record({ policy: stsPolicy(), success: true, at: DAY_START + 40 * HOUR }); // future: dropped
    await agg.flush();
    expect([...(await collect(store)).keys()].sort()).toEqual(['2026-11-22 example.com', '2026-11-23 example.com']);
    expect(agg.stats().dropped['out-of-range']).toBe(2);
  });

  it('§5.3 report sessions are not counted: outcome flag', async () => {
    const { agg, store } = aggregator();
    agg.record({ policy: stsPolicy(), success: true, reportDelivery: true });
    agg.record({ policy: stsPolicy(), success: false, failure: { resultType: 'certificate-expired' }, reportDelivery: true });
    await agg.flush();
    expect(await store.list()).toEqual([]);
    expect(agg.stats().dropped['report-session']).toBe(2);
  });

  it('§5.3 report sessions are not counted: anything recorded inside a report delivery, across async hops', async () => {
    const { agg, store } = aggregator();
    const context = { policyDomain: 'example.com', reportId: 'r@s.example' };
    expect(currentReportDelivery()).toBeUndefined();
    await runAsReportDelivery(context, async () => {
      agg.record({ policy: stsPolicy(), success: true });
      await new Promise((resolve) => setTimeout(resolve, 5));
      expect(currentReportDelivery()).toEqual(context);
      await new Promise<void>((resolve) =>
        setImmediate(() => {
          agg.record({ policy: stsPolicy(), success: false });
          resolve();
        }),
      );
    });
    agg.record({ policy: stsPolicy(), success: true }); // outside: counted
    await agg.flush();
    const records = await collect(store);
    expect(records.get(`${DAY} example.com`)?.policies[0]).toMatchObject({ successCount: 1, failureCount: 0 });
    expect(agg.stats().dropped['report-session']).toBe(2);
  });

  it('record() never throws, whatever it is given', () => {
    const { agg } = aggregator();
    const junk: unknown[] = [null, undefined, 42, 'x', {}, { policy: null }, { policy: { type: 'sts', domain: '' } }, { policy: { type: 'dane', domain: 'a.example' } }, { policy: { type: 'sts', domain: '1.2.3.4' }, success: true }];
    for (const j of junk) expect(() => agg.record(j as SessionOutcome)).not.toThrow();
    expect(agg.stats().dropped.invalid).toBe(junk.length);
    // a failure without details is a validation-failure (§4.3.3), an unknown result type too
    agg.record({ policy: stsPolicy(), success: false });
    agg.record({ policy: stsPolicy(), success: false, failure: { resultType: 'made-up' as 'dane-required' } });
    expect(agg.unflushed()[0]?.policies[0]?.failures).toEqual([{ resultType: 'validation-failure', count: 2 }]);
  });

  it('memory caps: failure details past the cap fold into a truncation detail per result type, totals stay exact', async () => {
    const { agg, store } = aggregator({ limits: { maxFailureDetailsPerPolicy: 3 } });
    for (let i = 0; i < 50; i++) {
      agg.record({ policy: stsPolicy(), success: false, failure: { resultType: i % 2 ? 'certificate-expired' : 'certificate-not-trusted', receivingIp: `198.51.100.${i}` } });
    }
    await agg.flush();
    for (let i = 50; i < 60; i++) agg.record({ policy: stsPolicy(), success: false, failure: { resultType: 'certificate-expired', receivingIp: `198.51.100.${i}` } });
    await agg.flush();
    const policy = (await collect(store)).get(`${DAY} example.com`)!.policies[0]!;
    expect(policy.failureCount).toBe(60);
    expect(policy.failures.reduce((n, f) => n + f.count, 0)).toBe(60);
    const regular = policy.failures.filter((f) => f.failureReasonCode !== TRUNCATED_FAILURE_REASON);
    const folded = policy.failures.filter((f) => f.failureReasonCode === TRUNCATED_FAILURE_REASON);
    expect(regular).toHaveLength(3);
    expect(folded).toEqual([
      { resultType: 'certificate-expired', failureReasonCode: TRUNCATED_FAILURE_REASON, count: 34 },
      { resultType: 'certificate-not-trusted', failureReasonCode: TRUNCATED_FAILURE_REASON, count: 23 },
    ]);
  });

  it('memory caps: policy domains per day and policies per domain; drops are counted and reported once', async () => {
    const drops: string[] = [];
    const { agg, store } = aggregator({ limits: { maxDomainsPerDay: 5, maxPoliciesPerDomain: 2 }, onDrop: (d) => drops.push(`${d.reason} ${d.day}`) });
    for (let i = 0; i < 20; i++) agg.record({ policy: { type: 'no-policy-found', domain: `d${i}.example` }, success: true });
    for (let i = 0; i < 4; i++) agg.record({ policy: stsPolicy('d0.example', [`version: STSv1`, `mode: testing`, `mx: mx${i}.d0.example`, 'max_age: 600']), success: true });
    await agg.flush();
    const records = await collect(store);
    expect(records.size).toBe(5);
    expect(records.get(`${DAY} d0.example`)?.policies).toHaveLength(2);
    expect(agg.stats().dropped).toMatchObject({ 'domain-cap': 15, 'policy-cap': 3 });
    expect(drops).toEqual([`domain-cap ${DAY}`, `policy-cap ${DAY}`]);
  });

  it('memory caps: long strings are cut (a host name too long is left out, not cut), multi-line policy strings split into lines', () => {
    const { agg } = aggregator({ limits: { maxFieldLength: 10, maxPolicyStringLength: 40 } });
    agg.record({
      policy: { type: 'sts', domain: 'example.com', policyString: ['version: STSv1\nmode: enforce\r\n\nmx: a.example.com', 'max_age: 86400'], mxHost: ['a.example.com'] },
      success: false,
      failure: { resultType: 'validation-failure', failureReasonCode: 'x'.repeat(1000), receivingMxHostname: 'mx.example.com' },
    });
    const p = agg.unflushed()[0]!.policies[0]!;
    expect(p.policy.policyString).toEqual(['version: STSv1', 'mode: enforce']); // 27 chars; the next line would pass 40
    expect(p.failures[0]).toEqual({ resultType: 'validation-failure', failureReasonCode: 'xxxxxxxxxx', count: 1 });
  });

  it('a failed store write keeps the counts for the next flush', async () => {
    const inner = new MemoryTlsRptStore();
    let failNext = true;
    const flaky: TlsRptStore = {
      merge: async (delta, limits) => {
        if (failNext) {
          failNext = false;
          throw new Error('disk full');
        }
        return inner.merge(delta, limits);
      },
      list: () => inner.list(),
      get: (k) => inner.get(k),
      setDelivery: (k, s) => inner.setDelivery(k, s),
      delete: (k) => inner.delete(k),
    };
    const errors: string[] = [];
    const { agg } = aggregator({ store: flaky, onStoreError: (e) => errors.push(e.code) });
    agg.record({ policy: stsPolicy(), success: true });
    await expect(agg.flush()).rejects.toMatchObject({ code: 'TLSRPT_STORE_FAILED' });
    agg.record({ policy: stsPolicy(), success: true });
    await agg.flush();
    expect((await collect(inner)).get(`${DAY} example.com`)?.policies[0]?.successCount).toBe(2);
    expect(errors).toEqual(['TLSRPT_STORE_FAILED']);
    expect(agg.stats().storeErrors).toBe(1);
  });

  it('flushes in the background after flushDelayMs and on close; records after close are dropped', async () => {
    const store = new MemoryTlsRptStore();
    const agg = new TlsRptAggregator({ store, now: () => DAY_START + HOUR, flushDelayMs: 10 });
    agg.record({ policy: stsPolicy(), success: true });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await store.list()).toHaveLength(1);
    agg.record({ policy: stsPolicy('example.org'), success: true });
    await agg.close();
    expect(await store.list()).toHaveLength(2);
    agg.record({ policy: stsPolicy(), success: true });
    expect(agg.stats().dropped.closed).toBe(1);
  });
});

describe('mergeDomainDayCounts', () => {
  it('adds counts of the same policy and detail, keeps distinct ones apart', () => {
    const limits = resolveLimits();
    const a: DomainDayCounts = { day: DAY, policyDomain: 'example.com', policies: [{ policy: stsPolicy(), successCount: 2, failureCount: 1, failures: [{ resultType: 'certificate-expired', count: 1 }] }] };
    const b: DomainDayCounts = {
      day: DAY,
      policyDomain: 'example.com',
      policies: [
        { policy: stsPolicy(), successCount: 3, failureCount: 2, failures: [{ resultType: 'certificate-expired', count: 1 }, { resultType: 'starttls-not-supported', count: 1 }] },
        { policy: { type: 'no-policy-found', domain: 'example.com' }, successCount: 1, failureCount: 0, failures: [] },
      ],
    };
    expect(mergeDomainDayCounts(a, b, limits).policies).toEqual([
      { policy: stsPolicy(), successCount: 5, failureCount: 3, failures: [{ resultType: 'certificate-expired', count: 2 }, { resultType: 'starttls-not-supported', count: 1 }] },
      { policy: { type: 'no-policy-found', domain: 'example.com' }, successCount: 1, failureCount: 0, failures: [] },
    ]);
    expect(() => resolveLimits({ maxDomainsPerDay: 0 })).toThrow(expect.objectContaining({ code: 'MTASTS_INVALID_OPTIONS' }));
  });
});
