/**
 * The tables of the SQLite TLS-RPT store (`createSqliteTlsRptStore`) and the schema rule they follow.
 *
 * Three tables, keyed by (UTC day, policy domain), the unit of one RFC 8460 report (§4.1):
 * - `tlsrpt_policy`: the live counters of each applied policy (§4.4 `summary`), one row per policy identity;
 * - `tlsrpt_failure`: the live counters of each failure detail (§4.4 `failure-details`), one row per detail identity;
 * - `tlsrpt_report`: the report of that day once it is scheduled: its delivery state (the `unique-id` of the
 *   report id, §5.1; due time, §4.1; attempts, §5.5), and, once a sender has claimed it, the frozen `policies` it
 *   carries and the claim (`owner`, `lease_until`).
 * A counter row is identified by the JSON identity of its policy (`policyKey()`) or failure detail
 * (`failureKey()`), from which the report's fields are read back.
 * A flush adds to the counters (UPDATE of an existing row, INSERT of a new one within the caps); claiming a report
 * moves the counters into the report row, so what is sent, and re-sent after a crash, is fixed together with its id;
 * counters recorded later make the next report. A sent report's row is deleted; rows of days past the retention are
 * deleted, so the file stays bounded.
 *
 * Schema rule (see `openSqlite`): `PRAGMA application_id` {@link TLSRPT_APPLICATION_ID} and `PRAGMA user_version`
 * the last migration's version. A file of an older version is migrated forward; a newer one, another
 * application's file, or a file that is not SQLite is refused.
 */
import type { SqliteSchema } from './database.js';

/** `PRAGMA application_id` of a TLS-RPT store file: "MSTR" (mta-sts, TLS reports). */
export const TLSRPT_APPLICATION_ID = 0x4d535452;

const V1 = `
CREATE TABLE tlsrpt_policy (
  day TEXT NOT NULL,
  policy_domain TEXT NOT NULL,
  policy_key TEXT NOT NULL,
  success_count INTEGER NOT NULL,
  failure_count INTEGER NOT NULL,
  PRIMARY KEY (day, policy_domain, policy_key)
) WITHOUT ROWID;
CREATE TABLE tlsrpt_failure (
  day TEXT NOT NULL,
  policy_domain TEXT NOT NULL,
  policy_key TEXT NOT NULL,
  failure_key TEXT NOT NULL,
  overflow INTEGER NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (day, policy_domain, policy_key, failure_key)
) WITHOUT ROWID;
CREATE TABLE tlsrpt_report (
  day TEXT NOT NULL,
  policy_domain TEXT NOT NULL,
  unique_id TEXT NOT NULL,
  due_at INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  first_attempt_at INTEGER,
  next_attempt_at INTEGER NOT NULL,
  last_error TEXT,
  policies TEXT,
  owner TEXT,
  lease_until INTEGER,
  PRIMARY KEY (day, policy_domain)
);
`;

/** What `openSqlite` needs to create, check or migrate the file. */
export const TLSRPT_SCHEMA: SqliteSchema = Object.freeze({
  applicationId: TLSRPT_APPLICATION_ID,
  migrations: Object.freeze([{ version: 1, sql: V1 }]),
});

/** Every statement the store runs, prepared once per connection. */
export const TLSRPT_SQL = Object.freeze({
  // One statement per counter; RETURNING tells an insert (the row holds just the delta) from an update.
  upsertPolicy: `INSERT INTO tlsrpt_policy (day, policy_domain, policy_key, success_count, failure_count) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (day, policy_domain, policy_key) DO UPDATE SET success_count = success_count + excluded.success_count, failure_count = failure_count + excluded.failure_count
    RETURNING success_count, failure_count`,
  upsertFailure: `INSERT INTO tlsrpt_failure (day, policy_domain, policy_key, failure_key, overflow, count) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (day, policy_domain, policy_key, failure_key) DO UPDATE SET count = count + excluded.count
    RETURNING count`,
  countPolicies: 'SELECT count(*) FROM tlsrpt_policy WHERE day = ? AND policy_domain = ?',
  countDetails: 'SELECT count(*) FROM tlsrpt_failure WHERE day = ? AND policy_domain = ? AND policy_key = ? AND overflow = 0',
  deletePolicy: 'DELETE FROM tlsrpt_policy WHERE day = ? AND policy_domain = ? AND policy_key = ? RETURNING success_count + failure_count',
  deletePolicyFailures: 'DELETE FROM tlsrpt_failure WHERE day = ? AND policy_domain = ? AND policy_key = ?',
  deleteFailure: 'DELETE FROM tlsrpt_failure WHERE day = ? AND policy_domain = ? AND policy_key = ? AND failure_key = ? RETURNING count',
  policies: 'SELECT policy_key, success_count, failure_count FROM tlsrpt_policy WHERE day = ? AND policy_domain = ?',
  failures: 'SELECT policy_key, failure_key, count FROM tlsrpt_failure WHERE day = ? AND policy_domain = ?',
  deletePolicies: 'DELETE FROM tlsrpt_policy WHERE day = ? AND policy_domain = ?',
  deleteFailures: 'DELETE FROM tlsrpt_failure WHERE day = ? AND policy_domain = ?',
  report: 'SELECT unique_id, due_at, attempts, first_attempt_at, next_attempt_at, last_error, policies, owner, lease_until FROM tlsrpt_report WHERE day = ? AND policy_domain = ?',
  insertReport: 'INSERT INTO tlsrpt_report (day, policy_domain, unique_id, due_at, attempts, first_attempt_at, next_attempt_at, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
  updateDelivery: 'UPDATE tlsrpt_report SET attempts = ?, first_attempt_at = ?, next_attempt_at = ?, last_error = ? WHERE day = ? AND policy_domain = ?',
  freezeReport: 'UPDATE tlsrpt_report SET policies = ?, owner = ?, lease_until = ? WHERE day = ? AND policy_domain = ?',
  claimReport: 'UPDATE tlsrpt_report SET owner = ?, lease_until = ? WHERE day = ? AND policy_domain = ?',
  releaseReport: 'UPDATE tlsrpt_report SET owner = NULL, lease_until = NULL WHERE day = ? AND policy_domain = ? AND owner = ?',
  deleteReport: 'DELETE FROM tlsrpt_report WHERE day = ? AND policy_domain = ?',
  keys: 'SELECT day, policy_domain FROM tlsrpt_policy UNION SELECT day, policy_domain FROM tlsrpt_report ORDER BY 1, 2',
  expirePolicies: 'DELETE FROM tlsrpt_policy WHERE day <= ?',
  expireFailures: 'DELETE FROM tlsrpt_failure WHERE day <= ?',
  expireReports: 'DELETE FROM tlsrpt_report WHERE day <= ?',
} as const);

export type TlsRptStatement = keyof typeof TLSRPT_SQL;
