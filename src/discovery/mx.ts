/**
 * MX host discovery for a recipient domain (RFC 5321 §5.1, RFC 7505): one place that turns the MX answer into
 * "these hosts, in this order", so the engine's planner and the CLI's trace cannot disagree.
 */
import { normalizeDomainOrUndefined } from '../domain.js';
import type { MtaStsError } from '../errors.js';
import { queryDns, type MxRecord } from './resolver.js';

/**
 * What the MX query said:
 * - `ok`: MX records;
 * - `implicit`: no MX records (NODATA): the domain itself is the MX, preference 0 (RFC 5321 §5.1);
 * - `null-mx`: a single MX with an empty exchange: the domain accepts no mail (RFC 7505);
 * - `nxdomain`: the domain does not exist;
 * - `error`: a temporary DNS failure.
 */
export type MxLookup =
  | { kind: 'ok' | 'implicit'; records: MxRecord[] }
  | { kind: 'null-mx' | 'nxdomain' }
  | { kind: 'error'; error: MtaStsError };

/** RFC 7505: a single MX record whose exchange is empty (".") means the domain accepts no mail. */
export function isNullMx(records: readonly MxRecord[]): boolean {
  return records.length === 1 && (records[0]!.exchange === '' || records[0]!.exchange === '.');
}

/** Classifies MX records as `ok` or `null-mx`. */
export function classifyMxRecords(records: MxRecord[]): MxLookup {
  return isNullMx(records) ? { kind: 'null-mx' } : { kind: 'ok', records };
}

/**
 * Looks up the MX records of `domain` with `query` (e.g. `() => resolver.resolveMx(domain)`), bounded by
 * `deadlineMs`. Never throws.
 */
export async function lookupMx(query: () => Promise<MxRecord[]>, domain: string, deadlineMs: number, signal?: AbortSignal): Promise<MxLookup> {
  const answer = await queryDns(query, { name: domain, type: 'MX', domain }, deadlineMs, signal);
  if (answer.kind === 'error') return { kind: 'error', error: answer.error };
  if (answer.kind === 'not-found') return answer.nxdomain ? { kind: 'nxdomain' } : { kind: 'implicit', records: [{ exchange: domain, priority: 0 }] };
  return classifyMxRecords(answer.value);
}

/** An MX host in preference order; `invalid` marks an exchange that is not a host name (kept, never connected to). */
export interface OrderedMxHost {
  host: string;
  priority: number;
  invalid?: true;
}

/**
 * Orders MX records by preference (stable for equal preferences, as DNS returned them), normalises the names, drops
 * repeated hosts and keeps at most `max` records: the list a sender walks.
 */
export function orderMxHosts(records: readonly MxRecord[], max: number): OrderedMxHost[] {
  const ordered = records
    .map((r, i) => ({ r, i }))
    .sort((a, b) => a.r.priority - b.r.priority || a.i - b.i)
    .slice(0, max);
  const seen = new Set<string>();
  const hosts: OrderedMxHost[] = [];
  for (const { r } of ordered) {
    const host = normalizeDomainOrUndefined(r.exchange);
    if (host === undefined) {
      hosts.push({ host: String(r.exchange).slice(0, 255), priority: r.priority, invalid: true });
      continue;
    }
    if (seen.has(host)) continue;
    seen.add(host);
    hosts.push({ host, priority: r.priority });
  }
  return hosts;
}
