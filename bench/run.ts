/**
 * Benchmarks of the hot paths. Run: `npm run bench` (figures and the machine they came from: bench/README.md).
 *
 * Pure functions are timed in tight loops; the engine is timed against the loopback test world (a real DNS server
 * and HTTPS policy host), so the figures include a real TXT query per lookup where the engine makes one.
 */
import { X509Certificate } from 'node:crypto';
import { createMtaSts } from '../src/engine.js';
import { parsePolicy } from '../src/policy/policy-file.js';
import { parseStsTxtRecord } from '../src/policy/txt-record.js';
import { mxMatchesPolicy } from '../src/mx/match.js';
import { certificateMatchesHost } from '../src/tls/host-identity.js';
import { createTestWorld } from '../src/testing/index.js';

interface Row {
  name: string;
  ops: number;
  perOpUs: number;
  note?: string;
}

const rows: Row[] = [];

function loop(name: string, iterations: number, fn: (i: number) => unknown, note?: string): void {
  for (let i = 0; i < Math.min(1000, iterations); i++) fn(i); // warm-up
  const started = process.hrtime.bigint();
  let sink = 0;
  for (let i = 0; i < iterations; i++) if (fn(i)) sink++;
  const ns = Number(process.hrtime.bigint() - started);
  if (sink < 0) console.log(sink);
  rows.push({ name, ops: Math.round((iterations / ns) * 1e9), perOpUs: ns / iterations / 1000, ...(note ? { note } : {}) });
}

async function loopAsync(name: string, iterations: number, concurrency: number, fn: () => Promise<unknown>, note?: string): Promise<number[]> {
  for (let i = 0; i < 50; i++) await fn();
  const latencies: number[] = [];
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < iterations) {
        const t = process.hrtime.bigint();
        await fn();
        latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
      }
    }),
  );
  const ns = Number(process.hrtime.bigint() - started);
  latencies.sort((a, b) => a - b);
  const p = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!.toFixed(3);
  rows.push({ name, ops: Math.round((iterations / ns) * 1e9), perOpUs: ns / iterations / 1000, note: `${note ? `${note}; ` : ''}p50 ${p(0.5)} ms, p99 ${p(0.99)} ms, concurrency ${concurrency}` });
  return latencies;
}

const POLICY = 'version: STSv1\nmode: enforce\nmx: mx1.example.com\nmx: mx2.example.com\nmx: *.backup.example.net\nmax_age: 604800\n';
const PATTERNS = ['mx1.example.com', 'mx2.example.com', '*.backup.example.net'];

loop('parseStsTxtRecord', 200_000, () => parseStsTxtRecord('v=STSv1; id=20240101T000000'));
loop('parsePolicy (3 mx)', 100_000, () => parsePolicy(POLICY));
loop('mxMatchesPolicy (wildcard hit)', 2_000_000, () => mxMatchesPolicy('b7.backup.example.net', PATTERNS));
loop('mxMatchesPolicy (miss)', 2_000_000, () => mxMatchesPolicy('evil.attacker.example', PATTERNS));

const world = await createTestWorld();
try {
  const { certPem } = world.ca.issue({ names: ['mx1.example.com', '*.backup.example.net'] });
  const x509 = new X509Certificate(certPem);
  loop('certificateMatchesHost (parsed cert)', 200_000, () => certificateMatchesHost(x509, 'b7.backup.example.net'));

  world.publishPolicy('bench.test', { id: 'b1', mode: 'enforce', mx: ['mx1.bench.test', '*.bench.test'], maxAge: 86400 });
  const perLookup = createMtaSts({ ...world.mtaStsOptions(), refreshAfterFraction: 0 });
  await perLookup.getPolicy('bench.test');
  await loopAsync('getPolicy, cached, TXT re-checked every lookup', 5_000, 1, () => perLookup.getPolicy('bench.test'), 'one loopback DNS query each');
  await loopAsync('getPolicy, cached, TXT re-checked every lookup', 20_000, 64, () => perLookup.getPolicy('bench.test'), 'single flight shares queries');
  const interval = createMtaSts({ ...world.mtaStsOptions(), refreshAfterFraction: 0, txtCheckIntervalMs: 60_000 });
  await interval.getPolicy('bench.test');
  await loopAsync('getPolicy, cached, txtCheckIntervalMs 60 s', 200_000, 1, () => interval.getPolicy('bench.test'), 'no I/O');
  let steps = 0;
  const traceOptions = { trace: () => void steps++ };
  await loopAsync('getPolicy, same, with a trace observer', 200_000, 1, () => interval.getPolicy('bench.test', traceOptions), 'one cache step per call');
  if (steps === 0) throw new Error('the trace observer saw nothing');
  await loopAsync('plan (MX given), cached, txtCheckIntervalMs 60 s', 100_000, 1, () => interval.plan('bench.test', ['mx1.bench.test', 'mx2.bench.test']), 'no I/O');
  await loopAsync('getPolicy refresh: TXT + HTTPS fetch, warm engine', 1_000, 1, () => perLookup.getPolicy('bench.test', { refresh: true }), 'new TLS connection per fetch, by design');
  await loopAsync('getPolicy, first discovery on a new engine', 200, 1, async () => {
    const fresh = createMtaSts({ ...world.mtaStsOptions(), refreshAfterFraction: 0 });
    await fresh.getPolicy('bench.test');
    await fresh.close();
  }, 'engine creation, one-time TLS context and cache allocation, DNS, TLS handshake, fetch');
  await perLookup.close();
  await interval.close();
} finally {
  await world.close();
}

const width = Math.max(...rows.map((r) => r.name.length));
console.log(`node ${process.version}, ${process.platform}/${process.arch}`);
for (const r of rows) {
  console.log(`${r.name.padEnd(width)}  ${r.ops.toLocaleString('en-US').padStart(12)} ops/s  ${r.perOpUs.toFixed(3).padStart(10)} µs/op${r.note ? `  (${r.note})` : ''}`);
}
