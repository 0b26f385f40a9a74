/**
 * The persistent and shared policy stores: file-store load time and memory for 100,000 policies, and the Redis
 * commands (round trips) per store operation. Run: `node --expose-gc --import tsx bench/stores.ts`
 * (`REDIS_URL=redis://127.0.0.1:6379` adds the Redis figures; `ioredis` must be installed).
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createFilePolicyStore } from '../src/cache/file-store.js';
import type { PolicyStoreEntry } from '../src/cache/store.js';
import { parsePolicy } from '../src/policy/policy-file.js';

const COUNT = 100_000;
const text = 'version: STSv1\r\nmode: enforce\r\nmx: mx1.example-domain.com\r\nmx: *.backup.example-domain.com\r\nmax_age: 604800\r\n';
const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);
const heap = (): number => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

async function fileStore(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'mta-sts-bench-'));
  const path = join(dir, 'policies.jsonl');
  try {
    const writer = createFilePolicyStore({ path });
    await writer.ready;
    const fetchedAt = Date.now();
    for (let i = 0; i < COUNT; i++) {
      const domain = `customer-domain-${i}.example.com`;
      const entry: PolicyStoreEntry = { domain, id: `20260101T${i}`, policy: parsePolicy(text), text, fetchedAt, expiresAt: fetchedAt + 604_800_000 };
      writer.set(domain, entry);
    }
    const t0 = performance.now();
    await writer.flush();
    const writeMs = performance.now() - t0;
    const bytes = statSync(path).size;

    const loads: number[] = [];
    const usable: number[] = [];
    const cpu: number[] = [];
    for (let run = 0; run < 5; run++) {
      const started = performance.now();
      const cpuStart = process.cpuUsage();
      const reader = createFilePolicyStore({ path, writeDelayMs: 3_600_000 });
      await reader.get('customer-domain-0.example.com');
      usable.push(performance.now() - started);
      await reader.ready;
      loads.push(performance.now() - started);
      const used = process.cpuUsage(cpuStart);
      cpu.push((used.user + used.system) / 1000);
      if (reader.size !== COUNT) throw new Error(`loaded ${reader.size}`);
    }
    usable.sort((a, b) => a - b);
    cpu.sort((a, b) => a - b);
    const before = heap();
    const kept = createFilePolicyStore({ path, writeDelayMs: 3_600_000 });
    await kept.ready;
    const after = heap();
    loads.sort((a, b) => a - b);
    console.log(`| file store: write ${COUNT} policies (temp + fsync + rename) | ${writeMs.toFixed(0)} ms | file ${(bytes / 1e6).toFixed(1)} MB, ${(bytes / COUNT).toFixed(0)} B/policy |`);
    console.log(`| file store: ${COUNT} policies read and indexed, first lookup answered | ${usable[2]?.toFixed(0)} ms median of 5 | min ${usable[0]?.toFixed(0)} ms, max ${usable[4]?.toFixed(0)} ms |`);
    console.log(`| file store: ${COUNT} policies loaded and every entry validated (\`ready\`) | ${loads[2]?.toFixed(0)} ms median of 5 | min ${loads[0]?.toFixed(0)} ms, max ${loads[4]?.toFixed(0)} ms; CPU time ${cpu[2]?.toFixed(0)} ms (median) |`);
    console.log(`| file store: memory per cached policy | ${((after - before) / COUNT).toFixed(0)} B | heap delta ${((after - before) / 1e6).toFixed(1)} MB for ${kept.size} policies |`);
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

await fileStore();
if (process.env.REDIS_URL) await redisStore(process.env.REDIS_URL);
