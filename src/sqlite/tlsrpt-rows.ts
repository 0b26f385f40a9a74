/**
 * The counters of the SQLite TLS-RPT store as rows: adding a delta (the caps of `mergeDomainDayCounts` applied in
 * SQL, so that several processes adding to one record get the same result as one process would) and reading a
 * record back, validated.
 *
 * A policy (RFC 8460 §4.4 `policy`) is identified by `policyKey()`, a failure detail (§4.4 `failure-details`) by
 * `failureKey()`: JSON arrays of every field, read back into the report's fields. Past
 * `maxFailureDetailsPerPolicy` distinct details a failure is folded into the overflow detail of its result type
 * (totals stay exact); past `maxPoliciesPerDomain` policies the sessions of a new policy are dropped and counted.
 */
import type BetterSqlite3 from 'better-sqlite3';
import { failureKey, parseDomainDayCounts, policyKey, TRUNCATED_FAILURE_REASON, type AggregationLimits, type DomainDayCounts, type DomainDayKey } from '../tlsrpt/aggregate.js';
import type { TlsRptResultType } from '../errors.js';
import type { AggregatedFailure, AggregatedPolicy, TlsRptPolicyRef } from '../tlsrpt/types.js';
import type { SqliteDatabase } from './database.js';
import { parsing } from './tlsrpt-report-row.js';
import { TLSRPT_SQL, type TlsRptStatement } from './tlsrpt-schema.js';

/** The prepared statements of one connection. */
export type TlsRptStatements = { readonly [K in TlsRptStatement]: BetterSqlite3.Statement<unknown[]> };

export function prepareTlsRptStatements(db: SqliteDatabase): TlsRptStatements {
  const out = {} as Record<TlsRptStatement, BetterSqlite3.Statement<unknown[]>>;
  for (const [name, sql] of Object.entries(TLSRPT_SQL) as Array<[TlsRptStatement, string]>) out[name] = db.prepare(sql);
  return out;
}

/** For rewriting counts that were within the caps when they were added. */
const NO_CAPS = { maxPoliciesPerDomain: Number.MAX_SAFE_INTEGER, maxFailureDetailsPerPolicy: Number.MAX_SAFE_INTEGER } as AggregationLimits;

const isOverflow = (f: AggregatedFailure): boolean => f.failureReasonCode === TRUNCATED_FAILURE_REASON && Object.keys(f).length === 3;

/**
 * Adds `delta` to the counters of its record (inside a write transaction, so the caps see every process's rows).
 * Returns the number of sessions dropped because the record already held `maxPoliciesPerDomain` other policies.
 */
export function addCounts(s: TlsRptStatements, delta: DomainDayCounts, limits: AggregationLimits): number {
  const { day, policyDomain: domain } = delta;
  const newPolicies: string[] = [];
  const newDetails = new Map<string, Array<{ failure: string; resultType: TlsRptResultType }>>();
  for (const p of delta.policies) {
    const policy = policyKey(p.policy);
    const [success, failure] = s.upsertPolicy.raw().get(day, domain, policy, p.successCount, p.failureCount) as [number, number];
    if (success === p.successCount && failure === p.failureCount) newPolicies.push(policy);
    for (const f of p.failures) {
      if (f.count <= 0) continue;
      const failureId = failureKey(f);
      const overflow = isOverflow(f);
      const count = s.upsertFailure.pluck().get(day, domain, policy, failureId, overflow ? 1 : 0, f.count) as number;
      if (count === f.count && !overflow) newDetails.set(policy, [...(newDetails.get(policy) ?? []), { failure: failureId, resultType: f.resultType }]);
    }
  }
  const dropped = enforcePolicyCap(s, delta, newPolicies, limits);
  for (const [policy, details] of newDetails) enforceDetailCap(s, delta, policy, details, limits);
  return dropped;
}

/** Past `maxPoliciesPerDomain`, the policies this delta added are taken out again (last first); returns their sessions. */
function enforcePolicyCap(s: TlsRptStatements, key: DomainDayKey, added: string[], limits: AggregationLimits): number {
  if (added.length === 0) return 0;
  const excess = (s.countPolicies.pluck().get(key.day, key.policyDomain) as number) - limits.maxPoliciesPerDomain;
  if (excess <= 0) return 0;
  let dropped = 0;
  for (const policy of added.slice(-excess)) {
    dropped += (s.deletePolicy.pluck().get(key.day, key.policyDomain, policy) as number | undefined) ?? 0;
    s.deletePolicyFailures.run(key.day, key.policyDomain, policy);
  }
  return dropped;
}

/** Past `maxFailureDetailsPerPolicy`, the details this delta added are folded into the overflow detail of their result type. */
function enforceDetailCap(s: TlsRptStatements, key: DomainDayKey, policy: string, added: Array<{ failure: string; resultType: TlsRptResultType }>, limits: AggregationLimits): void {
  const excess = (s.countDetails.pluck().get(key.day, key.policyDomain, policy) as number) - limits.maxFailureDetailsPerPolicy;
  if (excess <= 0) return;
  for (const detail of added.slice(-excess)) {
    const count = s.deleteFailure.pluck().get(key.day, key.policyDomain, policy, detail.failure) as number | undefined;
    if (count === undefined) continue; // its policy was dropped
    // Totals stay exact: the sessions are counted under "details truncated" (see TRUNCATED_FAILURE_REASON).
    s.upsertFailure.pluck().get(key.day, key.policyDomain, policy, failureKey({ resultType: detail.resultType, failureReasonCode: TRUNCATED_FAILURE_REASON }), 1, count);
  }
}

interface PolicyRow {
  policy_key: string;
  success_count: number;
  failure_count: number;
}

interface FailureRow {
  policy_key: string;
  failure_key: string;
  count: number;
}

/** The policy of a `policyKey()` (parsed and checked by `parseDomainDayCounts` afterwards). */
function policyOf(key: string): TlsRptPolicyRef {
  const value = JSON.parse(key) as unknown;
  if (!Array.isArray(value) || value.length !== 4) throw new TypeError('malformed policy key');
  const [type, domain, policyString, mxHost] = value as [TlsRptPolicyRef['type'], string, string[] | null, string[] | null];
  return { type, domain, ...(policyString !== null ? { policyString } : {}), ...(mxHost !== null ? { mxHost } : {}) };
}

const FAILURE_FIELDS = ['sendingMtaIp', 'receivingMxHostname', 'receivingMxHelo', 'receivingIp', 'additionalInformation', 'failureReasonCode'] as const;

/** The failure detail of a `failureKey()` (empty fields are absent ones). */
function failureOf(key: string, count: number): AggregatedFailure {
  const value = JSON.parse(key) as unknown;
  if (!Array.isArray(value) || value.length !== 7 || !value.every((v) => typeof v === 'string')) throw new TypeError('malformed failure key');
  const out: AggregatedFailure = { resultType: value[0] as TlsRptResultType, count };
  FAILURE_FIELDS.forEach((field, i) => {
    if (value[i + 1] !== '') out[field] = value[i + 1] as string;
  });
  return out;
}

/**
 * The live counters of a record, validated like any untrusted input (`parseDomainDayCounts`); `undefined` when
 * the record has none. Throws a `CorruptRecordError` when a row does not hold what it should.
 */
export function readCounts(s: TlsRptStatements, key: DomainDayKey): DomainDayCounts | undefined {
  const policyRows = s.policies.all(key.day, key.policyDomain) as PolicyRow[];
  if (policyRows.length === 0) return undefined;
  const failureRows = s.failures.all(key.day, key.policyDomain) as FailureRow[];
  return parsing(() => {
    const byKey = new Map<string, AggregatedPolicy>();
    for (const row of policyRows) byKey.set(row.policy_key, { policy: policyOf(row.policy_key), successCount: row.success_count, failureCount: row.failure_count, failures: [] });
    for (const row of failureRows) {
      const target = byKey.get(row.policy_key);
      if (!target) throw new TypeError('a failure detail without its policy');
      target.failures.push(failureOf(row.failure_key, row.count));
    }
    return parseDomainDayCounts({ day: key.day, policyDomain: key.policyDomain, policies: [...byKey.values()] });
  });
}

/** Removes the live counters of a record. */
export function deleteCounts(s: TlsRptStatements, key: DomainDayKey): void {
  s.deletePolicies.run(key.day, key.policyDomain);
  s.deleteFailures.run(key.day, key.policyDomain);
}

/** Replaces the live counters of a record with `counts` (caps were applied when they were added). */
export function replaceCounts(s: TlsRptStatements, counts: DomainDayCounts): void {
  deleteCounts(s, counts);
  addCounts(s, counts, NO_CAPS);
}
