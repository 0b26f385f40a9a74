/**
 * The Redis TLS-RPT store's record format on the client side: a delta as the merge script reads it, a record's
 * hash fields decoded and validated, and the counts of a merge Redis applied although the client saw it fail.
 */
import { createHash } from 'node:crypto';
import { failureKey, parseDomainDayCounts, policyKey, TRUNCATED_FAILURE_REASON, type DomainDayCounts, type DomainDayKey } from '../tlsrpt/aggregate.js';
import type { DeliveryState, StoredDomainDay } from '../tlsrpt/store.js';
import type { AggregatedPolicy } from '../tlsrpt/types.js';

const hashOf = (text: string): string => createHash('sha256').update(text).digest('hex').slice(0, 24);

/** The script's view of a delta: hashed identities, counts as strings. */
export function encodeDelta(delta: DomainDayCounts): unknown[] {
  return delta.policies.map((p) => ({
    ph: hashOf(policyKey(p.policy)),
    p: JSON.stringify(p.policy),
    s: String(p.successCount),
    f: String(p.failureCount),
    d: p.failures
      .filter((f) => f.count > 0)
      .map((f) => {
        const { count, ...detail } = f;
        const overflow = { resultType: f.resultType, failureReasonCode: TRUNCATED_FAILURE_REASON };
        return { fh: hashOf(failureKey(f)), j: JSON.stringify(detail), c: String(count), ov: f.failureReasonCode === TRUNCATED_FAILURE_REASON && Object.keys(f).length === 3, o: hashOf(failureKey(overflow)), oj: JSON.stringify(overflow) };
      }),
  }));
}

/**
 * `delta` without the counts of `applied` (a merge Redis applied although the caller saw it fail; the recorder folded
 * those counts back into `delta`). A failure detail the recorder folded into its overflow detail is taken from there.
 */
export function subtractCounts(delta: DomainDayCounts, applied: DomainDayCounts): DomainDayCounts {
  const out = structuredClone(delta);
  for (const a of applied.policies) {
    const target = out.policies.find((p) => policyKey(p.policy) === policyKey(a.policy));
    if (!target) continue;
    target.successCount = Math.max(0, target.successCount - a.successCount);
    target.failureCount = Math.max(0, target.failureCount - a.failureCount);
    for (const af of a.failures) {
      let left = af.count;
      const same = target.failures.find((f) => failureKey(f) === failureKey(af));
      const overflow = target.failures.find((f) => f.resultType === af.resultType && f.failureReasonCode === TRUNCATED_FAILURE_REASON && Object.keys(f).length === 3);
      for (const f of [same, overflow]) {
        if (!f || left === 0) continue;
        const take = Math.min(f.count, left);
        f.count -= take;
        left -= take;
      }
    }
    target.failures = target.failures.filter((f) => f.count > 0);
  }
  out.policies = out.policies.filter((p) => p.successCount + p.failureCount > 0 || p.failures.length > 0);
  return out;
}

/** Rebuilds and validates a record from its hash fields; throws a `TypeError` when malformed. */
export function decodeRecord(key: DomainDayKey, fields: Map<string, string>): StoredDomainDay {
  if (fields.get('v') !== '1') throw new TypeError(`unknown record format ${JSON.stringify(fields.get('v'))}`);
  const count = (field: string): number => {
    const n = Number(fields.get(field) ?? '0');
    if (!Number.isSafeInteger(n) || n < 0) throw new TypeError(`bad count in ${field}`);
    return n;
  };
  const policies: AggregatedPolicy[] = [];
  for (const [field, json] of fields) {
    if (!field.startsWith('p:')) continue;
    const ph = field.slice(2);
    const failures = [];
    for (const [df, dj] of fields) {
      if (!df.startsWith(`d:${ph}:`)) continue;
      const c = count(`c:${df.slice(2)}`);
      if (c > 0) failures.push({ ...(JSON.parse(dj) as object), count: c });
    }
    const successCount = count(`s:${ph}`);
    const failureCount = count(`f:${ph}`);
    if (successCount + failureCount === 0 && failures.length === 0) continue;
    policies.push({ policy: JSON.parse(json), successCount, failureCount, failures } as AggregatedPolicy);
  }
  const counts = parseDomainDayCounts({ day: key.day, policyDomain: key.policyDomain, policies });
  const delivery = fields.get('delivery');
  return { ...counts, ...(delivery !== undefined ? { delivery: parseDelivery(JSON.parse(delivery)) } : {}) };
}

function parseDelivery(value: unknown): DeliveryState {
  const v = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  const num = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n);
  if (typeof v.uniqueId !== 'string' || !/^[A-Za-z0-9]{1,64}$/.test(v.uniqueId)) throw new TypeError('malformed delivery state: uniqueId');
  if (!num(v.dueAt) || !num(v.attempts) || !num(v.nextAttemptAt)) throw new TypeError('malformed delivery state: times');
  const out: DeliveryState = { uniqueId: v.uniqueId, dueAt: v.dueAt, attempts: v.attempts, nextAttemptAt: v.nextAttemptAt };
  if (num(v.firstAttemptAt)) out.firstAttemptAt = v.firstAttemptAt;
  if (typeof v.lastError === 'string') out.lastError = v.lastError.slice(0, 1000);
  return out;
}
