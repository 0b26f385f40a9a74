/**
 * The report row of the SQLite TLS-RPT store (`tlsrpt_report`): its delivery state (RFC 8460 §5.1 `unique-id`,
 * §4.1 due time, §5.5 attempts) and, once claimed, the frozen policies it carries, read back validated.
 */
import { parseDomainDayCounts, type DomainDayCounts, type DomainDayKey } from '../tlsrpt/aggregate.js';
import type { DeliveryState } from '../tlsrpt/store.js';

/** A row of `tlsrpt_report` as SQLite returns it. */
export interface ReportRow {
  unique_id: string;
  due_at: number;
  attempts: number;
  first_attempt_at: number | null;
  next_attempt_at: number;
  last_error: string | null;
  policies: string | null;
  owner: string | null;
  lease_until: number | null;
}

/** A stored record does not hold what it should (edited or damaged file). */
export class CorruptRecordError extends Error {
  override readonly name = 'CorruptRecordError';
}

/** Runs a parse; any failure is a {@link CorruptRecordError}. */
export function parsing<T>(fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    throw new CorruptRecordError(error instanceof Error ? error.message : String(error), { cause: error });
  }
}

const UNIQUE_ID = /^[A-Za-z0-9]{1,64}$/;
const isTime = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

/** The delivery state of a report row (validated: the unique id goes into the report id and the file name, §5.1). */
export function toDeliveryState(row: ReportRow): DeliveryState {
  if (typeof row.unique_id !== 'string' || !UNIQUE_ID.test(row.unique_id)) throw new CorruptRecordError('malformed delivery state: unique_id');
  if (!isTime(row.due_at) || !isTime(row.attempts) || !isTime(row.next_attempt_at)) throw new CorruptRecordError('malformed delivery state: times');
  const state: DeliveryState = { uniqueId: row.unique_id, dueAt: row.due_at, attempts: row.attempts, nextAttemptAt: row.next_attempt_at };
  if (isTime(row.first_attempt_at)) state.firstAttemptAt = row.first_attempt_at;
  if (typeof row.last_error === 'string') state.lastError = row.last_error;
  return state;
}

/** The frozen `policies` of a claimed report. */
export function parseFrozenPolicies(key: DomainDayKey, json: string): DomainDayCounts {
  return parsing(() => parseDomainDayCounts({ day: key.day, policyDomain: key.policyDomain, policies: JSON.parse(json) as unknown }));
}
