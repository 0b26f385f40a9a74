import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createFilePolicyStore, type FilePolicyStoreEvent } from '../../src/cache/file-store.js';
import type { PolicyStoreEntry } from '../../src/cache/store.js';
import { encodeStoredPolicy } from '../../src/cache/stored-entry.js';
import { parsePolicy } from '../../src/policy/policy-file.js';
import { spawnTs } from './child.js';

const root = mkdtempSync(join(tmpdir(), 'mta-sts-file-store-'));
let n = 0;
const freshPath = (): string => join(root, `cache-${n++}`, 'policies.jsonl');
const dirOf = (path: string): string => {
  const dir = join(path, '..');
  mkdirSync(dir, { recursive: true });
  return dir;
};
afterAll(() => rmSync(root, { recursive: true, force: true }));

const TEXT = 'version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.backup.example.com\r\nmax_age: 604800\r\n';
const POLICY = parsePolicy(TEXT);
function entry(domain: string, fetchedAt = Date.now(), text = TEXT): PolicyStoreEntry {
  const policy = text === TEXT ? POLICY : parsePolicy(text);
  return { domain, id: 'id1', policy, text, fetchedAt, expiresAt: fetchedAt + policy.maxAge * 1000 };
}
const HEADER = '{"format":"mta-sts-sender/policy-cache","version":1}';

describe('createFilePolicyStore', () => {
  it('survives a restart: what one instance wrote, the next one reads back (0600, header + one line per policy)', async () => {
    const path = freshPath();
    dirOf(path);
    const a = createFilePolicyStore({ path });
    const entries = ['a.example', 'b.example', 'c.example'].map((d) => entry(d));
    for (const e of entries) await a.set(e.domain, e);
    await a.close();
    const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
    expect(lines[0]).toBe(HEADER);
    expect(lines).toHaveLength(4);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const events: FilePolicyStoreEvent[] = [];
    const b = createFilePolicyStore({ path, onEvent: (e) => events.push(e) });
    for (const e of entries) expect(await b.get(e.domain)).toEqual(e);
    expect(events[0]).toMatchObject({ type: 'loaded', entries: 3, skipped: 0, expired: 0 });
    expect([...(await b.domains())].sort()).toEqual(['a.example', 'b.example', 'c.example']);
    await b.delete('b.example');
    await b.close();
    const c = createFilePolicyStore({ path });
    expect(await c.get('b.example')).toBeUndefined();
    expect(c.size).toBe(2);
  });

  it('coalesces a burst of changes into one write', async () => {
    const path = freshPath();
    dirOf(path);
    const written: FilePolicyStoreEvent[] = [];
    const store = createFilePolicyStore({ path, writeDelayMs: 1000, onEvent: (e) => e.type === 'written' && written.push(e) });
    await store.ready;
    for (let i = 0; i < 200; i++) await store.set(`d${i}.example`, entry(`d${i}.example`));
    expect(written).toHaveLength(0); // nothing written yet: the first change started the 1 s window
    await store.flush();
    await store.flush(); // nothing left to write
    expect(written).toHaveLength(1);
    expect(written[0]).toMatchObject({ entries: 200 });
  });

  it('drops expired entries on load and never loads an entry that outlives its max_age (RFC 8461 §3.3)', async () => {
    const path = freshPath();
    dirOf(path);
    const now = Date.now();
    const old = entry('old.example', now - 700_000_000); // max_age 604800 s: expired
    const tampered = { v: 1, domain: 'long.example', id: 'id1', text: TEXT, fetchedAt: now, expiresAt: now + 604_800_001 };
    writeFileSync(path, [HEADER, encodeStoredPolicy(old), JSON.stringify(tampered), encodeStoredPolicy(entry('ok.example'))].join('\n'));
    const events: FilePolicyStoreEvent[] = [];
    const store = createFilePolicyStore({ path, onEvent: (e) => events.push(e) });
    await store.ready;
    expect(await store.get('old.example')).toBeUndefined();
    expect(await store.get('long.example')).toBeUndefined();
    expect((await store.get('ok.example'))?.policy.mode).toBe('enforce');
    expect(events.find((e) => e.type === 'loaded')).toMatchObject({ entries: 1, skipped: 1, expired: 1 });
  });

  it('a corrupt file is reported (event + log), copied aside, and the store keeps every valid entry and works from memory', async () => {
    const path = freshPath();
    dirOf(path);
    writeFileSync(path, [HEADER, encodeStoredPolicy(entry('kept.example')), '{"v":1,"domain":"trunc', '\u0000\u0001garbage', encodeStoredPolicy(entry('kept2.example'))].join('\n'));
    const events: FilePolicyStoreEvent[] = [];
    const errors: string[] = [];
    const store = createFilePolicyStore({ path, writeDelayMs: 10, onEvent: (e) => events.push(e), logger: { error: (m) => errors.push(m) } });
    expect((await store.get('kept.example'))?.policy.mode).toBe('enforce');
    expect(await store.get('kept2.example')).toBeDefined();
    await store.ready;
    const corrupt = events.find((e) => e.type === 'corrupt');
    expect(corrupt).toMatchObject({ type: 'corrupt', skipped: 2, kept: 2, copiedTo: `${path}.corrupt`, error: { code: 'MTASTS_STORE_CORRUPT' } });
    expect(errors.some((m) => m.includes('2 invalid entries'))).toBe(true);
    expect(readFileSync(`${path}.corrupt`, 'utf8')).toContain('garbage');
    await store.set('new.example', entry('new.example'));
    await store.flush();
    // Rewritten clean from memory: the next start reads no corruption.
    const again: FilePolicyStoreEvent[] = [];
    const next = createFilePolicyStore({ path, onEvent: (e) => again.push(e) });
    await next.ready;
    expect(again).toEqual([expect.objectContaining({ type: 'loaded', entries: 3, skipped: 0 })]);
  });

  it('a foreign file (no header) is reported and left copied aside; nothing from it is trusted', async () => {
    const path = freshPath();
    dirOf(path);
    writeFileSync(path, `${encodeStoredPolicy(entry('x.example'))}\n`);
    const events: FilePolicyStoreEvent[] = [];
    const store = createFilePolicyStore({ path, onEvent: (e) => events.push(e) });
    expect(await store.get('x.example')).toBeUndefined();
    expect(events.map((e) => e.type)).toEqual(['corrupt', 'loaded']);
    expect(existsSync(`${path}.corrupt`)).toBe(true);
  });

  it('an unreadable and unwritable path is reported, never thrown: the store keeps working from memory', async () => {
    const path = freshPath();
    mkdirSync(path, { recursive: true }); // a directory where the file should be
    const events: FilePolicyStoreEvent[] = [];
    const errors: string[] = [];
    const store = createFilePolicyStore({ path, writeDelayMs: 10, onEvent: (e) => events.push(e), logger: { error: (m) => errors.push(m) } });
    await store.set('m.example', entry('m.example'));
    expect((await store.get('m.example'))?.domain).toBe('m.example');
    await store.flush();
    expect(events.filter((e) => e.type === 'store-error').map((e) => (e as { operation: string }).operation)).toEqual(['read', 'write']);
    expect(events.every((e) => e.type !== 'store-error' || e.error.code === 'MTASTS_STORE_FAILED')).toBe(true);
    expect(errors).toHaveLength(2);
    expect(readdirSync(join(path, '..')).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('is bounded in entries and in bytes (least recently used evicted), in memory and on disk', async () => {
    const path = freshPath();
    dirOf(path);
    const store = createFilePolicyStore({ path, maxEntries: 5 });
    for (let i = 0; i < 10; i++) await store.set(`d${i}.example`, entry(`d${i}.example`));
    await store.get('d5.example'); // recently used: kept
    await store.set('d10.example', entry('d10.example'));
    expect(store.size).toBe(5);
    expect(await store.get('d5.example')).toBeDefined();
    expect(await store.get('d6.example')).toBeUndefined();
    await store.flush();
    expect(readFileSync(path, 'utf8').trimEnd().split('\n')).toHaveLength(6);

    const lineBytes = encodeStoredPolicy(entry('d0.example')).length + 1;
    const byBytes = createFilePolicyStore({ path: freshPath(), maxBytes: 1024 * 4 });
    for (let i = 0; i < 100; i++) await byBytes.set(`d${i}.example`, entry(`d${i}.example`));
    expect(byBytes.size).toBe(Math.floor(4096 / lineBytes));
  });

  it('memory stays bounded under 100,000 domains (maxEntries), and 100,000 policies load back', { timeout: 60_000 }, async () => {
    const path = freshPath();
    dirOf(path);
    const store = createFilePolicyStore({ path, maxEntries: 100_000 });
    await store.ready;
    const fetchedAt = Date.now();
    for (let i = 0; i < 120_000; i++) store.set(`domain-${i}.example`, { ...entry(`domain-${i}.example`, fetchedAt), domain: `domain-${i}.example` });
    expect(store.size).toBe(100_000);
    expect(await store.get('domain-0.example')).toBeUndefined();
    await store.flush();
    const events: FilePolicyStoreEvent[] = [];
    const reloaded = createFilePolicyStore({ path, onEvent: (e) => events.push(e) });
    await reloaded.ready;
    expect(reloaded.size).toBe(100_000);
    expect(events[0]).toMatchObject({ type: 'loaded', entries: 100_000, skipped: 0 });
    expect((await reloaded.get('domain-119999.example'))?.policy.mx).toEqual(['mx1.example.com', '*.backup.example.com']);
  });

  it('a process killed while writing leaves the old or the new file, never a mix (temp + fsync + rename)', { timeout: 90_000 }, async () => {
    const path = freshPath();
    const dir = dirOf(path);
    let killedMidWrite = 0;
    for (const delayMs of [1, 5, 10, 20, 40]) {
      const writer = spawnTs('./fixtures/file-writer.ts', [path, '40000']);
      await writer.waitFor(/^written 1$/, 60_000);
      await writer.waitFor(/^flushing 2$/, 60_000);
      // Kill inside the write (serialising and writing 40000 entries takes tens of milliseconds).
      await new Promise((r) => setTimeout(r, delayMs));
      writer.child.kill('SIGKILL');
      const { stdout } = await writer.exited;
      if (!stdout.includes('written 2')) killedMidWrite++;
      const events: FilePolicyStoreEvent[] = [];
      const store = createFilePolicyStore({ path, onEvent: (e) => events.push(e) });
      await store.ready;
      expect(events).toEqual([expect.objectContaining({ type: 'loaded', entries: 40_000, skipped: 0 })]);
      // A temp file left by the killed writer is removed on load.
      expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    }
    expect(killedMidWrite).toBeGreaterThan(0);
  });

  it('rejects bad options at creation with MTASTS_INVALID_OPTIONS', () => {
    expect(() => createFilePolicyStore({} as never)).toThrow(expect.objectContaining({ code: 'MTASTS_INVALID_OPTIONS' }));
    expect(() => createFilePolicyStore({ path: 'x', maxEntries: 0 })).toThrow(expect.objectContaining({ code: 'MTASTS_INVALID_OPTIONS' }));
    expect(() => createFilePolicyStore({ path: 'x', maxBytes: 1.5 })).toThrow(expect.objectContaining({ code: 'MTASTS_INVALID_OPTIONS' }));
  });
});
