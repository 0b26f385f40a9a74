/**
 * DNS queries end by their deadline: c-ares retries a query in the background after its caller stopped waiting, which
 * used to keep a process alive for 15 s (5 s per try, 2 tries) after a 2 s `dnsTimeoutMs` had already answered. The
 * lookups run in a child process so the test can observe when that process is able to exit.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDefaultResolver, caresSchedule } from '../../src/discovery/resolver.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';

const CHILD = fileURLToPath(new URL('./fixtures/unanswered-dns.ts', import.meta.url));
/** The child is killed after this long: the test stays bounded even when the process would linger. */
const KILL_AFTER_MS = 25_000;

let world: TestWorld;
beforeAll(async () => {
  world = await createTestWorld();
  world.dns.fail('_mta-sts.silent.test', 'timeout');
});
afterAll(async () => {
  await world?.close();
});

/** Runs the child; resolves with its output and the time from its `ready` line to its exit. */
function runChild(mode: 'deadline' | 'close'): Promise<{ lines: string[]; exitMs: number; killed: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, world.dns.servers[0]!, 'silent.test', mode], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    let readyAt: number | undefined;
    let killed = false;
    const killer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, KILL_AFTER_MS);
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (readyAt === undefined && output.includes('ready\n')) readyAt = performance.now();
    });
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(killer);
      resolve({ lines: output.trim().split('\n'), exitMs: performance.now() - (readyAt ?? performance.now()), killed });
    });
  });
}

describe('DNS deadlines (RFC 8461 §3.3 discovery never outlives dnsTimeoutMs)', () => {
  it('a process whose DNS server never answers exits soon after dnsTimeoutMs (2 s), not when c-ares gives up', async () => {
    const { lines, exitMs, killed } = await runChild('deadline');
    expect(killed).toBe(false);
    const result = JSON.parse(lines.at(-1)!) as { status: string; code: string; ms: number };
    expect(result.status).toBe('temp-error');
    expect(result.code).toBe('MTASTS_DNS_TEMPORARY');
    expect(result.ms).toBeLessThan(3_000); // answered by the deadline (c-ares may give up a little earlier)
    // Before: the answer came at 2 s and the process exited at 15 s (c-ares: 5 s per try, 2 tries).
    expect(exitMs).toBeLessThan(4_500);
  }, 30_000);

  it('close() cancels outstanding queries: the process exits at once, not at the 10 s deadline', async () => {
    const { lines, exitMs, killed } = await runChild('close');
    expect(killed).toBe(false);
    const result = JSON.parse(lines.at(-1)!) as { status: string; ms: number };
    expect(result.status).toBe('temp-error');
    expect(result.ms).toBeLessThan(5_000);
    expect(exitMs).toBeLessThan(5_000);
  }, 30_000);

  it('the default resolver derives the c-ares schedule from the deadline and rejects by it', async () => {
    expect(caresSchedule(2000, 1)).toEqual({ timeout: 500, tries: 2 });
    expect(caresSchedule(10_000, 3)).toEqual({ timeout: 833, tries: 2 });
    const resolver = createDefaultResolver({ dnsServers: world.dns.servers, deadlineMs: 300 });
    const started = performance.now();
    await expect(resolver.resolveTxt('_mta-sts.silent.test')).rejects.toMatchObject({ code: 'ETIMEOUT' });
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});
