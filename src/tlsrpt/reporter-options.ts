/**
 * The options of the TLS reporter and their resolution into settings with the defaults applied: the report schedule
 * (RFC 8460 §4.1 delay and jitter), the retry window (§5.5), the size limit (§5.2), the store, and the configuration
 * warnings found at creation (§5.3 DKIM).
 */
import type { DKIMOptions } from 'nodemailer';
import type { Dispatcher } from 'undici';
import { createDefaultResolver, type DnsResolver } from '../discovery/resolver.js';
import { MtaStsError } from '../errors.js';
import type { AggregationLimits } from './aggregate.js';
import { DEFAULT_MAX_DESTINATIONS_PER_REPORT } from './destination-policy.js';
import type { TlsRptMailTransportInput } from './deliver.js';
import type { TlsRptEvent, TlsRptWarningEvent } from './reporter-events.js';
import { createSqliteTlsRptStore } from '../sqlite/tlsrpt-store.js';
import { MemoryTlsRptStore, type TlsRptStore } from './store.js';
import type { TlsRptLogger } from './types.js';

export const DAY_MS = 86_400_000;

/** Retry policy for failed deliveries (RFC 8460 §5.5). */
export interface TlsRptRetryOptions {
  /** Attempts in all (the first one included). Default 8. */
  attempts?: number;
  /** Delay after the first failure; doubled after each further one. Default 15 minutes. */
  baseDelayMs?: number;
  /** Give up when the next attempt would be later than this after the first one. Default 24 hours (§5.5). */
  maxAgeMs?: number;
}

/** Options of {@link createTlsRptReporter}. */
export interface TlsRptReporterOptions {
  /** RFC 8460 §4.4 `organization-name`. */
  organizationName: string;
  /** RFC 8460 §4.4 `contact-info`: an e-mail address. */
  contactInfo: string;
  /** Domain of the sending MTA: `TLS-Report-Submitter`, the file name (§5.1) and the report id. */
  submitter: string;
  /**
   * Where counts and delivery state live: a {@link TlsRptStore} (e.g. `createSqliteTlsRptStore({ path })`,
   * `createRedisTlsRptStore({ redis })` for a fleet), or the path of an SQLite database file, shorthand for
   * `createSqliteTlsRptStore({ path, logger, now })` (the reporter then closes it). Recommended in production.
   * Default: a new {@link MemoryTlsRptStore} (lost on restart).
   */
  store?: TlsRptStore | string;
  /** DNS seam for `_smtp._tls` lookups (and report host names with the default dispatcher). Default: system DNS. */
  resolver?: DnsResolver;
  /**
   * How `mailto:` reports are sent: a Nodemailer transporter, or options / a URL for `nodemailer.createTransport`
   * (the reporter then owns and closes it). Without it `mailto:` destinations are skipped. It must NOT enforce
   * MTA-STS for the report recipient (RFC 8460 §5.3: reports are delivered despite TLS failures).
   */
  mailTransport?: TlsRptMailTransportInput;
  /**
   * Keep, rather than remove, a report whose destinations all need a transport this reporter lacks (`mailto:`
   * without `mailTransport`): it is reported as `skipped-no-transport` with `kept: true` and stays in the store for
   * a later run that has a transport (e.g. `mta-sts tlsrpt send` without `--smtp`). Kept reports are not bounded by
   * the retry window: use it for one-shot senders, not for a long-running reporter. Default false (removed).
   */
  keepUndeliverable?: boolean;
  /** `From` of report mail. Default `noreply-tlsrpt@<submitter>`. */
  mailFrom?: string;
  /**
   * DKIM signing of report mail: `{ domainName, keySelector, privateKey }` (Nodemailer's DKIM options; the
   * `TLS-Report-Domain` and `TLS-Report-Submitter` fields are signed too). RFC 8460 §5.3 asks for report mail to be
   * DKIM-signed by the reporting domain, and report receivers may discard unsigned reports: configuring
   * `mailTransport` without `dkim` logs a warning and emits a `warning` event at creation (unless the transport
   * signs itself: then set `transportSignsDkim`).
   */
  dkim?: DKIMOptions;
  /** The `mailTransport` signs report mail with DKIM itself (a relay that signs): no warning about `dkim`. Default false. */
  transportSignsDkim?: boolean;
  /** undici dispatcher for HTTPS reports. Default: an Agent resolving through `resolver` and trusting `ca`. */
  dispatcher?: Dispatcher;
  /** Trust anchors for the default dispatcher (PEM). Default: Node's roots. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Deadline of one HTTPS POST (never beyond what is left of `sendTimeoutMs`). Default 60 000 ms. */
  httpsTimeoutMs?: number;
  /**
   * Deadline of delivering one report to all its destinations, which are sent to in parallel (`sendConcurrency` at a
   * time). A destination still running at the deadline fails (a mail already handed to the transport may still go
   * out; the report keeps its id, so a receiver drops the duplicate of a retry). Default 120 000 ms.
   */
  sendTimeoutMs?: number;
  /** Destinations of one report sent to at the same time. Default 4. */
  sendConcurrency?: number;
  /**
   * Most destinations one report goes to (RFC 8460 §3 `rua`, a `mailto:` list counted per address), after
   * duplicates are removed, in published order; the rest are left out with a `destinations-limited` event and a
   * warning. Default 10.
   */
  maxDestinationsPerReport?: number;
  /**
   * Send to destinations inside the sender's own network: `https:` endpoints at loopback, private (RFC 1918,
   * fc00::/7), link-local, unspecified, CGNAT, multicast or broadcast addresses (checked on the address connected
   * to), and `mailto:` or `https:` names that are not public (`localhost`, single-label names, `.local`, `.test`,
   * ...). FOR TEST WORLDS: default false, and such destinations are refused with a `destination-refused` event.
   * The check applies to the reporter's own HTTPS dispatcher: a `dispatcher` you pass makes its own connections.
   */
  allowInternalDestinations?: boolean;
  /** Deadline of one DNS lookup. Default 10 000 ms. */
  dnsTimeoutMs?: number;
  /** Clock, ms since the epoch. Default `Date.now`. */
  now?: () => number;
  /** Random source in [0, 1) for jitter. Default `Math.random`. */
  random?: () => number;
  /** Fixed delay after the end of a UTC day before its reports are due. Default 15 minutes. */
  delayMs?: number;
  /** Random extra delay, uniform in [0, jitterMs), drawn once per report (§4.1). Default 4 hours. */
  jitterMs?: number;
  retry?: TlsRptRetryOptions;
  /** Aggregation caps (see {@link AggregationLimits}). */
  limits?: Partial<AggregationLimits>;
  /** Longest delay of a background write of counts to the store. Default 1000 ms (see {@link TlsRptAggregator}). */
  flushDelayMs?: number;
  /** Unwritten outcomes that force a write at once (bounds what a crash loses). Default 1000. */
  maxUnflushedOutcomes?: number;
  /** How often `start()`ed reporters look for due reports. Default 5 minutes. */
  checkIntervalMs?: number;
  /** Largest gzipped report sent; larger ones are dropped (`TLSRPT_TOO_LARGE`). Default 10 MiB (§5.2). */
  maxReportBytes?: number;
  logger?: TlsRptLogger;
  /** Gets every {@link TlsRptEvent}. Must not throw (errors are swallowed). */
  onEvent?: (event: TlsRptEvent) => void;

  // ---- FOR TESTS ONLY ----
  /**
   * FOR TESTS ONLY: connect to this port for every `https:` report URI (RFC 8460 §5.4 URIs name 443; a loopback
   * server cannot use it). Named like the engine's `httpsPort` and the CLI's `--https-port`.
   */
  httpsPort?: number;
}

/** The reporter's options with every default applied (see {@link resolveReporterSettings}). */
export interface ReporterSettings {
  now: () => number;
  random: () => number;
  logger: TlsRptLogger | undefined;
  /** The store was created here (the reporter closes it). */
  ownsStore: boolean;
  store: TlsRptStore;
  resolver: DnsResolver;
  /** `submitter`, lower case, without a trailing dot. */
  submitter: string;
  mailFrom: string;
  delayMs: number;
  jitterMs: number;
  retry: { attempts: number; baseDelayMs: number; maxAgeMs: number };
  checkIntervalMs: number;
  maxReportBytes: number;
  dnsTimeoutMs: number;
  sendTimeoutMs: number;
  sendConcurrency: number;
  maxDestinationsPerReport: number;
  allowInternalDestinations: boolean;
  /** Calls `onEvent`; a throwing listener is ignored. */
  emit: (event: TlsRptEvent) => void;
}

/**
 * Applies the defaults of {@link TlsRptReporterOptions} (the options were validated before); a negative or
 * non-finite delay fails with `MTASTS_INVALID_OPTIONS`.
 */
export function resolveReporterSettings(options: TlsRptReporterOptions): ReporterSettings {
  const logger = options.logger;
  const store: TlsRptStore = typeof options.store === 'string' ? createSqliteTlsRptStore({ path: options.store, ...(logger ? { logger } : {}), ...(options.now ? { now: options.now } : {}) }) : (options.store ?? new MemoryTlsRptStore());
  const submitter = options.submitter.toLowerCase().replace(/\.$/, '');
  return {
    now: options.now ?? Date.now,
    random: options.random ?? Math.random,
    logger,
    ownsStore: typeof options.store !== 'object',
    store,
    resolver: options.resolver ?? createDefaultResolver(),
    submitter,
    mailFrom: options.mailFrom ?? `noreply-tlsrpt@${submitter}`,
    delayMs: nonNegative(options.delayMs ?? 15 * 60_000, 'delayMs'),
    jitterMs: nonNegative(options.jitterMs ?? 4 * 3_600_000, 'jitterMs'),
    retry: {
      attempts: Math.max(1, Math.floor(options.retry?.attempts ?? 8)),
      baseDelayMs: nonNegative(options.retry?.baseDelayMs ?? 15 * 60_000, 'retry.baseDelayMs'),
      maxAgeMs: nonNegative(options.retry?.maxAgeMs ?? DAY_MS, 'retry.maxAgeMs'),
    },
    checkIntervalMs: Math.max(10, options.checkIntervalMs ?? 5 * 60_000),
    maxReportBytes: options.maxReportBytes ?? 10 * 1024 * 1024,
    dnsTimeoutMs: options.dnsTimeoutMs ?? 10_000,
    sendTimeoutMs: options.sendTimeoutMs ?? 120_000,
    sendConcurrency: options.sendConcurrency ?? 4,
    maxDestinationsPerReport: options.maxDestinationsPerReport ?? DEFAULT_MAX_DESTINATIONS_PER_REPORT,
    allowInternalDestinations: options.allowInternalDestinations === true,
    emit: (event) => {
      try {
        options.onEvent?.(event);
      } catch {
        // a throwing listener must not break reporting
      }
    },
  };
}

/** Warnings about the configuration, found at creation. */
export function configurationWarnings(options: TlsRptReporterOptions): TlsRptWarningEvent[] {
  const out: TlsRptWarningEvent[] = [];
  if (options.mailTransport !== undefined && options.dkim === undefined && options.transportSignsDkim !== true) {
    out.push({
      type: 'warning',
      code: 'TLSRPT_UNSIGNED_MAIL',
      message:
        'report mail is configured without DKIM: RFC 8460 §5.3 asks for report mail to be DKIM-signed by the reporting domain, and receivers may discard unsigned reports. Set the dkim option ({ domainName, keySelector, privateKey }), or transportSignsDkim when the mail transport signs.',
    });
  }
  return out;
}

function nonNegative(value: number, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new MtaStsError('MTASTS_INVALID_OPTIONS', `createTlsRptReporter(): option ${what} must be a non-negative number (ms), got ${JSON.stringify(value)}`, { details: { option: what } });
  return value;
}
