/**
 * `npm run bench`: every implementation side by side, in one run, each in its own process, against one loopback
 * test world (a real DNS server, HTTPS policy hosts with their own certificates, SMTP MX hosts with STARTTLS).
 *
 * - Cold discovery of N domains (default 2000, each its own policy host and certificate), concurrency 64, by the
 *   baseline (`node:dns` TXT + an undici GET, no rules), mailauth and this library; several interleaved rounds,
 *   medians; policies/s, CPU ms per policy, peak RSS, ratios to the baseline.
 * - Cached lookups without I/O, and heap per cached policy with 100,000 policies.
 * - Delivery through the transport vs a plain Nodemailer SMTP transport to the same TLS MX (default and tuned).
 * - A burst of 1,000 concurrent sends to one cold domain, with the queries and GETs counted at the servers.
 *
 * `npm run bench -- --quick` runs a small version (CI: it only has to complete and print). Options:
 * `--domains=N`, `--rounds=N`, `--concurrency=N`. Figures and the machine they came from: bench/README.md.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { createTestWorld, type TestWorld } from '../src/testing/index.js';
import { runMicro } from './micro.js';
import { benchDomain } from './children/common.js';

const quick = process.argv.includes('--quick');
const option = (name: string, fallback: number): number => {
  const given = process.argv.find((a) => a.startsWith(`--${name}=`));
  const value = given ? Number(given.slice(name.length + 3)) : fallback;
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a positive integer`);
  return value;
};
const N = option('domains', quick ? 100 : 2000);
const ROUNDS = option('rounds', quick ? 2 : 3);
const CONCURRENCY = option('concurrency', 64);
/** `--only=cold` runs only the cold discovery; `--profile` writes CPU profiles of the cold children (`bench/.out/prof`). */
const only = process.argv.find((a) => a.startsWith('--only='))?.slice(7);
const profile = process.argv.includes('--profile');
/** `--semi-space=MB` runs the cold children with V8's `--max-semi-space-size` (the young generation's size drives peak RSS). */
/** `--before=DIR`: also run `DIR/src` (an earlier version of this library) as implementation `before`. */
const before = process.argv.find((a) => a.startsWith('--before='))?.slice(9);
const semiSpace = process.argv.find((a) => a.startsWith('--semi-space='))?.slice(13);
const DELIVERIES = quick ? 20 : 200;
const BURST = quick ? 200 : 1000;
const LOOKUPS = quick ? 100_000 : 1_000_000;
const POLICIES = quick ? 10_000 : 100_000;

const here = fileURLToPath(new URL('.', import.meta.url));
const out = `${here}.out/`;
mkdirSync(out, { recursive: true });

/** esbuild settings shared by every child bundle: ESM for Node 20, dependencies left to node_modules. */
const BUNDLE = { outExtension: { '.js': '.mjs' }, bundle: true, packages: 'external', platform: 'node', format: 'esm', target: 'node20', logLevel: 'error' } as const;

/** Bundles each child to plain JavaScript so children run without a TypeScript loader (nothing extra in their RSS). */
async function bundleChildren(): Promise<void> {
  if (before) {
    // The same children, built against another checkout's src/ (e.g. `git archive <commit> src | tar -x -C dir`).
    await build({
      ...BUNDLE,
      entryPoints: ['cold', 'burst'].map((name) => `${here}children/${name}.ts`),
      outdir: `${out}before/`,
      plugins: [
        {
          name: 'before-src',
          setup(b) {
            b.onResolve({ filter: /\/src\// }, (args) => ({ path: `${before}/src/${args.path.replace(/^.*?\/src\//, '').replace(/\.js$/, '.ts')}` }));
          },
        },
      ],
    });
  }
  await build({ ...BUNDLE, entryPoints: ['cold', 'cached', 'deliver', 'burst'].map((name) => `${here}children/${name}.ts`), outdir: out });
}

type ChildResult = Record<string, number | string | undefined>;

/** Runs a bundled child with its parameters; resolves with the JSON of its last stdout line. */
function runChild(name: string, params: Record<string, unknown>, nodeArgs: string[] = []): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, NODE_EXTRA_CA_CERTS: String(params.caFile) };
    const child = spawn(process.execPath, [...nodeArgs, `${out}${name}.mjs`, JSON.stringify(params)], { stdio: ['ignore', 'pipe', 'inherit'], env });
    let stdout = '';
    const killer = setTimeout(() => child.kill('SIGKILL'), 600_000);
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(killer);
      const last = stdout.trim().split('\n').at(-1) ?? '';
      if (code !== 0) return reject(new Error(`bench child ${name} exited with ${code}: ${last}`));
      try {
        resolve(JSON.parse(last) as ChildResult);
      } catch {
        reject(new Error(`bench child ${name} printed no result: ${stdout.slice(-500)}`));
      }
    });
  });
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
const rotate = <T>(list: readonly T[], by: number): T[] => list.map((_, i) => list[(i + by) % list.length]!);
const fmt = (n: number, digits = 2) => n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const policyGets = (world: TestWorld, host: string) => world.httpsRequests.filter((r) => r.hostname === host).length;

async function main(): Promise<void> {
  console.log(`node ${process.version}, ${process.platform}/${process.arch}, ${os.availableParallelism()} CPUs (${os.cpus()[0]?.model.trim() ?? '?'})${quick ? ', --quick' : ''}`);
  await bundleChildren();
  const world = await createTestWorld();
  try {
    const micro = runMicro(world.ca, quick ? 0.1 : 1);
    for (const r of micro) console.log(`${r.name.padEnd(38)} ${fmt(r.opsPerS, 0).padStart(12)} ops/s ${r.perOpUs.toFixed(3).padStart(8)} µs/op`);

    const setup0 = performance.now();
    for (let i = 0; i < N; i++) {
      const domain = benchDomain(i);
      world.publishPolicy(domain, { id: `b${i}`, mode: 'enforce', mx: [`mx1.${domain}`, `mx2.${domain}`, `*.backup.${domain}`], maxAge: 604800 });
      world.ca.certFor(`mta-sts.${domain}`); // its own certificate (one shared test key), issued before any round
    }
    const caFile = `${out}ca.pem`;
    writeFileSync(caFile, world.ca.rootPem);
    const base = { dnsServer: world.dns.servers[0]!, httpsPort: world.httpsPort, smtpPort: world.smtpPort, caFile };
    console.log(`world: ${N} policy hosts with their own certificates in ${fmt((performance.now() - setup0) / 1000, 1)} s`);

    // Cold discovery. A first unmeasured pass makes the server side (per-host TLS contexts) warm for everyone.
    const cold = { ...base, domains: N, concurrency: CONCURRENCY };
    if (!process.argv.includes('--no-warmup')) await runChild('cold', { ...cold, impl: 'baseline' });
    const impls = before ? (['baseline', 'mailauth', 'ours', 'before'] as const) : (['baseline', 'mailauth', 'ours'] as const);
    const onlyImpls = process.argv.find((a) => a.startsWith('--impls='))?.slice(8).split(',');
    const results: Record<string, ChildResult[]> = { baseline: [], mailauth: [], ours: [], before: [] };
    for (let round = 0; round < ROUNDS; round++) {
      for (const impl of rotate(impls, round)) {
        if (onlyImpls && !onlyImpls.includes(impl)) continue;
        const gets = world.httpsRequests.length;
        world.dns.clearQueryLog();
        const serverCpu = process.cpuUsage();
        const r = await runChild(impl === 'before' ? 'before/cold' : 'cold', { ...cold, impl: impl === 'before' ? 'ours' : impl }, semiSpace ? [`--max-semi-space-size=${semiSpace}`] : profile ? ['--cpu-prof', `--cpu-prof-dir=${out}prof`, `--cpu-prof-name=${impl}-${round}.cpuprofile`, '--expose-gc'] : []);
        r.gets = world.httpsRequests.length - gets;
        r.dnsQueries = world.dns.queries.length;
        const used = process.cpuUsage(serverCpu);
        r.serverCpuMsPerPolicy = (used.user + used.system) / 1000 / N; // the test world's side (this process)
        results[impl]!.push(r);
        if (Number(r.failed) > 0) console.log(`  failures: ${JSON.stringify(r.reasons)}`);
        console.log(`cold round ${round + 1} ${impl.padEnd(8)} ${fmt(Number(r.policiesPerS), 0)} policies/s, ${fmt(Number(r.cpuMsPerPolicy))} CPU ms/policy, ${fmt(Number(r.peakRssMb), 0)} MB peak RSS (heap ${fmt(Number(r.heapTotalMb), 0)} MB, external ${fmt(Number(r.externalMb), 0)} MB${r.liveHeapMb !== undefined ? `, live after GC ${fmt(Number(r.liveHeapMb), 0)} MB` : ''}), ${r.ok} ok, ${r.failed} failed, ${r.gets} GETs, ${r.dnsQueries} DNS queries, world ${fmt(Number(r.serverCpuMsPerPolicy))} CPU ms/policy`);
      }
    }
    const coldRows = impls.map((impl) => {
      const rs = results[impl]!;
      return { impl, policiesPerS: median(rs.map((r) => Number(r.policiesPerS))), cpuMsPerPolicy: median(rs.map((r) => Number(r.cpuMsPerPolicy))), peakRssMb: median(rs.map((r) => Number(r.peakRssMb))), failed: Math.max(...rs.map((r) => Number(r.failed))) };
    });

    if (only === 'cold') {
      printCold(coldRows);
      return;
    }

    // Cached lookups and memory per cached policy.
    world.publishPolicy('cached.bench.test', { id: 'c1', mode: 'enforce', mx: ['mx1.cached.test', 'mx2.cached.test', '*.cached.test'], maxAge: 604800 });
    const cached = await runChild('cached', { ...base, domain: 'cached.bench.test', lookups: LOOKUPS, policies: POLICIES }, ['--expose-gc']);

    // Delivery vs plain Nodemailer to the same TLS MX.
    const mx = await world.addMx('deliver.bench.test', 'mx.deliver.bench.test');
    world.publishPolicy('deliver.bench.test', { id: 'd1', mode: 'enforce', mx: ['mx.deliver.bench.test'], maxAge: 604800 });
    const deliverImpls = ['nodemailer', 'ours', 'ours-tuned'] as const;
    const deliveries: Record<string, ChildResult[]> = { nodemailer: [], ours: [], 'ours-tuned': [] };
    for (let round = 0; round < ROUNDS; round++) {
      for (const impl of rotate(deliverImpls, round)) {
        const r = await runChild('deliver', { ...base, impl, domain: 'deliver.bench.test', mxHost: 'mx.deliver.bench.test', mxIp: mx.ip, messages: DELIVERIES });
        deliveries[impl]!.push(r);
        console.log(`delivery round ${round + 1} ${impl.padEnd(10)} ${fmt(Number(r.wallMsPerMessage))} ms wall, ${fmt(Number(r.cpuMsPerMessage))} CPU ms per message`);
      }
    }
    const deliveryRow = (impl: string) => ({ wall: median(deliveries[impl]!.map((r) => Number(r.wallMsPerMessage))), cpu: median(deliveries[impl]!.map((r) => Number(r.cpuMsPerMessage))) });

    // Burst: concurrent sends to one cold domain, queries counted at the DNS server, GETs at the HTTPS server.
    await world.addMx('burst.bench.test', 'mx.burst.bench.test');
    world.publishPolicy('burst.bench.test', { id: 'u1', mode: 'enforce', mx: ['mx.burst.bench.test'], maxAge: 604800 });
    world.dns.clearQueryLog();
    const burstGets = policyGets(world, 'mta-sts.burst.bench.test');
    const burst = await runChild('burst', { ...base, domain: 'burst.bench.test', sends: BURST });
    const q = (name: string, type: string) => world.dns.queries.filter((e) => e.name === name && e.type === type).length;
    const burstCounts = { txt: q('_mta-sts.burst.bench.test', 'TXT'), gets: policyGets(world, 'mta-sts.burst.bench.test') - burstGets, mx: q('burst.bench.test', 'MX'), a: q('mx.burst.bench.test', 'A'), aaaa: q('mx.burst.bench.test', 'AAAA') };

    if (before) {
      await world.addMx('burst-before.bench.test', 'mx.burst-before.bench.test');
      world.publishPolicy('burst-before.bench.test', { id: 'u1', mode: 'enforce', mx: ['mx.burst-before.bench.test'], maxAge: 604800 });
      world.dns.clearQueryLog();
      const gets = policyGets(world, 'mta-sts.burst-before.bench.test');
      const r = await runChild('before/burst', { ...base, domain: 'burst-before.bench.test', sends: BURST });
      console.log(`burst, before: ${r.ok} ok, ${r.failed} failed (${r.firstFailure ?? ''}); ${q('_mta-sts.burst-before.bench.test', 'TXT')} TXT, ${policyGets(world, 'mta-sts.burst-before.bench.test') - gets} GET, ${q('burst-before.bench.test', 'MX')} MX, ${q('mx.burst-before.bench.test', 'A')} A`);
    }

    printSummary({ coldRows, cached, deliveryRow, burst, burstCounts });
    writeFileSync(`${out}results.json`, JSON.stringify({ node: process.version, quick, N, ROUNDS, CONCURRENCY, coldRows, results, cached, deliveries, burst, burstCounts, micro }, null, 2));
  } finally {
    await world.close();
  }
}

type ColdRow = { impl: string; policiesPerS: number; cpuMsPerPolicy: number; peakRssMb: number; failed: number };

function printCold(coldRows: ColdRow[]): void {
  const baseline = coldRows[0]!;
  console.log(`\nCold discovery: ${N} domains, concurrency ${CONCURRENCY}, median of ${ROUNDS} interleaved rounds, one process each`);
  console.log('| implementation | policies/s | vs baseline | CPU ms / policy | vs baseline | peak RSS | failed |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const row of coldRows) {
    console.log(`| ${row.impl} | ${fmt(row.policiesPerS, 0)} | ${fmt(row.policiesPerS / baseline.policiesPerS)}× | ${fmt(row.cpuMsPerPolicy)} | ${fmt(row.cpuMsPerPolicy / baseline.cpuMsPerPolicy)}× | ${fmt(row.peakRssMb, 0)} MB | ${row.failed} |`);
  }
}

function printSummary(r: {
  coldRows: ColdRow[];
  cached: ChildResult;
  deliveryRow: (impl: string) => { wall: number; cpu: number };
  burst: ChildResult;
  burstCounts: { txt: number; gets: number; mx: number; a: number; aaaa: number };
}): void {
  const baseline = r.coldRows[0]!;
  const ours = r.coldRows.find((row) => row.impl === 'ours')!;
  const mailauth = r.coldRows.find((row) => row.impl === 'mailauth')!;
  printCold(r.coldRows);
  const plain = r.deliveryRow('nodemailer');
  const def = r.deliveryRow('ours');
  const tuned = r.deliveryRow('ours-tuned');
  const c = r.cached;
  const b = r.burstCounts;
  const rows: [string, string, string][] = [
    ['cold discovery vs baseline (policies/s)', `${fmt(ours.policiesPerS / baseline.policiesPerS)}×`, '≥ 1.2×'],
    ['cold discovery vs mailauth (policies/s)', `${fmt(ours.policiesPerS / mailauth.policiesPerS)}×`, '> 1×'],
    ['CPU per cold policy vs baseline', `${fmt(ours.cpuMsPerPolicy / baseline.cpuMsPerPolicy)}×`, '≤ 0.8×'],
    [`peak RSS, ${N} domains`, `${fmt(ours.peakRssMb, 0)} MB`, '≤ 80 MB'],
    ['cached lookup, no I/O (txtCheckIntervalMs 60 s)', `${fmt(Number(c.lookupsPerS), 0)}/s`, '≥ 1,000,000/s'],
    ['plan (MX given), cached, no I/O', `${fmt(Number(c.plansPerS), 0)}/s`, '—'],
    [`heap per cached policy (3 mx), ${fmt(Number(c.policies), 0)} policies`, `${fmt(Number(c.bytesPerPolicy), 0)} B`, '≤ 1024 B'],
    ['delivery CPU vs plain Nodemailer, default options', `${fmt(def.cpu / plain.cpu)}× (${fmt(def.cpu)} vs ${fmt(plain.cpu)} ms)`, '≤ 1.05×'],
    ['delivery wall vs plain Nodemailer, default options', `${fmt(def.wall / plain.wall)}× (${fmt(def.wall)} vs ${fmt(plain.wall)} ms)`, '≤ 1.03×'],
    ['delivery CPU vs plain Nodemailer, txtCheckIntervalMs 60 s', `${fmt(tuned.cpu / plain.cpu)}× (${fmt(tuned.cpu)} ms)`, '—'],
    ['delivery wall vs plain Nodemailer, txtCheckIntervalMs 60 s', `${fmt(tuned.wall / plain.wall)}× (${fmt(tuned.wall)} ms)`, '—'],
    [`burst: ${r.burst.sends} concurrent sends, one cold domain`, `${b.txt} TXT, ${b.gets} GET, ${b.mx} MX, ${b.a} A, ${b.aaaa} AAAA; ${r.burst.failed} failed`, '1 TXT, 1 GET, 1 MX, 0 failed'],
  ];
  console.log('\n| measure | this run | target |');
  console.log('|---|---|---|');
  for (const [what, value, target] of rows) console.log(`| ${what} | ${value} | ${target} |`);
  if (r.burst.firstFailure) console.log(`first burst failure: ${r.burst.firstFailure}`);
}

await main();
