/**
 * The engine against the real loopback world: a DNS server, HTTPS policy hosts with a test CA, SMTP MX hosts.
 * Each test uses its own domains, so tests share one world.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMtaSts, type MtaStsOptions } from '../src/engine.js';
import { createTestWorld, type TestWorld } from '../src/testing/index.js';

let world: TestWorld;

beforeAll(async () => {
  world = await createTestWorld();
});
afterAll(async () => {
  await world?.close();
});

/** A fake-able clock: starts at the real time, moves only when told. */
function clock() {
  let t = Date.now();
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

function engine(extra: Partial<MtaStsOptions> = {}) {
  return createMtaSts({ ...world.mtaStsOptions(), fetchTimeoutMs: 3000, dnsTimeoutMs: 2000, ...extra });
}

function fetchesOf(domain: string): number {
  return world.httpsRequests.filter((r) => r.hostname === `mta-sts.${domain}`).length;
}

function txtQueriesOf(domain: string): number {
  return world.dns.queries.filter((q) => q.name.toLowerCase() === `_mta-sts.${domain}` && q.type === 'TXT').length;
}

const ENFORCE = (mx: string[], id = 'id1', maxAge = 86400) => ({ id, mode: 'enforce' as const, mx, maxAge });

describe('RFC 8461 §3.1 discovery (TXT)', () => {
  it('§3.1 queries TXT at _mta-sts.<domain> and fetches the policy', async () => {
    world.publishPolicy('a1.test', ENFORCE(['mx.a1.test']));
    const mta = engine();
    const r = await mta.getPolicy('a1.test');
    expect(r.status).toBe('policy');
    expect(r.source).toBe('fetched');
    expect(r.policy).toMatchObject({ version: 'STSv1', mode: 'enforce', mx: ['mx.a1.test'], maxAge: 86400, id: 'id1' });
    expect(r.policy?.text).toContain('mode: enforce');
    expect(txtQueriesOf('a1.test')).toBeGreaterThan(0);
    await mta.close();
  });

  it('§3.1 follows a CNAME at _mta-sts.<domain>', async () => {
    world.publishPolicy('cname-target.test', ENFORCE(['mx.cname.test'], 'cn1'));
    world.publishPolicy('cname.test', { ...ENFORCE(['mx.cname.test'], 'cn1'), txt: null });
    world.dns.setRecords('_mta-sts.cname.test', { cname: '_mta-sts.cname-target.test' });
    const mta = engine();
    const r = await mta.getPolicy('cname.test');
    expect(r.status).toBe('policy');
    expect(r.policy?.id).toBe('cn1');
    await mta.close();
  });

  it('§3.1 two STS records: no usable policy (invalid, delivered as without MTA-STS)', async () => {
    world.publishPolicy('a3.test', { ...ENFORCE(['mx.a3.test']), txt: ['v=STSv1; id=one', 'v=STSv1; id=two'] });
    const mta = engine();
    const r = await mta.getPolicy('a3.test');
    expect(r.status).toBe('invalid');
    expect(r.error?.code).toBe('MTASTS_TXT_MULTIPLE');
    expect(fetchesOf('a3.test')).toBe(0);
    const plan = await mta.plan('a3.test', ['mx.a3.test']);
    expect(plan.mode).toBe('none');
    await mta.close();
  });

  it('§3.1 a TXT record with an invalid id is invalid', async () => {
    world.publishPolicy('a5.test', { ...ENFORCE(['mx.a5.test']), txt: 'v=STSv1; id=has-dash' });
    const mta = engine();
    const r = await mta.getPolicy('a5.test');
    expect(r.status).toBe('invalid');
    expect(r.error?.code).toBe('MTASTS_TXT_INVALID');
    await mta.close();
  });

  it('§3.3 NXDOMAIN means no policy published', async () => {
    const mta = engine();
    const r = await mta.getPolicy('nothing-here.test');
    expect(r.status).toBe('none');
    expect(r.error).toBeUndefined();
    await mta.close();
  });

  it('§3.3 SERVFAIL is a temporary failure, never "no policy"', async () => {
    world.publishPolicy('servfail.test', ENFORCE(['mx.servfail.test']));
    world.dns.fail('_mta-sts.servfail.test', 'servfail');
    const mta = engine();
    const r = await mta.getPolicy('servfail.test');
    expect(r.status).toBe('temp-error');
    expect(r.error?.code).toBe('MTASTS_DNS_TEMPORARY');
    expect(r.error?.temporary).toBe(true);
    world.dns.fail('_mta-sts.servfail.test', null);
    await mta.close();
  });

  it('§3.3 a DNS timeout is a temporary failure within the DNS deadline', async () => {
    world.dns.fail('_mta-sts.dnstimeout.test', 'timeout');
    const mta = engine({ dnsTimeoutMs: 500 });
    const started = Date.now();
    const r = await mta.getPolicy('dnstimeout.test');
    expect(r.status).toBe('temp-error');
    expect(r.error?.code).toBe('MTASTS_DNS_TEMPORARY');
    expect(Date.now() - started).toBeLessThan(5000);
    await mta.close();
  });

  it('§3.4 never looks up a parent domain policy', async () => {
    world.publishPolicy('parent.test', ENFORCE(['mx.parent.test']));
    const mta = engine();
    world.dns.clearQueryLog();
    const r = await mta.getPolicy('sub.parent.test');
    expect(r.status).toBe('none');
    expect(world.dns.queries.some((q) => q.name.toLowerCase() === '_mta-sts.parent.test')).toBe(false);
    await mta.close();
  });
});

describe('RFC 8461 §3.3 policy retrieval', () => {
  const cases: Array<[string, Parameters<TestWorld['setPolicyHost']>[1], string, string]> = [
    ['§3.3 a policy host certificate for the wrong name is rejected', { kind: 'cert', cert: 'wrong-name' }, 'fetch-error', 'MTASTS_WEBPKI_INVALID'],
    ['§3.3 an expired policy host certificate is rejected', { kind: 'cert', cert: 'expired' }, 'fetch-error', 'MTASTS_WEBPKI_INVALID'],
    ['§3.3 a self-signed policy host certificate is rejected', { kind: 'cert', cert: 'self-signed' }, 'fetch-error', 'MTASTS_WEBPKI_INVALID'],
    ['§3.3 HTTP 404 is a failure', { kind: 'status', status: 404 }, 'fetch-error', 'MTASTS_HTTP_STATUS'],
    ['§3.3 HTTP 500 is a failure', { kind: 'status', status: 500 }, 'fetch-error', 'MTASTS_HTTP_STATUS'],
    ['§3.3 HTTP 204 is a failure (only 200 is success)', { kind: 'status', status: 204 }, 'fetch-error', 'MTASTS_HTTP_STATUS'],
    ['§3.3 redirects are not followed', { kind: 'redirect' }, 'fetch-error', 'MTASTS_HTTP_REDIRECT'],
    ['§3.2 a policy not served as text/plain is rejected', { kind: 'wrong-content-type' }, 'invalid', 'MTASTS_CONTENT_TYPE'],
    ['§3.3 a body over 64 KiB is rejected', { kind: 'oversize' }, 'invalid', 'MTASTS_BODY_TOO_LARGE'],
  ];
  let n = 0;
  for (const [name, behaviour, status, code] of cases) {
    const domain = `fetch${n++}.test`;
    it(name, async () => {
      world.publishPolicy(domain, { ...ENFORCE([`mx.${domain}`]), host: behaviour });
      const mta = engine();
      const r = await mta.getPolicy(domain);
      expect(r.status).toBe(status);
      expect(r.error?.code).toBe(code);
      expect(r.policy).toBeUndefined();
      await mta.close();
    });
  }

  it('§3.3 the redirect target is never requested', async () => {
    world.publishPolicy('redirect-target.test', ENFORCE(['mx.redirect-target.test']));
    world.publishPolicy('redir.test', { ...ENFORCE(['mx.redir.test']), host: { kind: 'redirect', location: `https://mta-sts.redirect-target.test:${world.httpsPort}/.well-known/mta-sts.txt` } });
    const before = fetchesOf('redirect-target.test');
    const mta = engine();
    const r = await mta.getPolicy('redir.test');
    expect(r.error?.code).toBe('MTASTS_HTTP_REDIRECT');
    expect(fetchesOf('redirect-target.test')).toBe(before);
    await mta.close();
  });

  it('§3.3 a trickling server does not hold the sender past the fetch deadline', async () => {
    world.publishPolicy('trickle.test', { ...ENFORCE(['mx.trickle.test']), host: { kind: 'trickle', intervalMs: 200 } });
    const mta = engine({ fetchTimeoutMs: 1000 });
    const started = Date.now();
    const r = await mta.getPolicy('trickle.test');
    const elapsed = Date.now() - started;
    expect(r.error?.code).toBe('MTASTS_FETCH_TIMEOUT');
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(4000);
    await mta.close();
  });

  it('§3.3 a server that never answers is bounded by the fetch deadline', async () => {
    world.publishPolicy('hang.test', { ...ENFORCE(['mx.hang.test']), host: { kind: 'hang' } });
    const mta = engine({ fetchTimeoutMs: 800 });
    const started = Date.now();
    const r = await mta.getPolicy('hang.test');
    expect(r.error?.code).toBe('MTASTS_FETCH_TIMEOUT');
    expect(Date.now() - started).toBeLessThan(4000);
    await mta.close();
  });

  it('§3.2 text/plain with parameters is accepted', async () => {
    world.publishPolicy('charset.test', { ...ENFORCE(['mx.charset.test']), host: { kind: 'ok', contentType: 'text/plain; charset=utf-8' } });
    const mta = engine();
    expect((await mta.getPolicy('charset.test')).status).toBe('policy');
    await mta.close();
  });

  it('§3.3 a policy that does not parse is treated like a fetch failure', async () => {
    world.publishPolicy('badpolicy.test', { ...ENFORCE(['mx.badpolicy.test']), body: 'version: STSv1\nmode: enforce\nmax_age: 86400\n' });
    const mta = engine();
    const r = await mta.getPolicy('badpolicy.test');
    expect(r.status).toBe('invalid');
    expect(r.error?.code).toBe('MTASTS_POLICY_INVALID');
    expect(r.error?.resultType).toBe('sts-policy-invalid');
    await mta.close();
  });

  it('§3.3 HTTP caching headers are ignored: max_age governs', async () => {
    const body = 'version: STSv1\nmode: enforce\nmx: mx.cachehdr.test\nmax_age: 86400\n';
    world.publishPolicy('cachehdr.test', ENFORCE(['mx.cachehdr.test'], 'c1'));
    world.addHttpsHost('mta-sts.cachehdr.test', {
      handler: (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-store, max-age=0', expires: 'Thu, 01 Jan 1970 00:00:00 GMT' });
        res.end(body);
      },
    });
    const c = clock();
    const mta = engine({ now: c.now });
    expect((await mta.getPolicy('cachehdr.test')).source).toBe('fetched');
    const before = fetchesOf('cachehdr.test');
    c.advance(3_600_000);
    const again = await mta.getPolicy('cachehdr.test');
    expect(again.source).toBe('cache');
    expect(fetchesOf('cachehdr.test')).toBe(before);
    await mta.close();
  });

  it('§3.3 a failed fetch is not retried for five minutes', async () => {
    world.publishPolicy('backoff.test', { ...ENFORCE(['mx.backoff.test']), host: { kind: 'status', status: 503 } });
    const c = clock();
    const mta = engine({ now: c.now });
    expect((await mta.getPolicy('backoff.test')).error?.code).toBe('MTASTS_HTTP_STATUS');
    const after1 = fetchesOf('backoff.test');
    c.advance(60_000);
    const second = await mta.getPolicy('backoff.test');
    expect(second.error?.code).toBe('MTASTS_FETCH_BACKOFF');
    expect(second.status).toBe('fetch-error');
    expect(fetchesOf('backoff.test')).toBe(after1);
    world.setPolicyHost('backoff.test', { kind: 'ok' });
    c.advance(300_000);
    const third = await mta.getPolicy('backoff.test');
    expect(third.status).toBe('policy');
    expect(fetchesOf('backoff.test')).toBe(after1 + 1);
    await mta.close();
  });
});

describe('RFC 8461 §3.3 / §5.1 caching and refresh', () => {
  it('§3.3 a valid policy is cached until max_age expires', async () => {
    world.publishPolicy('c1.test', ENFORCE(['mx.c1.test'], 'v1', 3600));
    const c = clock();
    const mta = engine({ now: c.now });
    expect((await mta.getPolicy('c1.test')).source).toBe('fetched');
    const fetched = fetchesOf('c1.test');
    c.advance(3_599_000);
    expect((await mta.getPolicy('c1.test')).source).toBe('cache');
    expect(fetchesOf('c1.test')).toBe(fetched);
    c.advance(2_000);
    const expired = await mta.getPolicy('c1.test');
    expect(expired.source).toBe('fetched');
    expect(fetchesOf('c1.test')).toBe(fetched + 1);
    await mta.close();
  });

  it('§3.3 a changed TXT id triggers a refetch before the next delivery', async () => {
    world.publishPolicy('c2.test', { id: 'old1', mode: 'testing', mx: ['mx.c2.test'], maxAge: 86400 });
    const mta = engine();
    expect((await mta.getPolicy('c2.test')).policy?.mode).toBe('testing');
    world.publishPolicy('c2.test', { id: 'new2', mode: 'enforce', mx: ['mx.c2.test'], maxAge: 86400 });
    const r = await mta.getPolicy('c2.test');
    expect(r.source).toBe('fetched');
    expect(r.policy).toMatchObject({ id: 'new2', mode: 'enforce' });
    await mta.close();
  });

  it('§3.3 if the refetch for a new id fails, the cached policy is kept', async () => {
    world.publishPolicy('c2b.test', ENFORCE(['mx.c2b.test'], 'first'));
    const mta = engine();
    await mta.getPolicy('c2b.test');
    world.publishPolicy('c2b.test', { ...ENFORCE(['mx.c2b.test'], 'second'), host: { kind: 'status', status: 500 } });
    const r = await mta.getPolicy('c2b.test');
    expect(r.status).toBe('policy');
    expect(r.source).toBe('stale-cache');
    expect(r.policy?.id).toBe('first');
    expect(r.error?.code).toBe('MTASTS_HTTP_STATUS');
    await mta.close();
  });

  const downgrades: Array<[string, () => void]> = [
    ['TXT NXDOMAIN', () => world.dns.removeName('_mta-sts.c3.test')],
    ['TXT SERVFAIL', () => world.dns.fail('_mta-sts.c3.test', 'servfail')],
    ['an invalid TXT record', () => world.dns.setRecords('_mta-sts.c3.test', { txt: ['v=STSv1; id=!!!'] })],
    ['two TXT records', () => world.dns.setRecords('_mta-sts.c3.test', { txt: ['v=STSv1; id=x1', 'v=STSv1; id=x2'] })],
    ['an HTTPS failure after an id change', () => world.publishPolicy('c3.test', { ...ENFORCE(['mx.c3.test'], 'changed'), host: { kind: 'cert', cert: 'self-signed' } })],
  ];
  for (const [what, attack] of downgrades) {
    it(`§3.3 keeps an unexpired cached policy when discovery fails: ${what}`, async () => {
      world.dns.fail('_mta-sts.c3.test', null);
      world.publishPolicy('c3.test', ENFORCE(['mx.c3.test'], 'orig'));
      const mta = engine();
      expect((await mta.getPolicy('c3.test')).status).toBe('policy');
      attack();
      const r = await mta.getPolicy('c3.test');
      expect(r.status).toBe('policy');
      expect(r.source).toBe('stale-cache');
      expect(r.policy).toMatchObject({ mode: 'enforce', id: 'orig' });
      const plan = await mta.plan('c3.test', ['evil.attacker.test', 'mx.c3.test']);
      expect(plan.mode).toBe('enforce');
      expect(plan.allowed.map((c) => c.host)).toEqual(['mx.c3.test']);
      world.dns.fail('_mta-sts.c3.test', null);
      await mta.close();
    });
  }

  it('§3.3 an expired cached policy with failed discovery means no policy', async () => {
    world.publishPolicy('c4.test', ENFORCE(['mx.c4.test'], 'e1', 60));
    const c = clock();
    const mta = engine({ now: c.now });
    await mta.getPolicy('c4.test');
    world.dns.removeName('_mta-sts.c4.test');
    c.advance(61_000);
    const r = await mta.getPolicy('c4.test');
    expect(r.status).toBe('none');
    expect(r.policy).toBeUndefined();
    await mta.close();
  });

  it('§10.2 a mode none policy replaces a cached enforce policy', async () => {
    world.publishPolicy('c6.test', ENFORCE(['mx.c6.test'], 'on'));
    const mta = engine();
    await mta.getPolicy('c6.test');
    world.publishPolicy('c6.test', { id: 'off', mode: 'none', mx: [], maxAge: 86400 });
    const r = await mta.getPolicy('c6.test');
    expect(r.policy?.mode).toBe('none');
    const plan = await mta.plan('c6.test', ['anything.example.test']);
    expect(plan.mode).toBe('none');
    expect(plan.allowed).toHaveLength(1);
    await mta.close();
  });

  it('§10.2 a max_age 0 policy replaces the cached policy and is not cached', async () => {
    world.publishPolicy('c6b.test', ENFORCE(['mx.c6b.test'], 'on'));
    const mta = engine();
    await mta.getPolicy('c6b.test');
    world.publishPolicy('c6b.test', { id: 'zero', mode: 'testing', mx: ['mx.c6b.test'], maxAge: 0 });
    expect((await mta.getPolicy('c6b.test')).policy).toMatchObject({ mode: 'testing', maxAge: 0 });
    world.dns.removeName('_mta-sts.c6b.test');
    expect((await mta.getPolicy('c6b.test')).status).toBe('none');
    await mta.close();
  });

  it('concurrent lookups share one discovery (one TXT query, one fetch)', async () => {
    world.publishPolicy('c7.test', ENFORCE(['mx.c7.test']));
    const mta = engine();
    world.dns.clearQueryLog();
    const results = await Promise.all(Array.from({ length: 25 }, () => mta.getPolicy('c7.test')));
    expect(results.every((r) => r.status === 'policy')).toBe(true);
    expect(txtQueriesOf('c7.test')).toBe(1);
    expect(fetchesOf('c7.test')).toBe(1);
    await mta.close();
  });

  it('§5.1 refreshAfterFraction: a lookup of an aging policy refetches it in the background', async () => {
    world.publishPolicy('c5.test', ENFORCE(['mx.c5.test'], 'r1', 7200));
    const c = clock();
    const mta = engine({ now: c.now, refreshAfterFraction: 0.5 });
    await mta.getPolicy('c5.test');
    const fetched = fetchesOf('c5.test');
    c.advance(3_700_000); // past half of max_age
    const r = await mta.getPolicy('c5.test');
    expect(r.source).toBe('cache');
    await expect.poll(() => fetchesOf('c5.test'), { timeout: 3000 }).toBe(fetched + 1);
    await expect.poll(async () => (await mta.store.get('c5.test'))?.fetchedAt).toBe(c.now());
    await mta.close();
  });

  it('§5.1 the refresh timer refetches cached policies before they expire, off the delivery path', async () => {
    world.publishPolicy('c5t.test', ENFORCE(['mx.c5t.test'], 'r1', 7200));
    const c = clock();
    const mta = engine({ now: c.now, refreshIntervalMs: 100 });
    await mta.getPolicy('c5t.test');
    const fetched = fetchesOf('c5t.test');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(fetchesOf('c5t.test')).toBe(fetched); // not due yet
    c.advance(3_700_000); // past half of max_age
    await expect.poll(() => fetchesOf('c5t.test'), { timeout: 3000 }).toBe(fetched + 1);
    await expect.poll(async () => (await mta.store.get('c5t.test'))?.fetchedAt).toBe(c.now());
    await mta.close();
  });

  it('§5.1 refreshDue() refetches cached policies past the refresh threshold', async () => {
    world.publishPolicy('c5b.test', ENFORCE(['mx.c5b.test'], 'r1', 7200));
    const c = clock();
    const mta = engine({ now: c.now });
    await mta.getPolicy('c5b.test');
    expect(await mta.refreshDue()).toBe(0);
    c.advance(3_700_000);
    expect(await mta.refreshDue()).toBe(1);
    expect((await mta.store.get('c5b.test'))?.expiresAt).toBe(c.now() + 7_200_000);
    await mta.close();
  });
});

describe('input validation', () => {
  it('normalises case, trailing dot and IDN to A-labels', async () => {
    world.publishPolicy('xn--bcher-kva.test', ENFORCE(['mx.xn--bcher-kva.test']));
    const mta = engine();
    const r = await mta.getPolicy('BÜCHER.test.');
    expect(r.domain).toBe('xn--bcher-kva.test');
    expect(r.status).toBe('policy');
    await mta.close();
  });

  it('a malformed domain gets a typed error, not a lookup', async () => {
    const mta = engine();
    for (const bad of ['', 'exa mple.com', '-bad.test', '192.0.2.1', 'a..b', 'x'.repeat(300), '*.example.com']) {
      const r = await mta.getPolicy(bad);
      expect(r.status, bad).toBe('invalid');
      expect(r.error?.code, bad).toBe('MTASTS_INVALID_DOMAIN');
    }
    await expect(mta.plan('bad domain')).rejects.toMatchObject({ code: 'MTASTS_INVALID_DOMAIN' });
    await mta.close();
  });

  it('an aborted signal stops the wait with MTASTS_ABORTED', async () => {
    world.publishPolicy('abort.test', { ...ENFORCE(['mx.abort.test']), host: { kind: 'hang' } });
    const mta = engine({ fetchTimeoutMs: 2000 });
    const r = await mta.getPolicy('abort.test', { signal: AbortSignal.timeout(100) });
    expect(r.error?.code).toBe('MTASTS_ABORTED');
    await mta.close();
  });
});

describe('configuration', () => {
  it('an out-of-range or mistyped option is MTASTS_INVALID_OPTIONS at creation', () => {
    expect(() => createMtaSts({ fetchTimeoutMs: -1 })).toThrowError(expect.objectContaining({ code: 'MTASTS_INVALID_OPTIONS' }));
    expect(() => createMtaSts({ maxPolicyBytes: Number.NaN })).toThrowError(expect.objectContaining({ code: 'MTASTS_INVALID_OPTIONS' }));
    expect(() => createMtaSts({ httpsPort: 70_000 })).toThrowError(expect.objectContaining({ code: 'MTASTS_INVALID_OPTIONS' }));
    expect(() => createMtaSts({ resolver: {} as never })).toThrowError(expect.objectContaining({ code: 'MTASTS_INVALID_OPTIONS' }));
  });

  it('verifyTls with a malformed MX name is a validation failure, not a crash', async () => {
    const mta = engine();
    expect(mta.verifyTls(undefined as never, null)).toMatchObject({ ok: false, resultType: 'validation-failure' });
    expect(mta.verifyTls('bad host', null)).toMatchObject({ ok: false, resultType: 'validation-failure' });
    await mta.close();
  });
});
