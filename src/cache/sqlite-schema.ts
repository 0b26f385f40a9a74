/**
 * The tables of the SQLite policy store (`createSqlitePolicyStore`), its prepared statements, and the sweep that
 * keeps the file bounded (RFC 8461 §3.3: a policy is cached at most until `max_age` runs out).
 *
 * Schema version 1 (`PRAGMA application_id` 0x4D545350, "MTSP"; `PRAGMA user_version` 1):
 * - `policy`: one row per policy domain: the TXT `id`, the policy text as served, the fetch and expiry times (epoch
 *   ms), the last use (the eviction order) and the row's accounted size in bytes. The parsed policy is not stored:
 *   it is derived from the text on every read, so a row can never carry a policy its text does not say.
 * - `lease`: fleet leases (`fetch:<domain>`, `refresh:<domain>`) with a holder token and an expiry.
 * - `fetch_failure`: the shared fetch-failure backoff (§3.3), one row per domain, with an expiry.
 *
 * A policy update is one `INSERT … ON CONFLICT DO UPDATE` of one row (the file is never rewritten whole).
 * Expired rows are deleted by the sweep, which also evicts the least recently used policies beyond `maxEntries` or
 * `maxBytes`, in one transaction.
 */
import type BetterSqlite3 from 'better-sqlite3';
import type { SqliteDatabase, SqliteSchema } from '../sqlite/database.js';

/** A prepared statement taking the parameters `P`. */
export type Statement<P extends unknown[] = []> = BetterSqlite3.Statement<P>;

/** "MTSP": the file is an mta-sts-sender policy store. */
export const POLICY_DB_APPLICATION_ID = 0x4d545350;

export const POLICY_DB_SCHEMA: SqliteSchema = Object.freeze({
  applicationId: POLICY_DB_APPLICATION_ID,
  migrations: Object.freeze([
    {
      version: 1,
      sql: `
        CREATE TABLE policy (
          domain TEXT NOT NULL UNIQUE,
          id TEXT NOT NULL,
          text TEXT NOT NULL,
          fetched_at INTEGER NOT NULL,
          expires_at INTEGER NOT NULL,
          used_at INTEGER NOT NULL,
          bytes INTEGER NOT NULL
        );
        CREATE INDEX policy_by_use ON policy (used_at, bytes);
        CREATE INDEX policy_by_expiry ON policy (expires_at);
        CREATE TABLE lease (name TEXT PRIMARY KEY, token TEXT NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;
        CREATE TABLE fetch_failure (
          domain TEXT PRIMARY KEY,
          at INTEGER NOT NULL,
          id TEXT NOT NULL,
          code TEXT NOT NULL,
          message TEXT NOT NULL,
          expires_at INTEGER NOT NULL
        ) WITHOUT ROWID;
      `,
    },
  ]),
});

/** A `policy` row as read (SQLite is dynamically typed: every field is checked again before use). */
export interface PolicyRow {
  domain: unknown;
  id: unknown;
  text: unknown;
  fetched_at: unknown;
  expires_at: unknown;
  used_at: unknown;
}

/** A `fetch_failure` row as read. */
export interface FetchFailureRow {
  at: unknown;
  id: unknown;
  code: unknown;
  message: unknown;
}

/** The statements of one open database, prepared once. */
export interface PolicyStatements {
  get: Statement<[string]>;
  upsert: Statement<[string, string, string, number, number, number, number]>;
  touch: Statement<[number, string, number]>;
  delete: Statement<[string]>;
  domains: Statement<[number]>;
  count: Statement;
  lock: Statement<[string, string, number, number]>;
  unlock: Statement<[string, string]>;
  getFailure: Statement<[string, number]>;
  setFailure: Statement<[string, number, string, string, string, number]>;
  expirePolicies: Statement<[number]>;
  expireLeases: Statement<[number]>;
  expireFailures: Statement<[number]>;
  oldest: Statement;
  evict: Statement<[number]>;
  trimFailures: Statement<[number]>;
  countFailures: Statement;
  trimLeases: Statement<[number]>;
  countLeases: Statement;
}

/** Prepares the statements of {@link PolicyStatements} on an open database. */
export function prepareStatements(db: SqliteDatabase): PolicyStatements {
  return {
    get: db.prepare<[string]>('SELECT domain, id, text, fetched_at, expires_at, used_at FROM policy WHERE domain = ?'),
    // One row written per update (RFC 8461 §3.3 caching without rewriting the file).
    upsert: db.prepare<[string, string, string, number, number, number, number]>(
      `INSERT INTO policy (domain, id, text, fetched_at, expires_at, used_at, bytes) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (domain) DO UPDATE SET id = excluded.id, text = excluded.text, fetched_at = excluded.fetched_at,
         expires_at = excluded.expires_at, used_at = excluded.used_at, bytes = excluded.bytes`,
    ),
    touch: db.prepare<[number, string, number]>('UPDATE policy SET used_at = ? WHERE domain = ? AND used_at < ?'),
    delete: db.prepare<[string]>('DELETE FROM policy WHERE domain = ?'),
    domains: db.prepare<[number]>('SELECT domain FROM policy WHERE expires_at > ?').pluck(),
    count: db.prepare('SELECT count(*) AS entries, total(bytes) AS bytes FROM policy'),
    // A lease is taken when absent or expired, in one statement (atomic across processes).
    lock: db.prepare<[string, string, number, number]>(
      `INSERT INTO lease (name, token, expires_at) VALUES (?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at WHERE lease.expires_at <= ?`,
    ),
    unlock: db.prepare<[string, string]>('DELETE FROM lease WHERE name = ? AND token = ?'),
    getFailure: db.prepare<[string, number]>('SELECT at, id, code, message FROM fetch_failure WHERE domain = ? AND expires_at > ?'),
    setFailure: db.prepare<[string, number, string, string, string, number]>(
      `INSERT INTO fetch_failure (domain, at, id, code, message, expires_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (domain) DO UPDATE SET at = excluded.at, id = excluded.id, code = excluded.code,
         message = excluded.message, expires_at = excluded.expires_at`,
    ),
    expirePolicies: db.prepare<[number]>('DELETE FROM policy WHERE expires_at <= ?'),
    expireLeases: db.prepare<[number]>('DELETE FROM lease WHERE expires_at <= ?'),
    expireFailures: db.prepare<[number]>('DELETE FROM fetch_failure WHERE expires_at <= ?'),
    oldest: db.prepare('SELECT rowid AS rowid, bytes FROM policy ORDER BY used_at'),
    evict: db.prepare<[number]>('DELETE FROM policy WHERE rowid = ?'),
    trimFailures: db.prepare<[number]>('DELETE FROM fetch_failure WHERE domain IN (SELECT domain FROM fetch_failure ORDER BY expires_at LIMIT ?)'),
    countFailures: db.prepare('SELECT count(*) FROM fetch_failure').pluck(),
    trimLeases: db.prepare<[number]>('DELETE FROM lease WHERE name IN (SELECT name FROM lease ORDER BY expires_at LIMIT ?)'),
    countLeases: db.prepare('SELECT count(*) FROM lease').pluck(),
  };
}

/** What one sweep deleted. */
export interface SweepResult {
  /** Policies past their `max_age` (RFC 8461 §3.3). */
  expired: number;
  /** Least recently used policies beyond `maxEntries` / `maxBytes`. */
  evicted: number;
  /** Expired leases and fetch failures, and those beyond the bound. */
  other: number;
}

/**
 * Deletes expired rows and evicts the least recently used policies beyond the bounds, in one write transaction
 * (so a concurrent sweep of another process sees the result, never half of it).
 */
export function sweep(db: SqliteDatabase, st: PolicyStatements, now: number, maxEntries: number, maxBytes: number): SweepResult {
  return db
    .transaction((): SweepResult => {
      // RFC 8461 §3.3: a policy past its max_age must not be used; its row goes.
      const expired = st.expirePolicies.run(now).changes;
      let other = st.expireLeases.run(now).changes + st.expireFailures.run(now).changes;
      other += trim(st.trimFailures, st.countFailures.get() as number, maxEntries);
      other += trim(st.trimLeases, st.countLeases.get() as number, maxEntries);
      const { entries, bytes } = st.count.get() as { entries: number; bytes: number };
      let evicted = 0;
      if (entries > maxEntries || bytes > maxBytes) {
        let keptEntries = entries;
        let keptBytes = bytes;
        const victims: number[] = [];
        for (const row of st.oldest.iterate() as Iterable<{ rowid: number; bytes: number }>) {
          if (keptEntries <= maxEntries && keptBytes <= maxBytes) break;
          victims.push(row.rowid);
          keptEntries--;
          keptBytes -= Number(row.bytes) || 0;
        }
        for (const rowid of victims) evicted += st.evict.run(rowid).changes;
      }
      return { expired, evicted, other };
    })
    .immediate();
}

function trim(statement: PolicyStatements['trimFailures'], count: number, max: number): number {
  return count > max ? statement.run(count - max).changes : 0;
}
