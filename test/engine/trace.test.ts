/**
 * The discovery observer (`getPolicy(domain, { trace })`): what the engine reports of its own steps — the
 * `_mta-sts` TXT answer (RFC 8461 §3.1), the policy fetch (§3.3: URL, HTTP status, content type, bytes, time,
 * error) and the cache decision (§3.3, §5.1) — against the real loopback world.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMtaSts, type DiscoveryTraceStep, type MtaStsOptions } from '../../src/engine.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';

let world: TestWorld;
beforeAll(async () => {
  world = await createTestWorld();
});
afterAll(async () => {
  await world?.close();
});

function engine(extra: Partial<MtaStsOptions> = {}) {
  return createMtaSts({ ...world.mtaStsOptions(), fetchTimeoutMs: 3000, dnsTimeoutMs: 2000, ...extra });
}

async function traced(mta: ReturnType<typeof engine>, domain: string): Promise<DiscoveryTraceStep[]> {
  const steps: DiscoveryTraceStep[] = [];
  await mta.getPolicy(domain, { trace: (s) => steps.push(s) });
  return steps;
}

describe('getPolicy trace', () => {
  it('reports the TXT records seen, the fetch (status, content type, bytes, time) and the cache decision', async () => {
    world.publishPolicy('trace-ok.test', { id: 't1', mode: 'enforce', mx: ['mx.trace-ok.test'], maxAge: 86400, host: { kind: 'ok', contentType: 'text/plain; charset=utf-8' } });
    world.dns.addRecords('_mta-sts.trace-ok.test', { txt: ['unrelated=1'] });
    const mta = engine();
    const steps = await traced(mta, 'trace-ok.test');
    const [txt, fetch, cache] = steps;
    expect(steps.map((s) => s.step)).toEqual(['txt', 'fetch', 'cache']);
    expect(txt).toMatchObject({ step: 'txt', name: '_mta-sts.trace-ok.test', outcome: 'record', id: 't1' });
    expect(txt?.step === 'txt' && [...txt.records].sort()).toEqual(['unrelated=1', 'v=STSv1; id=t1;']);
    const body = (await mta.getPolicy('trace-ok.test')).policy!.text;
    expect(fetch).toMatchObject({ step: 'fetch', ok: true, url: `https://mta-sts.trace-ok.test:${world.httpsPort}/.well-known/mta-sts.txt`, status: 200, contentType: 'text/plain; charset=utf-8', bytes: Buffer.byteLength(body) });
    expect(fetch?.step === 'fetch' && fetch.elapsedMs).toBeGreaterThanOrEqual(0);
    expect(cache).toMatchObject({ step: 'cache', decision: 'fetched', source: 'fetched', id: 't1' });
    // Again: the TXT id is unchanged, the cached policy is current (§3.3); no fetch.
    const again = await traced(mta, 'trace-ok.test');
    expect(again.map((s) => (s.step === 'cache' ? `cache:${s.decision}` : s.step))).toEqual(['txt', 'cache:cached']);
    await mta.close();
  });

  it('a failed fetch: the HTTP status, or the content type and bytes of a policy that does not parse, and the error code', async () => {
    world.publishPolicy('trace-404.test', { id: 'a', mode: 'enforce', mx: ['mx.trace-404.test'], host: { kind: 'status', status: 404 } });
    world.publishPolicy('trace-bad.test', { id: 'b', mode: 'enforce', mx: [], body: 'version: STSv1\nmode: sometimes\n' });
    world.publishPolicy('trace-none.test', { id: 'c', mode: 'enforce', mx: [], txt: ['v=STSv1; id=two;', 'v=STSv1; id=three;'] });
    const mta = engine();
    const notFound = await traced(mta, 'trace-404.test');
    expect(notFound.find((s) => s.step === 'fetch')).toMatchObject({ ok: false, status: 404, errorCode: 'MTASTS_HTTP_STATUS' });
    expect(notFound.at(-1)).toMatchObject({ step: 'cache', decision: 'fallback', source: 'fetched', id: 'a' });
    const bad = await traced(mta, 'trace-bad.test');
    expect(bad.find((s) => s.step === 'fetch')).toMatchObject({ ok: false, status: 200, contentType: 'text/plain', bytes: Buffer.byteLength('version: STSv1\nmode: sometimes\n'), errorCode: 'MTASTS_POLICY_INVALID' });
    const multiple = await traced(mta, 'trace-none.test');
    expect(multiple.map((s) => s.step)).toEqual(['txt', 'cache']);
    expect(multiple[0]).toMatchObject({ outcome: 'invalid', records: expect.arrayContaining(['v=STSv1; id=two;', 'v=STSv1; id=three;']), error: { code: 'MTASTS_TXT_MULTIPLE' } });
    await mta.close();
  });

  it('callers joining a discovery in flight observe it too; a throwing observer changes nothing', async () => {
    world.publishPolicy('trace-join.test', { id: 'j', mode: 'testing', mx: ['mx.trace-join.test'] });
    const mta = engine();
    const a: string[] = [];
    const b: string[] = [];
    const [ra, rb, rc] = await Promise.all([
      mta.getPolicy('trace-join.test', { trace: (s) => a.push(s.step) }),
      mta.getPolicy('trace-join.test', { trace: (s) => b.push(s.step) }),
      mta.getPolicy('trace-join.test', {
        trace: () => {
          throw new Error('observer bug');
        },
      }),
    ]);
    expect(a).toEqual(['txt', 'fetch', 'cache']);
    expect(b).toEqual(['txt', 'fetch', 'cache']);
    expect([ra.status, rb.status, rc.status]).toEqual(['policy', 'policy', 'policy']);
    expect(world.httpsRequests.filter((r) => r.hostname === 'mta-sts.trace-join.test')).toHaveLength(1);
    await mta.close();
  });
});
