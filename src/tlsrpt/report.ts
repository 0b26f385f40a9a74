/**
 * The RFC 8460 aggregate report: building the §4.4 JSON object, naming the file (§5.1) and compressing it (§5.2).
 *
 * A report covers one period, normally one full UTC day (§4.1), and lists, per policy that applied to the
 * sessions of one policy domain, the number of successful and failed sessions (§4.2) and the distinct failure
 * details with their counts (§4.3, §4.4). Everything here is pure apart from the gzip helpers, which use
 * `node:zlib`.
 *
 * Report IDs: `makeTlsRptReportId` builds `<YYYY-MM-DD>_<policy-domain>_<unique-id>@<submitter>`. It is
 * unique (the unique id is random and drawn once per report, then kept across retries so that the receiver can
 * drop duplicates, §5.3), readable, and has the `id-left "@" id-right` form that the §5.3 Subject ABNF wants
 * between `<` and `>`.
 */
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { gunzip as gunzipCb, gzip as gzipCb } from 'node:zlib';
import { normalizeDomainOrUndefined } from '../domain.js';
import { TLSRPT_RESULT_TYPES } from '../errors.js';
import { TlsRptError } from './errors.js';
import { copyFailureFields } from './failure-fields.js';
import type { AggregatedFailure, AggregatedPolicy, TlsRptReport, TlsRptReportFailureDetail, TlsRptReportPolicy } from './types.js';

const gzipAsync = promisify(gzipCb);
const gunzipAsync = promisify(gunzipCb);

const DAY_MS = 86_400_000;

/** Input of {@link buildTlsRptReport}. */
export interface BuildTlsRptReportInput {
  /** RFC 8460 §4.4 `organization-name`: the organisation responsible for the report. */
  organizationName: string;
  /** RFC 8460 §4.4 `contact-info`: an e-mail address (addr-spec) of whoever answers questions about it. */
  contactInfo: string;
  /** RFC 8460 §4.4 `report-id`. Default: `makeTlsRptReportId` with a fresh random unique id. */
  reportId?: string;
  /** Domain of the sending MTA (used only for the default report id). Default: the domain of `contactInfo`. */
  submitter?: string;
  /** The period covered. For a UTC day use `utcDayRange` (the UTC day from 00:00:00Z to 24:00:00Z). Serialised in whole seconds. */
  dateRange: { start: Date; end: Date };
  policies: AggregatedPolicy[];
}

/**
 * Builds the RFC 8460 §4.4 report object. Optional fields that have no value are omitted, never written as `null`;
 * failure details with a zero count are dropped, and `failure-details` is omitted when there are none. A failure
 * field whose value does not have its §4.4 syntax (an IP field that is no IP address, a host name that is no host
 * name, a reason code that is not printable ASCII) is omitted too, and `total-failure-session-count` is the sum of
 * the failure details' counts whenever there are details (`failureCount` only when there are none).
 *
 * @throws {TlsRptError} `TLSRPT_REPORT_INVALID` when the input is not a valid report (empty names, end before
 *   start, negative or fractional counts, unknown result types).
 */
export function buildTlsRptReport(input: BuildTlsRptReportInput): TlsRptReport {
  const organizationName = requireText(input.organizationName, 'organizationName');
  const contactInfo = requireText(input.contactInfo, 'contactInfo');
  const { start, end } = input.dateRange ?? ({} as { start?: Date; end?: Date });
  if (!(start instanceof Date) || !(end instanceof Date) || Number.isNaN(start.getTime()) || Number.isNaN(end.getTime())) {
    throw invalid('dateRange.start and dateRange.end must be valid Dates');
  }
  // §4.4: the date-range is the period the report covers; an empty or inverted period is a caller bug.
  if (end.getTime() < start.getTime()) throw invalid('dateRange.end is before dateRange.start');
  if (!Array.isArray(input.policies)) throw invalid('policies must be an array');

  const policies: TlsRptReportPolicy[] = input.policies.map((p, i) => buildPolicy(p, i));
  const firstDomain = policies[0]?.policy['policy-domain'];
  const reportId =
    input.reportId !== undefined
      ? requireText(input.reportId, 'reportId')
      : makeTlsRptReportId({
          start,
          policyDomain: firstDomain ?? 'no-policy-domain.invalid',
          submitter: input.submitter ?? domainOfAddress(contactInfo) ?? 'localhost',
          uniqueId: randomUniqueId(),
        });

  // §4.4: key order follows the RFC's Figure 4 so reports read the way the RFC prints them.
  return {
    'organization-name': organizationName,
    'date-range': {
      'start-datetime': formatRfc3339(start),
      'end-datetime': formatRfc3339(end),
    },
    'contact-info': contactInfo,
    'report-id': reportId,
    policies,
  };
}

function buildPolicy(p: AggregatedPolicy, index: number): TlsRptReportPolicy {
  const where = `policies[${index}]`;
  if (typeof p !== 'object' || p === null || typeof p.policy !== 'object' || p.policy === null) throw invalid(`${where}.policy is missing`);
  const type = p.policy.type;
  // §4.4 policy-type: "tlsa", "sts" or the literal "no-policy-found".
  if (type !== 'sts' && type !== 'tlsa' && type !== 'no-policy-found') throw invalid(`${where}.policy.type is not sts, tlsa or no-policy-found`);
  const domain = requireText(p.policy.domain, `${where}.policy.domain`);
  const successCount = requireCount(p.successCount, `${where}.successCount`);
  const failureCount = requireCount(p.failureCount, `${where}.failureCount`);

  const policyString = p.policy.policyString === undefined ? undefined : requireStringArray(p.policy.policyString, `${where}.policy.policyString`);
  const mxHost = p.policy.mxHost === undefined ? undefined : requireStringArray(p.policy.mxHost, `${where}.policy.mxHost`);
  const policy: TlsRptReportPolicy['policy'] = {
    'policy-type': type,
    // §4.4 policy-string: the applied policy as a JSON array of strings (one per line for MTA-STS).
    ...(policyString ? { 'policy-string': policyString } : {}),
    'policy-domain': domain,
    // §4.4 mx-host: the policy's MX host patterns, as a JSON array of strings.
    ...(mxHost ? { 'mx-host': mxHost } : {}),
  };

  const details = buildFailureDetails(p.failures ?? [], where);
  // §4.2.2: total-failure-session-count is the number of failed sessions, which the failure details break down;
  // taken from their counts whenever there are details, so a report never states a total its details contradict.
  const failureTotal = details.length > 0 ? details.reduce((n, d) => n + d['failed-session-count'], 0) : failureCount;

  const out: TlsRptReportPolicy = {
    policy,
    // §4.2.1 / §4.2.2: the session totals for this policy over the period.
    summary: {
      'total-successful-session-count': successCount,
      'total-failure-session-count': failureTotal,
    },
  };
  if (details.length > 0) out['failure-details'] = details;
  return out;
}

/**
 * The §4.4 failure-details of one policy: zero counts dropped, each field checked for its §4.4 syntax (an invalid
 * value, e.g. from a store edited by hand, is left out rather than reported; see `failure-fields.ts`).
 */
function buildFailureDetails(failures: readonly AggregatedFailure[], where: string): TlsRptReportFailureDetail[] {
  const details: TlsRptReportFailureDetail[] = [];
  for (const [j, f] of failures.entries()) {
    const at = `${where}.failures[${j}]`;
    if (!TLSRPT_RESULT_TYPES.includes(f.resultType)) throw invalid(`${at}.resultType is not an RFC 8460 §4.3 result type`);
    const count = requireCount(f.count, `${at}.count`);
    if (count === 0) continue;
    const v = copyFailureFields(f, Number.MAX_SAFE_INTEGER);
    // §4.4: optional members are omitted when unknown, never null.
    details.push({
      'result-type': f.resultType,
      ...(v.sendingMtaIp ? { 'sending-mta-ip': v.sendingMtaIp } : {}),
      ...(v.receivingMxHostname ? { 'receiving-mx-hostname': v.receivingMxHostname } : {}),
      ...(v.receivingMxHelo ? { 'receiving-mx-helo': v.receivingMxHelo } : {}),
      ...(v.receivingIp ? { 'receiving-ip': v.receivingIp } : {}),
      'failed-session-count': count,
      ...(v.additionalInformation ? { 'additional-information': v.additionalInformation } : {}),
      ...(v.failureReasonCode ? { 'failure-reason-code': v.failureReasonCode } : {}),
    });
  }
  return details;
}

/**
 * Formats a Date as an RFC 3339 `date-time` in UTC with whole seconds (`2026-11-22T00:00:00Z`), the form §4.4
 * asks for. Milliseconds are truncated.
 */
export function formatRfc3339(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The UTC day key (`YYYY-MM-DD`) of an instant in ms since the epoch. */
export function utcDayKey(ms: number): string {
  const day = Math.floor(ms / DAY_MS);
  let key = dayKeys.get(day);
  if (key === undefined) {
    // Called for every recorded outcome (its day, today, yesterday): formatting a Date each time was the recorder's
    // largest cost. A few days are in use at a time; the cache is bounded.
    key = new Date(day * DAY_MS).toISOString().slice(0, 10);
    if (dayKeys.size >= 64) dayKeys.clear();
    dayKeys.set(day, key);
  }
  return key;
}

const dayKeys = new Map<number, string>();

/** Start of the UTC day `dayKey` (`YYYY-MM-DD`), in ms since the epoch. */
export function utcDayStart(dayKey: string): number {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(dayKey)) throw invalid(`not a YYYY-MM-DD day: ${JSON.stringify(dayKey)}`);
  const ms = Date.parse(`${dayKey}T00:00:00Z`);
  if (Number.isNaN(ms) || utcDayKey(ms) !== dayKey) throw invalid(`not a calendar day: ${dayKey}`);
  return ms;
}

/**
 * The date range of a full UTC day (RFC 8460 §4.1: a report SHOULD cover 00:00-24:00 UTC): from `00:00:00Z` to
 * `23:59:59Z`. Accepts a day key or any instant within the day.
 */
export function utcDayRange(day: string | number | Date): { start: Date; end: Date } {
  const startMs =
    typeof day === 'string' ? utcDayStart(day) : Math.floor((day instanceof Date ? day.getTime() : day) / DAY_MS) * DAY_MS;
  return { start: new Date(startMs), end: new Date(startMs + DAY_MS - 1000) };
}

/** Input of `makeTlsRptReportId`. */
export interface TlsRptReportIdInput {
  start: Date;
  policyDomain: string;
  submitter: string;
  /** Letters and digits only. */
  uniqueId: string;
}

/**
 * The report id format of this library: `<YYYY-MM-DD>_<policy-domain>_<unique-id>@<submitter>`, for example
 * `2026-11-22_example.com_3f9c2a7d41b0e8c5@mta.sender.example`. Its shape is an RFC 5322 `msg-id` without the
 * angle brackets, as the §5.3 Subject ABNF requires (`Report-ID: <id-left@id-right>`).
 */
export function makeTlsRptReportId(input: TlsRptReportIdInput): string {
  if (!/^[A-Za-z0-9]+$/.test(input.uniqueId)) throw invalid('uniqueId must be letters and digits');
  const policyDomain = normalizeDomainOrUndefined(input.policyDomain) ?? sanitizeAtom(input.policyDomain);
  const submitter = normalizeDomainOrUndefined(input.submitter) ?? sanitizeAtom(input.submitter);
  return `${input.start.toISOString().slice(0, 10)}_${policyDomain}_${input.uniqueId}@${submitter}`;
}

/** A fresh random unique id (16 lower-case hex digits), valid for both report ids and §5.1 file names. */
export function randomUniqueId(): string {
  return randomBytes(8).toString('hex');
}

/** Input of {@link tlsRptFileName}. */
export interface TlsRptFileNameInput {
  /** The domain of the sending MTA (the same as in `TLS-Report-Submitter`). */
  submitter: string;
  policyDomain: string;
  dateRange: { start: Date; end: Date };
  /** Optional unique id (§5.1: `1*(ALPHA / DIGIT)`), to tell apart reports made at the same time by several MTAs. */
  uniqueId?: string;
  /** Default true: the `.json.gz` extension of a gzipped report; false gives `.json`. */
  gzip?: boolean;
}

/**
 * The report file name of RFC 8460 §5.1:
 * `<submitter>!<policy-domain>!<begin-timestamp>!<end-timestamp>[!<unique-id>].json[.gz]`, timestamps in seconds
 * since the epoch. Used as the attachment file name in mail (§5.3).
 *
 * @throws {TlsRptError} `TLSRPT_REPORT_INVALID` when a domain or the unique id is not valid.
 */
export function tlsRptFileName(input: TlsRptFileNameInput): string {
  const submitter = normalizeDomainOrUndefined(input.submitter);
  if (!submitter) throw invalid(`submitter is not a domain name: ${JSON.stringify(input.submitter)}`);
  const policyDomain = normalizeDomainOrUndefined(input.policyDomain);
  if (!policyDomain) throw invalid(`policyDomain is not a domain name: ${JSON.stringify(input.policyDomain)}`);
  // §5.1: unique-id = 1*(ALPHA / DIGIT)
  if (input.uniqueId !== undefined && !/^[A-Za-z0-9]+$/.test(input.uniqueId)) throw invalid('uniqueId must be letters and digits (RFC 8460 §5.1)');
  const begin = Math.floor(input.dateRange.start.getTime() / 1000);
  const end = Math.floor(input.dateRange.end.getTime() / 1000);
  if (!Number.isFinite(begin) || !Number.isFinite(end)) throw invalid('dateRange must hold valid Dates');
  // §5.1: extension = "json" / "json.gz"
  const extension = input.gzip === false ? 'json' : 'json.gz';
  return `${submitter}!${policyDomain}!${begin}!${end}${input.uniqueId ? `!${input.uniqueId}` : ''}.${extension}`;
}

/** The report as compact JSON text (what is gzipped and sent). */
export function serializeTlsRptReport(report: TlsRptReport): string {
  return JSON.stringify(report);
}

/** Gzips a report (RFC 8460 §5.2: reports SHOULD be gzip-compressed for both mail and HTTPS). */
export async function gzipTlsRptReport(report: TlsRptReport | string): Promise<Buffer> {
  const text = typeof report === 'string' ? report : serializeTlsRptReport(report);
  return gzipAsync(Buffer.from(text, 'utf8'));
}

/**
 * Gunzips and parses a report (for tests, CLIs and receivers). `maxBytes` bounds the decompressed size
 * (default 64 MiB) so a gzip bomb cannot exhaust memory.
 */
export async function gunzipTlsRptReport(data: Uint8Array, maxBytes = 64 * 1024 * 1024): Promise<TlsRptReport> {
  const text = await gunzipAsync(data, { maxOutputLength: maxBytes });
  return JSON.parse(text.toString('utf8')) as TlsRptReport;
}

function requireText(value: unknown, what: string): string {
  if (typeof value !== 'string' || value.trim() === '') throw invalid(`${what} must be a non-empty string`);
  return value;
}

function requireCount(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw invalid(`${what} must be a non-negative integer`);
  return value;
}

function requireStringArray(value: unknown, what: string): string[] {
  if (!Array.isArray(value) || !value.every((s): s is string => typeof s === 'string')) throw invalid(`${what} must be an array of strings`);
  return [...value];
}

function domainOfAddress(address: string): string | undefined {
  const at = address.lastIndexOf('@');
  return at < 0 ? undefined : normalizeDomainOrUndefined(address.slice(at + 1));
}

/** Keeps RFC 5322 dot-atom characters only, so a report id stays a valid msg-id whatever it is built from. */
function sanitizeAtom(text: string): string {
  const cleaned = text.replace(/[^A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]/g, '').replace(/\.{2,}/g, '.').replace(/^\.|\.$/g, '');
  return cleaned === '' ? 'invalid' : cleaned;
}

function invalid(message: string): TlsRptError {
  return new TlsRptError('TLSRPT_REPORT_INVALID', message);
}
