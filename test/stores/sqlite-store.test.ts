/**
 * The SQLite policy store through the package entry point, on real database files: what survives a restart, what a
 * single update writes, validation on read (RFC 8461 §3.2, §3.3), the bounds, damaged and foreign files, and the
 * fleet methods across two connections to one file.
 */
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { createSqlitePolicyStore, parsePolicy, type PolicyStoreEntry, type SqlitePolicyStoreEvent } from '../../src/index.js';

const root = mkdtempSync(join(tmpdir(), 'mta-sts-sqlite-store-'));
let n = 0;
const freshPath = (): string => {
  const dir = join(root, `db-${n++}`);
  mkdirSync(dir, { recursive: true });
  return join(dir, 'policies.db');
};
afterAll(() => rmSync(root, { recursive: true, force: true }));

const TEXT = 'version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.backup.example.com\r\nmax_age: 604800\r\n';
const POLICY = parsePolicy(TEXT);
function entry(domain: string, fetchedAt = Date.now(), id = 'id1'): PolicyStoreEntry {
  return { domain, id, policy: POLICY, text: TEXT, fetchedAt, expiresAt: fetchedAt + POLICY.maxAge * 1000 };
}
const stored = (e: PolicyStoreEntry) => ({ domain: e.domain, id: e.id, text: e.text, fetchedAt: e.fetchedAt, expiresAt: e.expiresAt, policy: { mode: e.policy.mode, mx: e.policy.mx, maxAge: e.policy.maxAge } });

/** Fills the store's file with `count` valid policies in one transaction (a fast stand-in for `count` fetches). */
function fill(path: string, count: number, fetchedAt = Date.now()): void {
  const db = new Database(path);
  const insert = db.prepare('INSERT INTO policy (domain, id, text, fetched_at, expires_at, used_at, bytes) VALUES (?, ?, ?, ?, ?, ?, ?)');
  db.transaction(() => {
    for (let i = 0; i < count; i++) insert.run(`customer-domain-${i}.example.com`, `20260101T${i}`, TEXT, fetchedAt, fetchedAt + 604_800_000, fetchedAt, 300);
  })();
  db.close();
}

describe('createSqlitePolicyStore', () => {
  it('survives a restart: what one instance wrote, the next one reads back (one row per policy)', () => {
    const path = freshPath();
    const a = createSqlitePolicyStore({ path });
    const entries = ['a.example', 'b.example', 'c.example'].map((d) => entry(d));
    for (const e of entries) a.set(e.domain, e);
    a.close();
    const b = createSqlitePolicyStore({ path });
    for (const e of entries) expect(stored(b.get(e.domain)!)).toEqual(stored(e));
    expect(b.domains().sort()).toEqual(['a.example', 'b.example', 'c.example']);
    expect(b.size).toBe(3);
    b.delete('b.example');
    b.close();
    const c = createSqlitePolicyStore({ path });
    expect(c.get('b.example')).toBeUndefined();
    expect(c.size).toBe(2);
    c.close();
    expect(() => c.get('a.example')).toThrow(expect.objectContaining({ code: 'MTASTS_STORE_FAILED' }));
  });

  it('100,000 cached policies: usable within 200 ms of a restart, and a single update writes one row (a few pages, never the file)', { timeout: 60_000 }, () => {
    const path = freshPath();
    createSqlitePolicyStore({ path }).close(); // creates the schema
    fill(path, 100_000);
    const started = performance.now();
    const store = createSqlitePolicyStore({ path });
    const first = store.get('customer-domain-99999.example.com');
    const usableMs = performance.now() - started;
    expect(first?.policy.mode).toBe('enforce');
    expect(usableMs).toBeLessThan(200);

    // Count every row the store's statements change, from the database itself (triggers on every table).
    const spy = new Database(path);
    spy.exec('CREATE TABLE spy_counter (n INTEGER NOT NULL); INSERT INTO spy_counter VALUES (0);');
    for (const table of ['policy', 'lease', 'fetch_failure']) {
      for (const op of ['INSERT', 'UPDATE', 'DELETE']) spy.exec(`CREATE TRIGGER spy_${table}_${op} AFTER ${op} ON ${table} BEGIN UPDATE spy_counter SET n = n + 1; END;`);
    }
    spy.pragma('wal_checkpoint(TRUNCATE)');
    const pageSize = spy.pragma('page_size', { simple: true }) as number;
    const filePages = statSync(path).size / pageSize;
    store.sweep(); // nothing to delete: the update below does not trigger a sweep of its own
    spy.exec('UPDATE spy_counter SET n = 0');
    spy.pragma('wal_checkpoint(TRUNCATE)');

    store.set('customer-domain-500.example.com', entry('customer-domain-500.example.com', Date.now(), 'updated1'));
    const rows = spy.prepare('SELECT n FROM spy_counter').pluck().get();
    const walFrames = (statSync(`${path}-wal`).size - 32) / (pageSize + 24);
    expect(rows).toBe(1);
    expect(walFrames).toBeGreaterThan(0);
    // A few pages: the row's leaf, the index leaves its entries move between (and a split), the counter's page.
    expect(walFrames).toBeLessThanOrEqual(12);
    expect(filePages).toBeGreaterThan(5000);
    expect(store.get('customer-domain-500.example.com')?.id).toBe('updated1');
    spy.close();
    store.close();
  });

  it('validates every read: a tampered row (expiry beyond max_age, bad text, wrong id) is deleted and reported, never used (RFC 8461 §3.2, §3.3)', () => {
    const path = freshPath();
    const events: SqlitePolicyStoreEvent[] = [];
    const errors: string[] = [];
    const store = createSqlitePolicyStore({ path, onEvent: (e) => events.push(e), logger: { error: (m) => errors.push(m) } });
    for (const d of ['long.example', 'text.example', 'id.example', 'ok.example']) store.set(d, entry(d));
    const db = new Database(path);
    db.prepare("UPDATE policy SET expires_at = expires_at + 1 WHERE domain = 'long.example'").run();
    db.prepare("UPDATE policy SET text = 'version: STSv1\r\nmode: enforce\r\n' WHERE domain = 'text.example'").run();
    db.prepare("UPDATE policy SET id = 'not an id!' WHERE domain = 'id.example'").run();
    db.close();
    expect(store.get('long.example')).toBeUndefined();
    expect(store.get('text.example')).toBeUndefined();
    expect(store.get('id.example')).toBeUndefined();
    expect(store.get('ok.example')?.policy.mode).toBe('enforce');
    const corrupt = events.filter((e) => e.type === 'corrupt');
    expect(corrupt.map((e) => e.type === 'corrupt' && e.domain)).toEqual(['long.example', 'text.example', 'id.example']);
    expect(corrupt.every((e) => e.type === 'corrupt' && e.error.code === 'MTASTS_STORE_CORRUPT')).toBe(true);
    expect(errors.join('\n')).toMatch(/max_age/);
    expect(store.size).toBe(1); // the invalid rows are gone
    store.close();
  });

  it('expired policies are never returned and their rows are deleted: the file stays bounded (RFC 8461 §3.3)', () => {
    const path = freshPath();
    let now = Date.now();
    const events: SqlitePolicyStoreEvent[] = [];
    const store = createSqlitePolicyStore({ path, now: () => now, onEvent: (e) => events.push(e) });
    store.set('old.example', entry('old.example', now));
    store.set('new.example', entry('new.example', now + 500_000_000));
    now += 604_800_000; // old.example's max_age has run out
    expect(store.get('old.example')).toBeUndefined();
    expect(store.domains()).toEqual(['new.example']);
    expect(store.sweep()).toMatchObject({ expired: 1, evicted: 0 });
    expect(events.find((e) => e.type === 'swept')).toMatchObject({ expired: 1 });
    expect(store.size).toBe(1);
    // §10.2: an entry written already expired (a withdrawn policy, max_age 0) deletes the row.
    store.set('new.example', { ...entry('new.example', now - 1000), expiresAt: now });
    expect(store.size).toBe(0);
    store.close();
  });

  it('is bounded in entries and in bytes: the least recently used are evicted', () => {
    const path = freshPath();
    let now = Date.now();
    const store = createSqlitePolicyStore({ path, maxEntries: 5, now: () => now });
    for (let i = 0; i < 10; i++) {
      now += 120_000;
      store.set(`d${i}.example`, entry(`d${i}.example`, now));
    }
    expect(store.size).toBe(5);
    now += 120_000;
    expect(store.get('d5.example')).toBeDefined(); // a read renews the last use
    now += 120_000;
    store.set('d10.example', entry('d10.example', now));
    expect(store.size).toBe(5);
    expect(store.get('d5.example')).toBeDefined();
    expect(store.get('d6.example')).toBeUndefined();
    store.close();

    const byBytes = createSqlitePolicyStore({ path: freshPath(), maxBytes: 4096 });
    for (let i = 0; i < 100; i++) byBytes.set(`d${i}.example`, entry(`d${i}.example`));
    byBytes.sweep();
    const rowBytes = TEXT.length + 2 * 'd10.example'.length + 'id1'.length + 120;
    expect(byBytes.size).toBeGreaterThanOrEqual(Math.floor(4096 / (rowBytes + 2)));
    expect(byBytes.size).toBeLessThanOrEqual(Math.floor(4096 / (rowBytes - 2)));
    expect(byBytes.get('d99.example')).toBeDefined();
    expect(byBytes.get('d0.example')).toBeUndefined();
    byBytes.close();
  });

  it('a file that is not SQLite is moved aside (timestamped, with a corrupt event and a log line) and a fresh one is used', () => {
    const path = freshPath();
    writeFileSync(path, '{"format":"mta-sts-sender/policy-cache","version":1}\n\u0000garbage\n'.repeat(200));
    const events: SqlitePolicyStoreEvent[] = [];
    const errors: string[] = [];
    const store = createSqlitePolicyStore({ path, onEvent: (e) => events.push(e), logger: { error: (m) => errors.push(m) } });
    const corrupt = events.find((e) => e.type === 'corrupt');
    expect(corrupt).toMatchObject({ type: 'corrupt', error: { code: 'MTASTS_STORE_CORRUPT' } });
    const movedTo = corrupt?.type === 'corrupt' ? corrupt.movedTo : undefined;
    expect(movedTo).toMatch(/policies\.db\.corrupt-\d{8}T\d{9}Z$/);
    expect(readFileSync(movedTo!, 'utf8')).toContain('garbage');
    expect(errors.join('\n')).toContain('moved to');
    store.set('fresh.example', entry('fresh.example'));
    expect(store.get('fresh.example')).toBeDefined();
    expect(events.map((e) => e.type)).toEqual(['corrupt', 'opened']);
    store.close();
  });

  it('a foreign SQLite file (another application) is moved aside; a newer schema of ours is left untouched and the store fails its calls', () => {
    const foreign = freshPath();
    const other = new Database(foreign);
    other.exec('CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES (\'keep me\')');
    other.close();
    const events: SqlitePolicyStoreEvent[] = [];
    const store = createSqlitePolicyStore({ path: foreign, onEvent: (e) => events.push(e) });
    expect(events[0]).toMatchObject({ type: 'corrupt' });
    expect(store.get('x.example')).toBeUndefined();
    store.close();
    const movedAside = readdirSync(join(foreign, '..')).filter((f) => /^policies\.db\.corrupt-[0-9TZ]+$/.test(f));
    expect(movedAside).toHaveLength(1);

    const newer = freshPath();
    createSqlitePolicyStore({ path: newer }).close();
    const db = new Database(newer);
    db.pragma('user_version = 99');
    db.close();
    const before = readFileSync(newer);
    const seen: SqlitePolicyStoreEvent[] = [];
    const refused = createSqlitePolicyStore({ path: newer, onEvent: (e) => seen.push(e) });
    expect(seen).toEqual([expect.objectContaining({ type: 'store-error', operation: 'open', error: expect.objectContaining({ code: 'MTASTS_STORE_FAILED' }) })]);
    expect(() => refused.get('x.example')).toThrow(expect.objectContaining({ code: 'MTASTS_STORE_FAILED' }));
    expect(() => refused.set('x.example', entry('x.example'))).toThrow(/schema version 99/);
    expect(readFileSync(newer).equals(before)).toBe(true);
    expect(readdirSync(join(newer, '..')).some((f) => f.includes('.corrupt-'))).toBe(false);
    refused.close();
  });

  it('damage found while the file is in use: the file is moved aside, the call runs again on a fresh one, and writes go on', () => {
    const path = freshPath();
    const events: SqlitePolicyStoreEvent[] = [];
    const store = createSqlitePolicyStore({ path, onEvent: (e) => events.push(e) });
    for (let i = 0; i < 300; i++) store.set(`d${i}.example`, entry(`d${i}.example`));
    // Garble every page but the first, then change the schema from another connection so the store reads the pages again.
    const other = new Database(path);
    other.pragma('wal_checkpoint(TRUNCATE)');
    const size = statSync(path).size;
    const fd = openSync(path, 'r+');
    writeSync(fd, Buffer.alloc(size - 4096, 0xee), 0, size - 4096, 4096);
    closeSync(fd);
    other.exec('CREATE TABLE bump (x)');
    other.close();
    expect(store.get('d1.example')).toBeUndefined();
    const corrupt = events.find((e) => e.type === 'corrupt');
    expect(corrupt).toMatchObject({ type: 'corrupt', error: { code: 'MTASTS_STORE_CORRUPT', message: expect.stringMatching(/malformed/) } });
    expect(corrupt?.type === 'corrupt' && corrupt.movedTo && existsSync(corrupt.movedTo)).toBe(true);
    store.set('d1.example', entry('d1.example', Date.now(), 'again1'));
    expect(store.get('d1.example')?.id).toBe('again1');
    expect(store.size).toBe(1);
    store.close();
  });

  it('keeps at most three moved-aside copies per path', () => {
    const path = freshPath();
    let now = Date.parse('2026-01-01T00:00:00Z');
    for (let i = 0; i < 5; i++) {
      writeFileSync(path, 'not a database at all, not even close'.repeat(20));
      now += 1000;
      createSqlitePolicyStore({ path, now: () => now }).close();
    }
    const copies = readdirSync(join(path, '..')).filter((f) => f.startsWith('policies.db.corrupt-')).sort();
    expect(copies).toEqual(['policies.db.corrupt-20260101T000003000Z', 'policies.db.corrupt-20260101T000004000Z', 'policies.db.corrupt-20260101T000005000Z']);
  });

  it('a path that cannot be opened is reported, never thrown: calls fail with MTASTS_STORE_FAILED', () => {
    const path = join(root, 'no-such-dir', 'policies.db');
    const events: SqlitePolicyStoreEvent[] = [];
    const store = createSqlitePolicyStore({ path, onEvent: (e) => events.push(e) });
    expect(events).toEqual([expect.objectContaining({ type: 'store-error', operation: 'open' })]);
    expect(() => store.set('m.example', entry('m.example'))).toThrow(expect.objectContaining({ code: 'MTASTS_STORE_FAILED' }));
    expect(existsSync(path)).toBe(false);
    store.close();
  });

  it('fleet methods across two connections to one file: leases are exclusive until released or expired, fetch failures shared until their backoff ends', () => {
    const path = freshPath();
    let now = Date.now();
    const a = createSqlitePolicyStore({ path, now: () => now });
    const b = createSqlitePolicyStore({ path, now: () => now });
    expect(a.tryLock('fetch:x.example', 10_000)).toBe(true);
    expect(b.tryLock('fetch:x.example', 10_000)).toBe(false);
    b.unlock('fetch:x.example'); // not b's: no effect
    expect(b.tryLock('fetch:x.example', 10_000)).toBe(false);
    a.unlock('fetch:x.example');
    expect(b.tryLock('fetch:x.example', 10_000)).toBe(true);
    now += 10_000; // b's lease ran out
    expect(a.tryLock('fetch:x.example', 10_000)).toBe(true);

    const failure = { at: now, id: 'id1', code: 'MTASTS_FETCH_FAILED', message: 'connection refused' };
    a.setFetchFailure('x.example', failure, 300_000);
    expect(b.getFetchFailure('x.example')).toEqual(failure);
    now += 300_000;
    expect(b.getFetchFailure('x.example')).toBeUndefined();
    a.close();
    b.close();
  });

  it('rejects bad options at creation with MTASTS_INVALID_OPTIONS (did you mean …)', () => {
    expect(() => createSqlitePolicyStore({} as never)).toThrow(expect.objectContaining({ code: 'MTASTS_INVALID_OPTIONS' }));
    expect(() => createSqlitePolicyStore({ path: 'x.db', maxEntries: 0 })).toThrow(/maxEntries/);
    expect(() => createSqlitePolicyStore({ path: 'x.db', maxBytes: 1.5 })).toThrow(/maxBytes/);
    expect(() => createSqlitePolicyStore({ path: 'x.db', maxEntires: 5 } as never)).toThrow(/unknown option maxEntires \(did you mean maxEntries\?\)/);
  });
});
