/**
 * The aggregation data model shared by the recorder, the stores and the reporter, and the pure merge that keeps it
 * bounded.
 *
 * RFC 8460 reports count sessions per policy domain and per period (a UTC day, §4.1), per applied policy (§4.4
 * `policy`), with per-failure-detail counts (§4.4 `failure-details`). One {@link DomainDayCounts} holds exactly
 * what one report needs. Only counts and the RFC's session metadata are kept: no message content and no address
 * (the §4.4 report has no field for them, and a report must not leak them).
 *
 * Caps (see {@link AggregationLimits}) bound memory and store size:
 * - distinct failure details per policy: past the cap, a failure is folded into one overflow detail per result
 *   type, which keeps only `result-type` and has `failure-reason-code` {@link TRUNCATED_FAILURE_REASON}; so the
 *   totals stay exact and the report says that details were truncated (`additional-information` is not used for
 *   this because §4.4 defines it as a URI);
 * - distinct policies per domain and day, and policy domains per day: past the cap, outcomes are dropped and
 *   counted in the recorder's stats (a report cannot carry counts of another policy or domain);
 * - failure fields: checked for their RFC 8460 §4.4 syntax (`failure-fields.ts`; invalid ones are left out), cut to
 *   `maxFieldLength` (the reason code to at most 255 characters); policy text to `maxPolicyStringLength`.
 */
import { MtaStsError, TLSRPT_RESULT_TYPES } from '../errors.js';
import type { TlsRptResultType } from '../errors.js';
import { copyFailureFields, type FailureFieldName } from './failure-fields.js';
import type { AggregatedFailure, AggregatedPolicy, TlsRptFailure, TlsRptPolicyRef } from './types.js';

/** Everything counted for one policy domain on one UTC day: the content of one report. */
export interface DomainDayCounts {
  /** UTC day, `YYYY-MM-DD`. */
  day: string;
  /** Normalised policy domain (A-label, lower case). */
  policyDomain: string;
  policies: AggregatedPolicy[];
}

/** Identifies one {@link DomainDayCounts}. */
export interface DomainDayKey {
  day: string;
  policyDomain: string;
}

/** Memory and size caps of aggregation. */
export interface AggregationLimits {
  /** Policy domains recorded per UTC day (per process); outcomes for more are dropped. Default 10 000. */
  maxDomainsPerDay: number;
  /** Distinct policies per domain and day; outcomes under more are dropped. Default 16. */
  maxPoliciesPerDomain: number;
  /** Distinct failure details per policy; more are folded into per-result-type overflow details. Default 100. */
  maxFailureDetailsPerPolicy: number;
  /** Longest failure field (IP, host names, reason code, URI), in characters. Default 255. */
  maxFieldLength: number;
  /** Longest policy text (sum of `policyString` lines plus `mxHost` patterns), in characters. Default 65 536. */
  maxPolicyStringLength: number;
}

/** Default {@link AggregationLimits}. */
export const DEFAULT_AGGREGATION_LIMITS: Readonly<AggregationLimits> = Object.freeze({
  maxDomainsPerDay: 10_000,
  maxPoliciesPerDomain: 16,
  maxFailureDetailsPerPolicy: 100,
  maxFieldLength: 255,
  maxPolicyStringLength: 65_536,
});

/** `failure-reason-code` of the overflow detail that collects failures past `maxFailureDetailsPerPolicy`. */
export const TRUNCATED_FAILURE_REASON = 'mta-sts-sender: failure details truncated; distinct-detail cap reached';

/** Fills missing limits with the defaults and checks them. */
export function resolveLimits(limits: Partial<AggregationLimits> = {}): AggregationLimits {
  const out = { ...DEFAULT_AGGREGATION_LIMITS, ...stripUndefined(limits) };
  for (const [key, value] of Object.entries(out)) {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) throw new MtaStsError('MTASTS_INVALID_OPTIONS', `option limits.${key} must be a positive integer, got ${JSON.stringify(value)}`, { details: { option: `limits.${key}` } });
  }
  return out;
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Stable identity of a policy: type, domain, policy text and MX patterns (RFC 8460 §4.4 `policy`). */
export function policyKey(policy: TlsRptPolicyRef): string {
  return JSON.stringify([policy.type, policy.domain, policy.policyString ?? null, policy.mxHost ?? null]);
}

/** Stable identity of a failure detail: every failure field (RFC 8460 §4.4 `failure-details`). */
export function failureKey(failure: TlsRptFailure): string {
  return JSON.stringify([
    failure.resultType,
    failure.sendingMtaIp ?? '',
    failure.receivingMxHostname ?? '',
    failure.receivingMxHelo ?? '',
    failure.receivingIp ?? '',
    failure.additionalInformation ?? '',
    failure.failureReasonCode ?? '',
  ]);
}

/**
 * Copies the known failure fields only, each checked for its RFC 8460 §4.4 syntax (`failure-fields.ts`): an invalid
 * value (an IP field that is no IP address, a host name that is no host name, a reason code with control
 * characters) is left out and passed to `onInvalid`; anything else a caller put on the object (a recipient, a
 * message) is never looked at. An unknown result type becomes `validation-failure`, the §4.3.3 catch-all for
 * failures that fit no other category.
 */
export function sanitizeFailure(failure: TlsRptFailure | undefined, limits: AggregationLimits, onInvalid?: (field: FailureFieldName) => void): TlsRptFailure {
  const resultType: TlsRptResultType =
    failure && TLSRPT_RESULT_TYPES.includes(failure.resultType) ? failure.resultType : 'validation-failure';
  if (!failure) return { resultType };
  return { resultType, ...copyFailureFields(failure, limits.maxFieldLength, onInvalid) };
}

/**
 * Copies the known policy fields only. `policyString` elements that hold several lines are split into lines (the
 * report carries one array element per line, §4.4), trailing blanks and empty lines dropped; the text is cut to
 * `maxPolicyStringLength`.
 */
export function sanitizePolicy(policy: TlsRptPolicyRef, policyDomain: string, limits: AggregationLimits): TlsRptPolicyRef {
  const out: TlsRptPolicyRef = { type: policy.type, domain: policyDomain };
  let budget = limits.maxPolicyStringLength;
  const take = (lines: unknown): string[] | undefined => {
    if (!Array.isArray(lines)) return undefined;
    const kept: string[] = [];
    for (const element of lines) {
      if (typeof element !== 'string') continue;
      for (const raw of element.split(/\r?\n/)) {
        const line = raw.replace(/\s+$/, '');
        if (line === '' || line.length > budget) continue;
        budget -= line.length;
        kept.push(line);
      }
    }
    return kept;
  };
  const policyString = take(policy.policyString);
  const mxHost = take(policy.mxHost);
  if (policyString) out.policyString = policyString;
  if (mxHost) out.mxHost = mxHost;
  return out;
}

/** A mutable, Map-backed accumulator for one {@link DomainDayCounts}, enforcing the per-domain caps. */
export class DomainDayAccumulator {
  readonly day: string;
  readonly policyDomain: string;
  private readonly policies = new Map<string, { policy: TlsRptPolicyRef; successCount: number; failureCount: number; failures: Map<string, AggregatedFailure>; regular: number }>();

  constructor(day: string, policyDomain: string) {
    this.day = day;
    this.policyDomain = policyDomain;
  }

  /** True when nothing was counted. */
  get empty(): boolean {
    return this.policies.size === 0;
  }

  /**
   * Adds counts for one policy. Returns false (and changes nothing) when the policy is new and the domain already
   * has `maxPoliciesPerDomain` policies.
   */
  add(policy: TlsRptPolicyRef, successCount: number, failures: readonly AggregatedFailure[], limits: AggregationLimits, failureCount?: number): boolean {
    const key = policyKey(policy);
    let entry = this.policies.get(key);
    if (!entry) {
      if (this.policies.size >= limits.maxPoliciesPerDomain) return false;
      entry = { policy, successCount: 0, failureCount: 0, failures: new Map(), regular: 0 };
      this.policies.set(key, entry);
    }
    entry.successCount += successCount;
    let counted = 0;
    for (const failure of failures) {
      if (failure.count <= 0) continue;
      counted += failure.count;
      let fkey = failureKey(failure);
      const existing = entry.failures.get(fkey);
      if (existing) {
        existing.count += failure.count;
        continue;
      }
      const isOverflow = failure.failureReasonCode === TRUNCATED_FAILURE_REASON && Object.keys(failure).length === 3;
      if (!isOverflow && entry.regular >= limits.maxFailureDetailsPerPolicy) {
        // Cap reached: fold into the overflow detail of this result type, so totals stay exact.
        const overflow: AggregatedFailure = { resultType: failure.resultType, failureReasonCode: TRUNCATED_FAILURE_REASON, count: 0 };
        fkey = failureKey(overflow);
        const target = entry.failures.get(fkey) ?? overflow;
        target.count += failure.count;
        entry.failures.set(fkey, target);
        continue;
      }
      if (!isOverflow) entry.regular += 1;
      entry.failures.set(fkey, { ...failure });
    }
    entry.failureCount += failureCount ?? counted;
    return true;
  }

  /** Adds everything of `counts` (policies over the cap are dropped; returns how many sessions were dropped). */
  addAll(counts: DomainDayCounts, limits: AggregationLimits): number {
    let dropped = 0;
    for (const p of counts.policies) {
      if (!this.add(p.policy, p.successCount, p.failures, limits, p.failureCount)) dropped += p.successCount + p.failureCount;
    }
    return dropped;
  }

  /** A plain, JSON-safe copy. */
  toCounts(): DomainDayCounts {
    return {
      day: this.day,
      policyDomain: this.policyDomain,
      policies: [...this.policies.values()].map((e) => ({
        policy: structuredClone(e.policy),
        successCount: e.successCount,
        failureCount: e.failureCount,
        failures: [...e.failures.values()].map((f) => ({ ...f })),
      })),
    };
  }
}

/**
 * Merges two {@link DomainDayCounts} of the same day and domain under `limits` (pure). This is what a store does
 * on `merge`; a Redis store would run it in a WATCH/MULTI loop or port it to a Lua script.
 */
export function mergeDomainDayCounts(base: DomainDayCounts | undefined, delta: DomainDayCounts, limits: AggregationLimits): DomainDayCounts {
  const acc = new DomainDayAccumulator(delta.day, delta.policyDomain);
  if (base) acc.addAll(base, limits);
  acc.addAll(delta, limits);
  return acc.toCounts();
}

/**
 * `current` minus `sent` (pure): what was counted for the day after `sent` was read, e.g. late sessions merged by
 * another process while `sent` was being delivered. Policies and failure details are matched by identity; counts
 * never go below zero; what becomes empty is left out. A store's `settle` keeps the remainder as a new record.
 */
export function subtractDomainDayCounts(current: DomainDayCounts, sent: DomainDayCounts): DomainDayCounts {
  const sentPolicies = new Map(sent.policies.map((p) => [policyKey(p.policy), p]));
  const policies: AggregatedPolicy[] = [];
  for (const p of current.policies) {
    const s = sentPolicies.get(policyKey(p.policy));
    if (!s) {
      policies.push(structuredClone(p));
      continue;
    }
    const sentFailures = new Map(s.failures.map((f) => [failureKey(f), f.count]));
    const failures = p.failures.map((f) => ({ ...f, count: Math.max(0, f.count - (sentFailures.get(failureKey(f)) ?? 0)) })).filter((f) => f.count > 0);
    const successCount = Math.max(0, p.successCount - s.successCount);
    const failureCount = Math.max(0, p.failureCount - s.failureCount);
    if (successCount + failureCount > 0) policies.push({ policy: structuredClone(p.policy), successCount, failureCount, failures });
  }
  return { day: current.day, policyDomain: current.policyDomain, policies };
}

/** Total sessions (successful + failed) in `counts`. */
export function totalSessions(counts: DomainDayCounts): number {
  return counts.policies.reduce((n, p) => n + p.successCount + p.failureCount, 0);
}

/**
 * Checks that an untrusted value (a stored row, a Redis value) is a well-formed {@link DomainDayCounts} and returns
 * a clean copy. Throws a `TypeError` describing the first problem.
 */
export function parseDomainDayCounts(value: unknown): DomainDayCounts {
  const fail = (what: string): never => {
    throw new TypeError(`malformed TLS-RPT counts: ${what}`);
  };
  if (typeof value !== 'object' || value === null) return fail('not an object');
  const v = value as Record<string, unknown>;
  if (typeof v.day !== 'string' || !/^\d{4}-\d{2}-\d{2}$/.test(v.day)) fail('day');
  if (typeof v.policyDomain !== 'string' || v.policyDomain === '') fail('policyDomain');
  if (!Array.isArray(v.policies)) return fail('policies');
  const isCount = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
  const isStrings = (a: unknown): a is string[] => Array.isArray(a) && a.every((s) => typeof s === 'string');
  const optString = (s: unknown): boolean => s === undefined || typeof s === 'string';
  const policies: AggregatedPolicy[] = v.policies.map((raw: unknown, i: number): AggregatedPolicy => {
    if (typeof raw !== 'object' || raw === null) return fail(`policies[${i}]`);
    const p = raw as Record<string, unknown>;
    const policy = p.policy as Record<string, unknown> | null | undefined;
    if (typeof policy !== 'object' || policy === null) return fail(`policies[${i}].policy`);
    if (policy.type !== 'sts' && policy.type !== 'tlsa' && policy.type !== 'no-policy-found') return fail(`policies[${i}].policy.type`);
    if (typeof policy.domain !== 'string') return fail(`policies[${i}].policy.domain`);
    if (policy.policyString !== undefined && !isStrings(policy.policyString)) return fail(`policies[${i}].policy.policyString`);
    if (policy.mxHost !== undefined && !isStrings(policy.mxHost)) return fail(`policies[${i}].policy.mxHost`);
    if (!isCount(p.successCount) || !isCount(p.failureCount)) return fail(`policies[${i}] counts`);
    if (!Array.isArray(p.failures)) return fail(`policies[${i}].failures`);
    const failures = p.failures.map((rf: unknown, j: number): AggregatedFailure => {
      const f = rf as Record<string, unknown> | null;
      if (typeof f !== 'object' || f === null) return fail(`policies[${i}].failures[${j}]`);
      if (!TLSRPT_RESULT_TYPES.includes(f.resultType as TlsRptResultType)) return fail(`policies[${i}].failures[${j}].resultType`);
      if (!isCount(f.count)) return fail(`policies[${i}].failures[${j}].count`);
      for (const k of ['sendingMtaIp', 'receivingMxHostname', 'receivingMxHelo', 'receivingIp', 'additionalInformation', 'failureReasonCode']) {
        if (!optString(f[k])) fail(`policies[${i}].failures[${j}].${k}`);
      }
      const out: AggregatedFailure = { resultType: f.resultType as TlsRptResultType, count: f.count };
      if (typeof f.sendingMtaIp === 'string') out.sendingMtaIp = f.sendingMtaIp;
      if (typeof f.receivingMxHostname === 'string') out.receivingMxHostname = f.receivingMxHostname;
      if (typeof f.receivingMxHelo === 'string') out.receivingMxHelo = f.receivingMxHelo;
      if (typeof f.receivingIp === 'string') out.receivingIp = f.receivingIp;
      if (typeof f.additionalInformation === 'string') out.additionalInformation = f.additionalInformation;
      if (typeof f.failureReasonCode === 'string') out.failureReasonCode = f.failureReasonCode;
      return out;
    });
    const ref: TlsRptPolicyRef = { type: policy.type, domain: policy.domain };
    if (policy.policyString !== undefined) ref.policyString = [...(policy.policyString as string[])];
    if (policy.mxHost !== undefined) ref.mxHost = [...(policy.mxHost as string[])];
    return { policy: ref, successCount: p.successCount, failureCount: p.failureCount, failures };
  });
  return { day: v.day as string, policyDomain: v.policyDomain as string, policies };
}
