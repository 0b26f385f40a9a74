/**
 * The no-I/O paths of the engine (argv[2]: JSON parameters): cached lookups per second with `txtCheckIntervalMs`
 * set, and the heap cost of one cached policy (3 mx lines) with `policies` policies in the default store. Run with
 * `--expose-gc`.
 */
import { createMtaSts } from '../../src/index.js';
import { parsePolicy } from '../../src/policy/policy-file.js';
import { params, report, type ChildParams } from './common.js';

interface CachedParams extends ChildParams {
  domain: string;
  lookups: number;
  policies: number;
}

const p = params<CachedParams>();
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});

// Memory first, in a clean heap: `policies` entries as the engine stores them (each its own text, parsed), in the engine's default store.
const store = createMtaSts({ dnsServers: [p.dnsServer] }).store;
await store.set('warm.example.org', { domain: 'warm.example.org', id: 'w', policy: parsePolicy('version: STSv1\r\nmode: none\r\nmax_age: 60\r\n'), text: '', fetchedAt: 0, expiresAt: 1 }); // the LRU is built on first write
gc();
gc();
const before = process.memoryUsage().heapUsed + process.memoryUsage().external;
const now = Date.now();
for (let i = 0; i < p.policies; i++) {
  const domain = `m${i}.example.org`;
  const text = `version: STSv1\r\nmode: enforce\r\nmx: mx1.${domain}\r\nmx: mx2.${domain}\r\nmx: *.backup.${domain}\r\nmax_age: 604800\r\n`;
  await store.set(domain, { domain, id: `20260101T${String(i).padStart(6, '0')}`, policy: parsePolicy(text), text, fetchedAt: now, expiresAt: now + 604_800_000 });
}
gc();
gc();
const bytesPerPolicy = (process.memoryUsage().heapUsed + process.memoryUsage().external - before) / p.policies;
// The store must still be reachable when the heap is measured (a dead local would be collected with its entries).
if ((await store.get(`m${p.policies - 1}.example.org`)) === undefined) throw new Error('the store lost its entries');
// Cached lookups: the policy is fetched once, then every lookup is served from the cache without DNS.
const mta = createMtaSts({ dnsServers: [p.dnsServer], ca: [p.caPem], httpsPort: p.httpsPort, txtCheckIntervalMs: 60_000 });
const first = await mta.getPolicy(p.domain);
if (first.status !== 'policy') throw new Error(`no policy for ${p.domain}: ${first.status}`);
for (let i = 0; i < 10_000; i++) await mta.getPolicy(p.domain);
const t0 = performance.now();
for (let i = 0; i < p.lookups; i++) await mta.getPolicy(p.domain);
const lookupsPerS = (p.lookups / (performance.now() - t0)) * 1000;
const plan0 = performance.now();
for (let i = 0; i < p.lookups / 4; i++) await mta.plan(p.domain, ['mx1.cached.test', 'mx2.cached.test']);
const plansPerS = (p.lookups / 4 / (performance.now() - plan0)) * 1000;
await mta.close();

report({ lookupsPerS, plansPerS, bytesPerPolicy, policies: p.policies });
process.exit(0);
