/**
 * A policy store that survives restarts and is shared by the processes of one host: one SQLite file (RFC 8461 §3.3,
 * §5.1).
 *
 * §3.3 lets a sender keep using a cached policy until its `max_age` expires, whatever happens to DNS and HTTPS in
 * the meantime: that is what protects mail from an attacker who blocks discovery. A cache held only in memory
 * forgets every `enforce` policy when the MTA restarts, so a restart during such an attack is a downgrade. This store
 * keeps one row per policy in an SQLite database in WAL mode (see `sqlite/database.ts`), behind the engine's own
 * in-memory tier:
 *
 * - An update writes that policy's row only (one `INSERT … ON CONFLICT DO UPDATE`); nothing is loaded at start, so
 *   the store is usable as soon as the file is open, whatever its size.
 * - Every read is validated (`decodeStoredPolicy`: the policy text is parsed again, the expiry is checked against
 *   `max_age`); an invalid row is deleted and reported (`corrupt`), never used.
 * - Expired policies are deleted, and the least recently used beyond `maxEntries` / `maxBytes` evicted, by a sweep
 *   at open, every `sweepIntervalMs`, and after every 1 % of `maxEntries` writes: the file stays bounded.
 * - Several processes (Haraka workers, a CLI beside a sender) may share the file; the fleet methods (`tryLock`,
 *   `unlock`, `getFetchFailure`, `setFetchFailure`) are rows with an expiry, taken in single atomic statements, so
 *   a domain cached by one process is not fetched again by another, and a failed fetch is not retried by another
 *   before the backoff ends (§3.3).
 * - A file that is not an SQLite database, is damaged, or belongs to another application is moved aside
 *   (`<path>.corrupt-<timestamp>`, with its `-wal` and `-shm`) with a `corrupt` event and an error log line, and a
 *   fresh database is started in its place. A file that cannot be opened at all (no such directory, permissions, a
 *   newer schema written by a later release, which is never rewritten) leaves the store without a file: every call
 *   then fails with `MTASTS_STORE_FAILED`, which the engine reports as a `store-error` while it keeps enforcing from
 *   its in-memory tier; opening is retried every 30 s. Nothing about the file ever throws out of the factory.
 *
 * Calls are synchronous (SQLite is local); a call waits at most `busyTimeoutMs` for another process's write lock.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { LRUCache } from 'lru-cache';
import { normalizeDomainOrUndefined } from '../domain.js';
import { MtaStsError } from '../errors.js';
import { silentLogger, type Logger } from '../logger.js';
import { clock, fn, invalidOptionsError, logger as loggerRule, num, str, checkOptions, type OptionSpec } from '../options.js';
import { isNotADatabase, openSqlite, SqliteSchemaError, type SqliteDatabase } from '../sqlite/database.js';
import { fileIdentity, moveSqliteFileAside } from '../sqlite/move-aside.js';
import { POLICY_DB_SCHEMA, prepareStatements, sweep, type FetchFailureRow, type PolicyRow, type PolicyStatements, type SweepResult } from './sqlite-schema.js';
import type { PolicyStore, PolicyStoreEntry, StoredFetchFailure } from './store.js';
import { decodeFetchFailure, decodeStoredPolicy, STORED_POLICY_VERSION } from './stored-entry.js';

/** Options of {@link createSqlitePolicyStore}. */
export interface SqlitePolicyStoreOptions {
  /** The database file. Its directory must exist and be writable; the file is created when absent. */
  path: string;
  /** Most policies kept; the least recently used are evicted beyond it. Default 100000. */
  maxEntries?: number;
  /** Most bytes of policies kept (about the file's size); the least recently used are evicted beyond it. Default 64 MiB. */
  maxBytes?: number;
  /** How long a call waits for another process's write lock before failing (`MTASTS_STORE_FAILED`), in ms. Default 500. */
  busyTimeoutMs?: number;
  /** Expired rows are deleted and the bounds enforced at least this often, in ms. Default 60000. */
  sweepIntervalMs?: number;
  /** Clock, epoch ms: expiry and last use. Default `Date.now`. */
  now?: () => number;
  logger?: Logger;
  /** Gets every {@link SqlitePolicyStoreEvent}. Must not throw (errors are swallowed). */
  onEvent?: (event: SqlitePolicyStoreEvent) => void;
}

/** What the SQLite store reports (besides the errors its calls throw, which the engine reports as `store-error`). */
export type SqlitePolicyStoreEvent =
  /** The file was opened (created when absent), in `ms`; nothing is read at open (`size` counts the policies). */
  | { type: 'opened'; path: string; ms: number }
  /**
   * The file was damaged or foreign and moved to `movedTo` (a fresh one replaced it), or one row (`domain`) did not
   * validate and was deleted. `MTASTS_STORE_CORRUPT`.
   */
  | { type: 'corrupt'; error: MtaStsError; movedTo?: string; domain?: string }
  /** The file could not be opened (`MTASTS_STORE_FAILED`): calls fail until it can (retried every 30 s). */
  | { type: 'store-error'; operation: 'open'; error: MtaStsError }
  /** A sweep deleted `expired` policies past their max_age and `evicted` least recently used ones beyond the bounds. */
  | { type: 'swept'; expired: number; evicted: number; ms: number };

const FEATURE = 'createSqlitePolicyStore() (the SQLite policy store)';
/** Between two attempts to open a file that could not be opened. */
const REOPEN_DELAY_MS = 30_000;
/** A read renews a policy's last use (its eviction order) at most this often: reads stay reads. */
const TOUCH_GRANULARITY_MS = 60_000;
/** The accounted size of a row beyond its strings: the integers, the row and index headers (measured: ~120 B). */
export const POLICY_ROW_OVERHEAD_BYTES = 120;

/** The accounted size of one policy row, for `maxBytes`. */
export function policyRowBytes(domain: string, entry: PolicyStoreEntry): number {
  return Buffer.byteLength(entry.text) + 2 * domain.length + entry.id.length + POLICY_ROW_OVERHEAD_BYTES;
}

interface OpenDatabase {
  db: SqliteDatabase;
  st: PolicyStatements;
  /** The file's identity when opened: a damaged file is moved aside only while it is still this one. */
  identity: string | undefined;
}

type Settings = Required<Pick<SqlitePolicyStoreOptions, 'path' | 'maxEntries' | 'maxBytes' | 'busyTimeoutMs' | 'sweepIntervalMs'>> & SqlitePolicyStoreOptions;

/** The store returned by {@link createSqlitePolicyStore}. */
export class SqlitePolicyStore implements PolicyStore {
  readonly path: string;
  readonly #s: Settings;
  readonly #now: () => number;
  readonly #logger: Logger;
  /** Tokens of the leases this instance took (bounded; a lease outlives its token only by expiring in the file). */
  readonly #tokens = new LRUCache<string, string>({ max: 10_000 });
  /** Writes between two sweeps triggered by writes (1 % of maxEntries, at least 1). */
  readonly #sweepEvery: number;
  #open: OpenDatabase | undefined;
  #openError: MtaStsError | undefined;
  #reopenAt = 0;
  #writesSinceSweep = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  /** @internal Use {@link createSqlitePolicyStore}. */
  constructor(settings: Settings) {
    this.#s = settings;
    this.path = settings.path;
    this.#now = settings.now ?? Date.now;
    this.#logger = settings.logger ?? silentLogger;
    this.#sweepEvery = Math.max(1, Math.floor(settings.maxEntries / 100));
    this.#tryOpen();
    this.#timer = setInterval(() => this.#sweepQuietly(), settings.sweepIntervalMs);
    this.#timer.unref();
  }

  /** The policy, validated (RFC 8461 §3.2 text parsed again, §3.3 expiry); undefined when absent, expired or invalid. */
  get(domain: string): PolicyStoreEntry | undefined {
    return this.#run('get', (o) => {
      const row = o.st.get.get(domain) as PolicyRow | undefined;
      if (row === undefined) return undefined;
      const now = this.#now();
      if (typeof row.expires_at === 'number' && row.expires_at <= now) return undefined; // §3.3: expired; the sweep deletes it
      let entry: PolicyStoreEntry;
      try {
        entry = decodeStoredPolicy({ v: STORED_POLICY_VERSION, domain: row.domain, id: row.id, text: row.text, fetchedAt: row.fetched_at, expiresAt: row.expires_at }, domain);
      } catch (error) {
        this.#quietly(() => o.st.delete.run(domain));
        this.#corrupt(`policy store ${this.path} held an invalid row for ${domain} (deleted): ${(error as Error).message}`, { domain });
        return undefined;
      }
      if (typeof row.used_at !== 'number' || row.used_at < now - TOUCH_GRANULARITY_MS) this.#touch(o, domain, now);
      return entry;
    });
  }

  /** Writes the domain's row (one row). An entry already expired deletes it instead (§10.2: a withdrawn policy). */
  set(domain: string, entry: PolicyStoreEntry): void {
    if (normalizeDomainOrUndefined(domain) !== domain || entry?.domain !== domain) {
      throw new MtaStsError('MTASTS_INVALID_DOMAIN', `policy store set(): ${JSON.stringify(String(domain).slice(0, 80))} is not a normalised domain or not the entry's domain`);
    }
    const now = this.#now();
    this.#run('set', (o) => {
      if (entry.expiresAt <= now) o.st.delete.run(domain);
      else o.st.upsert.run(domain, entry.id, entry.text, entry.fetchedAt, entry.expiresAt, now, policyRowBytes(domain, entry));
    });
    if (++this.#writesSinceSweep >= this.#sweepEvery) this.#sweepQuietly();
  }

  delete(domain: string): void {
    this.#run('delete', (o) => o.st.delete.run(domain));
  }

  /** The domains with an unexpired policy (at most `maxEntries`, plus the writes since the last sweep). */
  domains(): string[] {
    return this.#run('domains', (o) => o.st.domains.all(this.#now()) as string[]);
  }

  /** Takes the lease `name` for `ttlMs` when nobody holds it (or the holder's ran out): one atomic statement. */
  tryLock(name: string, ttlMs: number): boolean {
    const token = randomBytes(16).toString('hex');
    const ttl = Math.max(1, Math.ceil(ttlMs));
    const now = this.#now();
    const taken = this.#run('tryLock', (o) => o.st.lock.run(String(name), token, now + ttl, now).changes === 1);
    if (taken) this.#tokens.set(name, token, { ttl });
    return taken;
  }

  /** Releases a lease this instance holds (only while the row still holds our token). */
  unlock(name: string): void {
    const token = this.#tokens.get(name);
    if (token === undefined) return;
    this.#tokens.delete(name);
    this.#run('unlock', (o) => o.st.unlock.run(String(name), token));
  }

  /** The shared fetch failure of the domain while its backoff runs (§3.3), validated. */
  getFetchFailure(domain: string): StoredFetchFailure | undefined {
    return this.#run('getFetchFailure', (o) => {
      const row = o.st.getFailure.get(domain, this.#now()) as FetchFailureRow | undefined;
      if (row === undefined) return undefined;
      try {
        return decodeFetchFailure(row);
      } catch (error) {
        this.#corrupt(`policy store ${this.path} held an invalid fetch failure for ${domain}: ${(error as Error).message}`, { domain });
        return undefined;
      }
    });
  }

  setFetchFailure(domain: string, failure: StoredFetchFailure, ttlMs: number): void {
    const expiresAt = this.#now() + Math.max(1, Math.ceil(ttlMs));
    this.#run('setFetchFailure', (o) => o.st.setFailure.run(domain, failure.at, failure.id, failure.code, String(failure.message).slice(0, 1000), expiresAt));
  }

  /** Policies in the file (expired ones not yet swept included); undefined while the file is not open. */
  get size(): number | undefined {
    try {
      return this.#open ? (this.#open.st.count.get() as { entries: number }).entries : undefined;
    } catch {
      return undefined;
    }
  }

  /** @internal Deletes expired rows and evicts beyond the bounds now (done on its own). Throws like every call. */
  sweep(): SweepResult {
    this.#writesSinceSweep = 0;
    const started = performance.now();
    const result = this.#run('sweep', (o) => sweep(o.db, o.st, this.#now(), this.#s.maxEntries, this.#s.maxBytes));
    if (result.expired > 0 || result.evicted > 0) this.#emit({ type: 'swept', expired: result.expired, evicted: result.evicted, ms: performance.now() - started });
    return result;
  }

  /** Closes the file (idempotent). Calls made afterwards fail with `MTASTS_STORE_FAILED`. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#closeDatabase();
  }

  #emit(event: SqlitePolicyStoreEvent): void {
    try {
      this.#s.onEvent?.(event);
    } catch {
      // a throwing listener must not break the store
    }
  }

  /**
   * One call on the open database. Damage found by the call (`SQLITE_CORRUPT`, `SQLITE_NOTADB`) moves the file aside
   * and the call runs once more on the fresh file; any other failure is `MTASTS_STORE_FAILED`.
   */
  #run<T>(operation: string, call: (o: OpenDatabase) => T): T {
    const open = this.#database(operation);
    try {
      return call(open);
    } catch (error) {
      if (error instanceof MtaStsError) throw error;
      if (!isNotADatabase(error)) throw this.#failure(operation, error);
      this.#recover(open, error);
      try {
        return call(this.#database(operation));
      } catch (again) {
        throw again instanceof MtaStsError ? again : this.#failure(operation, again);
      }
    }
  }

  #database(operation: string): OpenDatabase {
    if (this.#closed) throw new MtaStsError('MTASTS_STORE_FAILED', `policy store ${this.path} is closed (${operation})`, { details: { path: this.path, operation } });
    if (!this.#open && this.#now() >= this.#reopenAt) this.#tryOpen();
    if (this.#open) return this.#open;
    throw this.#openError ?? new MtaStsError('MTASTS_STORE_FAILED', `policy store ${this.path} is not open`, { details: { path: this.path, operation } });
  }

  #failure(operation: string, cause: unknown): MtaStsError {
    const code = (cause as { code?: unknown } | null)?.code;
    return new MtaStsError('MTASTS_STORE_FAILED', `policy store ${this.path}: ${operation} failed: ${String((cause as Error)?.message ?? cause)}`, {
      cause,
      details: { path: this.path, operation, ...(typeof code === 'string' ? { sqliteCode: code } : {}) },
    });
  }

  /** Opens the file; a damaged or foreign one is moved aside first. Never throws but for a missing driver. */
  #tryOpen(): void {
    const started = performance.now();
    try {
      this.#open = this.#openFile();
    } catch (error) {
      if (error instanceof MtaStsError && error.code === 'MTASTS_MISSING_PEER') throw error;
      const damaged = error instanceof SqliteSchemaError && error.reason !== 'newer';
      const movedTo = damaged ? moveSqliteFileAside(this.path, new Date(this.#now()), fileIdentity(this.path)) : undefined;
      if (damaged) this.#corrupt(`policy store ${this.path} ${error.message}; ${movedTo ? `moved to ${movedTo}` : 'could not move it'}, starting a fresh one`, movedTo ? { movedTo } : {});
      try {
        if (!movedTo) throw error;
        this.#open = this.#openFile();
      } catch (final) {
        this.#unavailable(final);
        return;
      }
    }
    this.#openError = undefined;
    const ms = performance.now() - started;
    this.#emit({ type: 'opened', path: this.path, ms });
    this.#logger.debug?.('mta-sts: policy store opened', { path: this.path, ms: Math.round(ms) });
    // The first sweep runs right after, not before the first lookup: nothing is read at open, whatever the file's size.
    setImmediate(() => this.#sweepQuietly()).unref();
  }

  #openFile(): OpenDatabase {
    const db = openSqlite(this.path, POLICY_DB_SCHEMA, { feature: FEATURE, busyTimeoutMs: this.#s.busyTimeoutMs });
    try {
      db.pragma('journal_size_limit = 4194304'); // the -wal file is truncated back to 4 MiB after a checkpoint
      return { db, st: prepareStatements(db), identity: fileIdentity(this.path) };
    } catch (error) {
      db.close();
      if (isNotADatabase(error)) throw new SqliteSchemaError('is damaged', 'not-sqlite');
      throw error;
    }
  }

  #unavailable(cause: unknown): void {
    this.#reopenAt = this.#now() + REOPEN_DELAY_MS;
    const why = cause instanceof SqliteSchemaError && cause.reason === 'newer' ? `${cause.message} (left untouched)` : String((cause as Error)?.message ?? cause);
    const error = new MtaStsError('MTASTS_STORE_FAILED', `policy store ${this.path} cannot be opened: ${why}; policies stay cached in memory only`, { cause, details: { path: this.path, operation: 'open' } });
    this.#openError = error;
    this.#logger.error?.(`mta-sts: ${error.message}`, { path: this.path });
    this.#emit({ type: 'store-error', operation: 'open', error });
  }

  /** Damage found while the file was in use: move it aside (unless another process did) and start a fresh one. */
  #recover(open: OpenDatabase, cause: unknown): void {
    if (this.#open === open) this.#closeDatabase();
    const movedTo = moveSqliteFileAside(this.path, new Date(this.#now()), open.identity);
    this.#corrupt(`policy store ${this.path} is damaged (${String((cause as Error)?.message ?? cause)}); ${movedTo ? `moved to ${movedTo}, ` : ''}starting a fresh one`, movedTo ? { movedTo } : {});
    this.#reopenAt = 0;
  }

  #corrupt(message: string, extra: { movedTo?: string; domain?: string }): void {
    const error = new MtaStsError('MTASTS_STORE_CORRUPT', message, { details: { path: this.path, ...extra } });
    this.#logger.error?.(`mta-sts: ${message}`, { path: this.path, ...extra });
    this.#emit({ type: 'corrupt', error, ...extra });
  }

  /** Renews the last use (eviction order); a failure here (busy, read-only file) is not the read's failure. */
  #touch(o: OpenDatabase, domain: string, now: number): void {
    this.#quietly(() => o.st.touch.run(now, domain, now - TOUCH_GRANULARITY_MS));
  }

  /** A write a read does on the side (renewing the last use, deleting an invalid row): only damage is its failure. */
  #quietly(write: () => unknown): void {
    try {
      write();
    } catch (error) {
      if (isNotADatabase(error)) throw error;
    }
  }

  #sweepQuietly(): void {
    if (this.#closed || !this.#open) return;
    try {
      this.sweep();
    } catch (error) {
      this.#logger.warn?.('mta-sts: policy store sweep failed; retried later', { path: this.path, error: String((error as Error)?.message ?? error) });
    }
  }

  #closeDatabase(): void {
    const open = this.#open;
    this.#open = undefined;
    try {
      open?.db.close();
    } catch {
      // closing a damaged file may fail; it is released either way
    }
  }
}

const DAY_MS = 86_400_000;

/** Options of `createSqlitePolicyStore()`. */
export const SQLITE_POLICY_STORE_OPTION_SPEC: OptionSpec = Object.freeze({
  path: str('a file path'),
  maxEntries: num(1, 10_000_000, { integer: true }),
  maxBytes: num(4096, 64 * 1024 * 1024 * 1024, { integer: true, unit: 'bytes' }),
  busyTimeoutMs: num(0, 60_000, { integer: true, unit: 'ms' }),
  sweepIntervalMs: num(10, DAY_MS, { integer: true, unit: 'ms' }),
  now: clock,
  logger: loggerRule,
  onEvent: fn(),
});

/**
 * Creates the SQLite policy store (see the module comment). Opens (or creates) the file at once; a damaged file is
 * moved aside and never throws here. Throws `MTASTS_INVALID_OPTIONS` for a bad option and `MTASTS_MISSING_PEER`
 * when `better-sqlite3` is not installed.
 *
 * @example
 * ```ts
 * const mtaSts = createMtaSts({ store: createSqlitePolicyStore({ path: '/var/lib/mta-sts/policies.db' }) });
 * ```
 */
export function createSqlitePolicyStore(options: SqlitePolicyStoreOptions): SqlitePolicyStore {
  const factory = 'createSqlitePolicyStore()';
  const issues = checkOptions(factory, options, SQLITE_POLICY_STORE_OPTION_SPEC);
  if (typeof options !== 'object' || options === null || options.path === undefined) issues.push({ option: 'path', value: 'undefined', expected: 'a file path (required)' });
  if (issues.length > 0) throw invalidOptionsError(factory, issues);
  return new SqlitePolicyStore({
    ...options,
    maxEntries: options.maxEntries ?? 100_000,
    maxBytes: options.maxBytes ?? 64 * 1024 * 1024,
    busyTimeoutMs: options.busyTimeoutMs ?? 500,
    sweepIntervalMs: options.sweepIntervalMs ?? 60_000,
  });
}
