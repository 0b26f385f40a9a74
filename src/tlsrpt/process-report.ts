/**
 * One report's turn: for a (UTC day, policy domain) with counts, decide whether it is due (RFC 8460 §4.1), find its
 * destinations (§3), build and gzip it (§4.4, §5.2), deliver it (§5.3, §5.4), and update the store: removed once
 * sent, skipped or dropped; rescheduled with backoff after a failure (§5.5). Each outcome is pushed to the
 * {@link FlushResult} and emitted as an event.
 */
import { totalSessions, type DomainDayKey } from './aggregate.js';
import { chooseDestinations, destinationLabel, type TlsRptRefusalReason } from './destination-policy.js';
import { lookupTlsRptRecord, type TlsRptDestination } from './discovery.js';
import { TlsRptError, toTlsRptError } from './errors.js';
import { DAY_MS, type ReporterSettings, type TlsRptReporterOptions } from './reporter-options.js';
import type { FlushResult, TlsRptDestinationFailure, TlsRptDestinationRefusedEvent, TlsRptDestinationsLimitedEvent, TlsRptDroppedEvent, TlsRptFailedEvent, TlsRptNotAttemptedEvent, TlsRptSentEvent, TlsRptSkippedNoRecordEvent, TlsRptSkippedNoTransportEvent } from './reporter-events.js';
import { isUsageError, type ReportSender } from './report-sender.js';
import { buildTlsRptReport, gzipTlsRptReport, makeTlsRptReportId, randomUniqueId, tlsRptFileName, utcDayRange, utcDayStart } from './report.js';
import type { DeliveryState, StoredDomainDay } from './store.js';
import type { TlsRptReport } from './types.js';

/** What processing a report needs from its reporter. */
export interface ReportProcessor {
  options: TlsRptReporterOptions;
  settings: ReporterSettings;
  sender: ReportSender;
}

/** One report being processed: its key, stored counts, delivery state, the time of this attempt and its id. */
interface ReportTurn {
  p: ReportProcessor;
  key: DomainDayKey;
  record: StoredDomainDay;
  state: DeliveryState;
  t: number;
  reportId: string;
  result: FlushResult;
}

/** One (day, domain): decides, delivers, updates the store, records the outcome in `result`. */
export async function processReport(p: ReportProcessor, key: DomainDayKey, force: boolean, result: FlushResult): Promise<void> {
  const { store, now } = p.settings;
  const found = await store.get(key);
  if (!found) return;
  if (totalSessions(found) === 0) {
    await store.delete(key);
    return;
  }
  const dayStart = utcDayStart(key.day);
  const scheduled = await deliveryState(p, key, found, dayStart);
  const t = now();
  if (!force && t < scheduled.nextAttemptAt) return;
  if (!store.claim) return attempt(p, key, found, scheduled, t, result);
  // Several senders may share the store: the one whose claim succeeds sends, with the stored unique id and counts.
  const claimed = await store.claim(key);
  if (!claimed?.delivery) return;
  try {
    if (!force && t < claimed.delivery.nextAttemptAt) return;
    await attempt(p, key, claimed, claimed.delivery, t, result);
  } finally {
    await store.release?.(key).catch(() => undefined);
  }
}

/** One attempt at delivering a report that is due (§3 destinations, §4.4 report, §5 delivery). */
async function attempt(p: ReportProcessor, key: DomainDayKey, record: StoredDomainDay, state: DeliveryState, t: number, result: FlushResult): Promise<void> {
  const reportId = makeTlsRptReportId({ start: new Date(utcDayStart(key.day)), policyDomain: key.policyDomain, submitter: p.settings.submitter, uniqueId: state.uniqueId });
  const turn: ReportTurn = { p, key, record, state, t, reportId, result };
  const usable = await usableDestinations(turn);
  if (!usable) return;
  const built = await buildReport(turn);
  if (!built) return;
  const outcome = await p.sender.deliverAll(usable, built.report, built.gz, key, built.filename);
  // Refused at connect time: the name resolved to an internal address.
  for (const f of outcome.failures) if (f.error.code === 'TLSRPT_DESTINATION_REFUSED') refused(turn, f.uri, f.error);
  await settle(turn, built.report, outcome.delivered, outcome.failures);
}

/** The report's delivery state, created (and stored) when the report first becomes due. */
async function deliveryState(p: ReportProcessor, key: DomainDayKey, record: StoredDomainDay, dayStart: number): Promise<DeliveryState> {
  if (record.delivery) return record.delivery;
  const { delayMs, jitterMs, random, store } = p.settings;
  // §4.1: send after the day closes, with a random delay so receivers are not flooded at midnight.
  const dueAt = dayStart + DAY_MS + delayMs + Math.floor(random() * jitterMs);
  const state: DeliveryState = { uniqueId: randomUniqueId(), dueAt, attempts: 0, nextAttemptAt: dueAt };
  await store.setDelivery(key, state);
  return state;
}

/**
 * §3: the report destinations come from the _smtp._tls TXT record of the policy domain; those this reporter can
 * use, or undefined when the report was skipped, kept or rescheduled.
 */
async function usableDestinations(turn: ReportTurn): Promise<TlsRptDestination[] | undefined> {
  const { p, key } = turn;
  let rua: TlsRptDestination[];
  try {
    const found = await lookupTlsRptRecord(key.policyDomain, { resolver: p.settings.resolver, timeoutMs: p.settings.dnsTimeoutMs });
    if (!found) return void (await skip(turn, { type: 'skipped-no-record', day: key.day, policyDomain: key.policyDomain }));
    rua = found.rua;
  } catch (error) {
    const e = toTlsRptError(error, 'TLSRPT_DNS_TEMPORARY', `TLSRPT lookup for ${key.policyDomain} failed`);
    // A temporary DNS failure is retried; a broken or ambiguous record means "no TLSRPT" (§3).
    if (e.temporary) return void (await fail(turn, e, []));
    return void (await skip(turn, { type: 'skipped-no-record', day: key.day, policyDomain: key.policyDomain, error: e }));
  }
  const allowed = await allowedDestinations(turn, rua);
  if (!allowed) return undefined;
  const usable = allowed.filter((d) => d.kind === 'https' || p.options.mailTransport !== undefined);
  if (usable.length > 0) return usable;
  const event: TlsRptSkippedNoTransportEvent = { type: 'skipped-no-transport', day: key.day, policyDomain: key.policyDomain, uris: allowed.map(destinationLabel) };
  if (p.options.keepUndeliverable !== true) return void (await skip(turn, event));
  // Kept for a run with a mail transport: neither removed nor counted as an attempt.
  const kept: TlsRptSkippedNoTransportEvent = { ...event, kept: true };
  p.settings.logger?.info?.(`tlsrpt: report for ${key.policyDomain} ${key.day} kept: only mailto: destinations and no mailTransport`);
  turn.result.skipped.push(kept);
  p.settings.emit(kept);
  return undefined;
}

/**
 * The destinations this report may go to: duplicates removed, at most `maxDestinationsPerReport`, internal targets
 * refused (each with an event); undefined when every one was refused (the report is skipped: §3 no usable
 * destination).
 */
async function allowedDestinations(turn: ReportTurn, rua: TlsRptDestination[]): Promise<TlsRptDestination[] | undefined> {
  const { p, key } = turn;
  const chosen = chooseDestinations(rua, p.settings);
  if (chosen.overLimit > 0) limited(turn, chosen.published, chosen.duplicates, chosen.overLimit);
  for (const r of chosen.refused) refused(turn, destinationLabel(r.destination), r.error);
  if (chosen.use.length > 0) return chosen.use;
  const reasons = [...new Set(chosen.refused.map((r) => String(r.error.details.reason)))].join(', ');
  const error = new TlsRptError('TLSRPT_DESTINATION_REFUSED', `every report destination of ${key.policyDomain} was refused (${reasons})`, {
    domain: key.policyDomain,
    details: { reason: 'all-refused', refused: chosen.refused.length },
  });
  return void (await skip(turn, { type: 'skipped-no-record', day: key.day, policyDomain: key.policyDomain, error }));
}

/** The record named more destinations than `maxDestinationsPerReport` (RFC 8460 §7 "Reports as DDoS"). */
function limited(turn: ReportTurn, published: number, duplicates: number, leftOut: number): void {
  const { p, key, reportId } = turn;
  const limit = p.settings.maxDestinationsPerReport;
  const event: TlsRptDestinationsLimitedEvent = { type: 'destinations-limited', day: key.day, policyDomain: key.policyDomain, reportId, published, duplicates, limit, leftOut };
  p.settings.logger?.warn?.(`tlsrpt: ${key.policyDomain} publishes ${published} report destinations (${duplicates} duplicates): the report for ${key.day} goes to the first ${limit}, ${leftOut} left out (maxDestinationsPerReport)`);
  (turn.result.limited ??= []).push(event);
  p.settings.emit(event);
}

/** A destination refused because it points inside the sender's network (see `allowInternalDestinations`). */
function refused(turn: ReportTurn, destination: string, error: TlsRptError): void {
  const { p, key, reportId } = turn;
  const reason = (error.details.reason ?? 'internal-address') as TlsRptRefusalReason;
  const event: TlsRptDestinationRefusedEvent = { type: 'destination-refused', day: key.day, policyDomain: key.policyDomain, reportId, destination, reason, error };
  p.settings.logger?.warn?.(`tlsrpt: report destination ${destination} of ${key.policyDomain} refused: ${error.message}`, { code: error.code, reason });
  (turn.result.refused ??= []).push(event);
  p.settings.emit(event);
}

/** §4.4 the report, §5.2 gzipped, §5.3 its file name; undefined when it was too large and dropped. */
async function buildReport(turn: ReportTurn): Promise<{ report: TlsRptReport; gz: Buffer; filename: string } | undefined> {
  const { p, key, record, state, reportId } = turn;
  const { maxReportBytes, submitter, logger } = p.settings;
  // §4.1: the report covers the full UTC day.
  const dateRange = utcDayRange(key.day);
  const report = buildTlsRptReport({ organizationName: p.options.organizationName, contactInfo: p.options.contactInfo, reportId, dateRange, policies: record.policies });
  // §5.2: reports are gzip-compressed for both transports.
  const gz = await gzipTlsRptReport(report);
  if (gz.length > maxReportBytes) {
    await finish(turn);
    const error = new TlsRptError('TLSRPT_TOO_LARGE', `gzipped report of ${gz.length} bytes exceeds maxReportBytes ${maxReportBytes}`, { domain: key.policyDomain, details: { bytes: gz.length, limit: maxReportBytes } });
    const event: TlsRptDroppedEvent = { type: 'dropped', day: key.day, policyDomain: key.policyDomain, reportId, reason: 'too-large', attempts: state.attempts, error };
    logger?.error?.(error.message);
    turn.result.dropped.push(event);
    p.settings.emit(event);
    return undefined;
  }
  const filename = tlsRptFileName({ submitter, policyDomain: key.policyDomain, dateRange, uniqueId: state.uniqueId });
  return { report, gz, filename };
}

/** After the delivery: sent (§3: one accepting destination), failed (§5.5), or not attempted (a configuration error). */
async function settle(turn: ReportTurn, report: TlsRptReport, delivered: string[], failures: TlsRptDestinationFailure[]): Promise<void> {
  const { p, key, reportId, state } = turn;
  const { logger, emit } = p.settings;
  if (delivered.length === 0 && failures.length > 0 && failures.every((f) => isUsageError(f.error))) {
    // Nothing was attempted: a configuration error is not a delivery failure and must never drop a report.
    const event: TlsRptNotAttemptedEvent = { type: 'not-attempted', day: key.day, policyDomain: key.policyDomain, reportId, error: failures[0]!.error, failures };
    logger?.error?.(`tlsrpt: report for ${key.policyDomain} ${key.day} not sent: ${failures[0]!.error.message}`);
    (turn.result.notAttempted ??= []).push(event);
    emit(event);
    return;
  }
  if (delivered.length === 0) return fail(turn, failures.find((f) => !isUsageError(f.error))?.error ?? new TlsRptError('TLSRPT_DELIVERY_FAILED', 'no destination accepted the report'), failures);
  await finish(turn);
  const event: TlsRptSentEvent = { type: 'sent', day: key.day, policyDomain: key.policyDomain, reportId, report, attempt: state.attempts + 1, delivered, failures };
  logger?.info?.(`tlsrpt: report for ${key.policyDomain} ${key.day} sent to ${delivered.join(', ')}`);
  turn.result.sent.push(event);
  emit(event);
}

/** A failed attempt: not counted (ahead of the schedule), rescheduled with backoff, or dropped (§5.5). */
async function fail(turn: ReportTurn, error: TlsRptError, failures: TlsRptDestinationFailure[]): Promise<void> {
  const { p, key, state: current, t, reportId, result } = turn;
  const { store, logger, emit } = p.settings;
  const step = retryStep(current, t, p.settings.retry);
  if (step.kind === 'uncounted') {
    await store.setDelivery(key, { ...current, lastError: error.message });
    const event: TlsRptFailedEvent = { type: 'failed', day: key.day, policyDomain: key.policyDomain, reportId, attempt: current.attempts, nextAttemptAt: current.nextAttemptAt, counted: false, error, failures };
    result.failed.push(event);
    emit(event);
    return;
  }
  const { attempt, firstAttemptAt, nextAttemptAt } = step;
  if (step.kind === 'drop') {
    await finish(turn);
    const hours = Math.round(((t - firstAttemptAt) / 3_600_000) * 10) / 10;
    const event: TlsRptDroppedEvent = { type: 'dropped', day: key.day, policyDomain: key.policyDomain, reportId, reason: 'retries-exhausted', attempts: attempt, error };
    logger?.warn?.(`tlsrpt: report for ${key.policyDomain} ${key.day} dropped: ${attempt} delivery attempts over ${hours} h failed, the retry window is over (RFC 8460 §5.5)`, { error: error.message });
    result.dropped.push(event);
    emit(event);
    return;
  }
  await store.setDelivery(key, { ...current, attempts: attempt, firstAttemptAt, nextAttemptAt, lastError: error.message });
  const event: TlsRptFailedEvent = { type: 'failed', day: key.day, policyDomain: key.policyDomain, reportId, attempt, nextAttemptAt, counted: true, error, failures };
  logger?.warn?.(`tlsrpt: report for ${key.policyDomain} ${key.day} failed (attempt ${attempt}); next at ${new Date(nextAttemptAt).toISOString()}`, { error: error.message });
  result.failed.push(event);
  emit(event);
}

/** No report for this (day, domain) (§3: no usable record, or no usable destination): removed from the store. */
async function skip(turn: ReportTurn, event: TlsRptSkippedNoRecordEvent | TlsRptSkippedNoTransportEvent): Promise<void> {
  const { key } = turn;
  await finish(turn);
  turn.p.settings.logger?.info?.(`tlsrpt: no report for ${key.policyDomain} ${key.day} (${event.type})`);
  turn.result.skipped.push(event);
  turn.p.settings.emit(event);
}

/** Removes exactly what this report carried; sessions merged meanwhile (another process) stay for a new report. */
function finish({ p, key, record }: ReportTurn): Promise<void> {
  const { store } = p.settings;
  return store.settle ? store.settle(key, record) : store.delete(key);
}

/**
 * What a failed attempt does to a report's schedule (RFC 8460 §5.5: retry with exponential backoff for a bounded
 * time). An attempt ahead of the schedule (a forced `flush()`, the CLI) is `uncounted`: it neither counts nor
 * reschedules, so running the CLI repeatedly never drops a report before its retry window is over.
 */
export function retryStep(
  state: DeliveryState,
  t: number,
  retry: { attempts: number; baseDelayMs: number; maxAgeMs: number },
): { kind: 'uncounted' } | { kind: 'retry' | 'drop'; attempt: number; firstAttemptAt: number; nextAttemptAt: number } {
  if (t < state.nextAttemptAt) return { kind: 'uncounted' };
  const attempt = state.attempts + 1;
  const firstAttemptAt = state.firstAttemptAt ?? t;
  const nextAttemptAt = t + retry.baseDelayMs * 2 ** (attempt - 1);
  const drop = attempt >= retry.attempts || nextAttemptAt - firstAttemptAt > retry.maxAgeMs;
  return { kind: drop ? 'drop' : 'retry', attempt, firstAttemptAt, nextAttemptAt };
}
