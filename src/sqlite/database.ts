/**
 * The SQLite seam shared by the persistent stores (`createSqlitePolicyStore`, `createSqliteTlsRptStore`).
 *
 * What must survive a restart on one host lives in one SQLite database file in WAL mode: readers never block the
 * writer, several processes (Haraka workers, a CLI beside a running sender) share the file, and a committed
 * transaction survives `kill -9` of the process (with `synchronous = NORMAL` in WAL mode a power loss may lose the
 * last transactions, never corrupt the file). The driver is `better-sqlite3`, an optional peer: a missing driver is
 * `MTASTS_MISSING_PEER` at creation.
 *
 * Each store owns its tables and stamps the file with `PRAGMA application_id` (what kind of file this is) and
 * `PRAGMA user_version` (the schema version). The rule, for every store: an empty file gets the current schema; a
 * file with the same application id and an older version is migrated forward in one transaction; a newer version,
 * another application id, or a file that is not SQLite at all is refused (`SqliteSchemaError`), so that a newer
 * release's data is never rewritten by an older one.
 */
import type BetterSqlite3 from 'better-sqlite3';
import { requirePeer } from '../peers.js';

/** A `better-sqlite3` database handle. */
export type SqliteDatabase = BetterSqlite3.Database;

/** One schema step: the statements that bring a file from `version - 1` to `version`. */
export interface SqliteMigration {
  readonly version: number;
  readonly sql: string;
}

/** What a store declares about its file. */
export interface SqliteSchema {
  /** `PRAGMA application_id`: a 32-bit number that says which store wrote the file. */
  readonly applicationId: number;
  /** Migrations in ascending order; the last one's version is the current schema version. */
  readonly migrations: readonly SqliteMigration[];
}

/** Why a file was refused: not SQLite, another application's file, or a schema newer than this release knows. */
export class SqliteSchemaError extends Error {
  constructor(
    message: string,
    readonly reason: 'not-sqlite' | 'foreign' | 'newer',
  ) {
    super(message);
    this.name = 'SqliteSchemaError';
  }
}

export interface OpenSqliteOptions {
  /** The feature that needs the driver, for the missing-peer message. */
  readonly feature: string;
  /** Open without writing (CLI preview): no schema changes, no WAL switch. */
  readonly readonly?: boolean;
  /** How long a statement waits for another process's lock before `SQLITE_BUSY`. */
  readonly busyTimeoutMs?: number;
}

type DatabaseConstructor = new (path: string, options?: BetterSqlite3.Options) => SqliteDatabase;

/** Opens (creating when needed) a database file with the settings every store relies on. */
export function openSqlite(path: string, schema: SqliteSchema, options: OpenSqliteOptions): SqliteDatabase {
  const Database = requirePeer<DatabaseConstructor>('better-sqlite3', options.feature);
  const db = new Database(path, { readonly: options.readonly === true, fileMustExist: options.readonly === true });
  try {
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 5_000))}`);
    if (options.readonly !== true) {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
    }
    applySchema(db, schema, options.readonly === true);
    return db;
  } catch (error) {
    db.close();
    if (isNotADatabase(error)) throw new SqliteSchemaError('the file is not an SQLite database', 'not-sqlite');
    throw error;
  }
}

/** The refuse-or-migrate rule of the module comment. */
export function applySchema(db: SqliteDatabase, schema: SqliteSchema, readonly: boolean): void {
  const current = schema.migrations.at(-1)?.version ?? 0;
  let applicationId: number;
  let version: number;
  try {
    applicationId = db.pragma('application_id', { simple: true }) as number;
    version = db.pragma('user_version', { simple: true }) as number;
  } catch (error) {
    if (isNotADatabase(error)) throw new SqliteSchemaError('the file is not an SQLite database', 'not-sqlite');
    throw error;
  }
  if (applicationId === 0 && version === 0 && !hasTables(db)) {
    if (readonly) throw new SqliteSchemaError('the database is empty', 'foreign');
  } else if (applicationId !== schema.applicationId) {
    throw new SqliteSchemaError(`the database belongs to another application (application_id ${applicationId})`, 'foreign');
  } else if (version > current) {
    throw new SqliteSchemaError(`the database has schema version ${version}; this release knows up to ${current}`, 'newer');
  }
  if (version === current || readonly) return;
  db.transaction(() => {
    // Read again under the write lock: another process opening the same new file may have created or migrated it
    // between the check above and this transaction (its CREATE TABLEs must not run twice).
    const now = readStamp(db);
    if (now.applicationId === schema.applicationId && now.version === current) return;
    if (now.applicationId !== 0 && now.applicationId !== schema.applicationId) {
      throw new SqliteSchemaError(`the database belongs to another application (application_id ${now.applicationId})`, 'foreign');
    }
    if (now.version > current) throw new SqliteSchemaError(`the database has schema version ${now.version}; this release knows up to ${current}`, 'newer');
    for (const step of schema.migrations) if (step.version > now.version) db.exec(step.sql);
    db.pragma(`application_id = ${schema.applicationId}`);
    db.pragma(`user_version = ${current}`);
  }).immediate();
}

function readStamp(db: SqliteDatabase): { applicationId: number; version: number } {
  return { applicationId: db.pragma('application_id', { simple: true }) as number, version: db.pragma('user_version', { simple: true }) as number };
}

function hasTables(db: SqliteDatabase): boolean {
  return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' LIMIT 1").get() !== undefined;
}

/** `SQLITE_NOTADB` (a foreign or garbled file) and `SQLITE_CORRUPT`. */
export function isNotADatabase(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT';
}
