/**
 * The persistent and shared policy stores: the SQLite store with 100,000 policies (time until usable after a
 * restart, bytes per policy, what one update writes and costs) and the Redis commands (round trips) per store
 * operation. Run: `node --import tsx bench/stores.ts`
 * (`REDIS_URL=redis://127.0.0.1:6379` adds the Redis figures; `ioredis` must be installed).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { createSqlitePolicyStore } from '../src/cache/sqlite-store.js';
import type { PolicyStoreEntry } from '../src/cache/store.js';
import { parsePolicy } from '../src/policy/policy-file.js';

const COUNT = 100_000;
const text = 'version: STSv1\r\nmode: enforce\r\nmx: mx1.example-domain.com\r\nmx: *.backup.example-domain.com\r\nmax_age: 604800\r\n';
const domainOf = (i: number) => `customer-domain-${i}.example.com`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))] ?? NaN;

/** COUNT policies written through the store (one transaction per set, as in production), timed. */
function populate(path: string): number {
  const writer = createSqlitePolicyStore({ path, maxEntries: COUNT });
  const policy = parsePolicy(text);
  const fetchedAt = Date.now();
  const started = performance.now();
  for (let i = 0; i < COUNT; i++) writer.set(domainOf(i), { domain: domainOf(i), id: `20260101T${i}`, policy, text, fetchedAt, expiresAt: fetchedAt + 604_800_000 });
  const ms = performance.now() - started;
  writer.close(); // the last connection checkpoints the WAL into the file
  return ms;
}

/** A fresh store on the file, then one lookup: the time until the sender can use the cache after a restart. */
function restart(path: string): { usableMs: number; cpuMs: number } {
  const cpu = process.cpuUsage();
  const started = performance.now();
  const store = createSqlitePolicyStore({ path, maxEntries: COUNT });
  if (store.get(domainOf(COUNT - 1))?.policy.mode !== 'enforce') throw new Error('policy missing after restart');
  const usableMs = performance.now() - started;
  const used = process.cpuUsage(cpu);
  store.close();
  return { usableMs, cpuMs: (used.user + used.system) / 1000 };
}

/** Times single updates of existing rows, and counts the rows and WAL pages one update writes. */
function updates(path: string): void {
  const store = createSqlitePolicyStore({ path, maxEntries: COUNT });
  const policy = parsePolicy(text);
  const spy = new Database(path);
  spy.exec('CREATE TABLE IF NOT EXISTS bench_rows (n INTEGER NOT NULL); DELETE FROM bench_rows; INSERT INTO bench_rows VALUES (0);');
  for (const op of ['INSERT', 'UPDATE', 'DELETE']) spy.exec(`CREATE TRIGGER IF NOT EXISTS bench_${op} AFTER ${op} ON policy BEGIN UPDATE bench_rows SET n = n + 1; END;`);
  const pageSize = spy.pragma('page_size', { simple: true }) as number;
  const times: number[] = [];
  const cpu = process.cpuUsage();
  for (let k = 0; k < 2000; k++) {
    const domain = domainOf(Math.floor(Math.random() * COUNT));
    const fetchedAt = Date.now();
    const t0 = performance.now();
    store.set(domain, { domain, id: `t${k}`, policy, text, fetchedAt, expiresAt: fetchedAt + 604_800_000 });
    times.push(performance.now() - t0);
  }
  const used = process.cpuUsage(cpu);
  const cpuPerUpdateMs = (used.user + used.system) / 1000 / 2000;
  // What one update writes: rows (counted by triggers) and WAL pages (the WAL emptied before each update).
  const frames: number[] = [];
  const rows: number[] = [];
  store.sweep();
  for (let k = 0; k < 200; k++) {
    const domain = domainOf(Math.floor(Math.random() * COUNT));
    const fetchedAt = Date.now();
    spy.exec('UPDATE bench_rows SET n = 0');
    spy.pragma('wal_checkpoint(TRUNCATE)');
    store.set(domain, { domain, id: `u${k}`, policy, text, fetchedAt, expiresAt: fetchedAt + 604_800_000 });
    rows.push(spy.prepare('SELECT n FROM bench_rows').pluck().get() as number);
    frames.push((statSync(`${path}-wal`).size - 32) / (pageSize + 24) - 1); // minus the counter's own page
  }
  const gets: number[] = [];
  for (let k = 0; k < 5000; k++) {
    const t0 = performance.now();
    store.get(domainOf(Math.floor(Math.random() * COUNT)));
    gets.push(performance.now() - t0);
  }
  const t0 = performance.now();
  store.sweep();
  const sweepMs = performance.now() - t0;
  console.log(`| sqlite store: one update (\`set\` of an existing domain, its own transaction) | ${median(times).toFixed(3)} ms median | p99 ${quantile(times, 0.99).toFixed(3)} ms over 2000 (1 sweep per 1000), CPU ${cpuPerUpdateMs.toFixed(3)} ms each; rows changed:  ${Math.min(...rows)}–${Math.max(...rows)}; WAL pages written: ${median(frames)} median, ${Math.max(...frames)} max (file: ${Math.round(statSync(path).size / pageSize)} pages) |`);
  console.log(`| sqlite store: \`get\` + validation (policy text parsed again) | ${median(gets).toFixed(3)} ms median | p99 ${quantile(gets, 0.99).toFixed(3)} ms over 5000 |`);
  console.log(`| sqlite store: sweep of ${COUNT} policies (nothing to delete) | ${sweepMs.toFixed(0)} ms | runs every 60 s and every 1 % of maxEntries writes |`);
  for (const op of ['INSERT', 'UPDATE', 'DELETE']) spy.exec(`DROP TRIGGER bench_${op}`);
  spy.exec('DROP TABLE bench_rows');
  spy.close();
  store.close();
}

async function sqliteStore(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'mta-sts-bench-'));
  const path = join(dir, 'policies.db');
  try {
    const writeMs = populate(path);
    const bytes = statSync(path).size;
    const runs = Array.from({ length: 5 }, () => restart(path));
    const usable = runs.map((r) => r.usableMs);
    const driverMs = Number(execFileSync(process.execPath, ['-e', "const t=performance.now(); require('better-sqlite3'); process.stdout.write(String(performance.now()-t))"]).toString());
    console.log(`| sqlite store: write ${COUNT} policies through \`set\` (one transaction each) | ${(writeMs / 1000).toFixed(1)} s | ${((writeMs * 1000) / COUNT).toFixed(0)} µs per policy |`);
    console.log(`| sqlite store: file size for ${COUNT} policies | ${(bytes / 1e6).toFixed(1)} MB | ${(bytes / COUNT).toFixed(0)} B per policy (row, unique index on the domain, two indexes for expiry and eviction) |`);
    console.log(`| sqlite store: restart with ${COUNT} policies, open + first lookup answered | ${median(usable).toFixed(1)} ms median of 5 | min ${Math.min(...usable).toFixed(1)} ms, max ${Math.max(...usable).toFixed(1)} ms; CPU ${median(runs.map((r) => r.cpuMs)).toFixed(1)} ms; nothing is loaded: the time does not grow with the file |`);
    console.log(`| sqlite store: loading the driver (\`require('better-sqlite3')\`, once per process) | ${driverMs.toFixed(0)} ms | a fresh \`node\` process |`);
    updates(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function redisStore(url: string): Promise<void> {
  const { Redis } = await import('ioredis');
  const { createRedisPolicyStore } = await import('../src/redis/index.js');
  const redis = new Redis(url);
  let commands = 0;
  const counting = { call: (command: string, args: Array<string | number>) => (commands++, redis.call(command, args)) };
  const store = createRedisPolicyStore({ redis: counting, prefix: `bench:${Date.now()}:` });
  const fetchedAt = Date.now();
  const entry: PolicyStoreEntry = { domain: 'r.example', id: 'x1', policy: parsePolicy(text), text, fetchedAt, expiresAt: fetchedAt + 604_800_000 };
  const count = async (what: string, fn: () => Promise<unknown>) => {
    commands = 0;
    await fn();
    console.log(`| redis store: ${what} | ${commands} command(s) |`);
  };
  await count('get (hit or miss)', () => store.get('r.example'));
  await count('set', () => store.set('r.example', entry));
  await count('tryLock + unlock', async () => (await store.tryLock('fetch:r.example', 1000)) && store.unlock('fetch:r.example'));
  await count('getFetchFailure', () => store.getFetchFailure('r.example'));
  const started = performance.now();
  for (let i = 0; i < 2000; i++) await store.get('r.example');
  console.log(`| redis store: get + validate, sequential | ${((performance.now() - started) / 2000).toFixed(3)} ms per get |`);
  redis.disconnect();
}

await sqliteStore();
if (process.env.REDIS_URL) await redisStore(process.env.REDIS_URL);
