/**
 * The preview of the reports not sent yet (`reporter.pending()`): the counts in the store merged with those the
 * recorder has not written yet, for closed and current UTC days (RFC 8460 §4.1), each built as the §4.4 report it
 * would be now.
 */
import { mergeDomainDayCounts, totalSessions, type DomainDayCounts, type DomainDayKey } from './aggregate.js';
import type { TlsRptAggregator } from './recorder.js';
import type { ReporterSettings, TlsRptReporterOptions } from './reporter-options.js';
import type { PendingReport } from './reporter-events.js';
import { buildTlsRptReport, makeTlsRptReportId, utcDayKey, utcDayRange } from './report.js';

/** Every pending report, sorted by day, then policy domain. */
export async function pendingReports(options: TlsRptReporterOptions, settings: ReporterSettings, recorder: TlsRptAggregator): Promise<PendingReport[]> {
  const { store, now, submitter } = settings;
  const unflushed = new Map<string, DomainDayCounts>(recorder.unflushed().map((c) => [`${c.day}|${c.policyDomain}`, c]));
  const keys = new Map<string, DomainDayKey>();
  for (const key of await store.list()) keys.set(`${key.day}|${key.policyDomain}`, key);
  for (const [id, c] of unflushed) keys.set(id, { day: c.day, policyDomain: c.policyDomain });
  const today = utcDayKey(now());
  const out: PendingReport[] = [];
  for (const [id, key] of keys) {
    const stored = await store.get(key);
    const extra = unflushed.get(id);
    const counts = stored && extra ? mergeDomainDayCounts(stored, extra, recorder.limits) : (stored ?? extra);
    if (!counts || totalSessions(counts) === 0) continue;
    const dateRange = utcDayRange(key.day);
    const reportId = makeTlsRptReportId({ start: dateRange.start, policyDomain: key.policyDomain, submitter, uniqueId: stored?.delivery?.uniqueId ?? 'preview' });
    out.push({
      day: key.day,
      policyDomain: key.policyDomain,
      closed: key.day < today,
      report: buildTlsRptReport({ organizationName: options.organizationName, contactInfo: options.contactInfo, reportId, dateRange, policies: counts.policies }),
      ...(stored?.delivery ? { delivery: stored.delivery } : {}),
    });
  }
  return out.sort(byDayThenDomain);
}

/** Order of reports: by UTC day, then policy domain. */
export function byDayThenDomain(a: DomainDayKey, b: DomainDayKey): number {
  return a.day === b.day ? a.policyDomain.localeCompare(b.policyDomain) : a.day < b.day ? -1 : 1;
}
