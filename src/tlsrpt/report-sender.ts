/**
 * Sends one gzipped report to the destinations of a TLSRPT record (RFC 8460 §3 `rua`): HTTPS POST (§5.4) through
 * an undici dispatcher, mail (§5.3) through a Nodemailer transport. Both are created on first use and owned (closed)
 * by the sender unless the caller passed them in. One accepting destination is success (§3); a transport that
 * cannot even be created is a configuration error, never a failed delivery. The destinations of one report are sent
 * to in parallel (`sendConcurrency` at a time) within one deadline (`sendTimeoutMs`), so slow destinations cannot
 * stall the others, nor the reports after it, beyond that bound.
 */
import type { Dispatcher } from 'undici';
import type { DomainDayKey } from './aggregate.js';
import { createMailTransport, createReportHttpsAgent, postTlsRptReport, sendTlsRptMail, type TlsRptMailTransport, type TlsRptMailTransportInput } from './deliver.js';
import { destinationLabel } from './destination-policy.js';
import type { TlsRptDestination } from './discovery.js';
import { TlsRptError, toTlsRptError } from './errors.js';
import type { ReporterSettings, TlsRptReporterOptions } from './reporter-options.js';
import type { TlsRptDestinationFailure } from './reporter-events.js';
import type { TlsRptReport } from './types.js';

/**
 * What {@link ReportSender.deliverAll} did: the destinations that accepted the report (`mailto:<address>` or the
 * `https:` URI), and the failures of the others.
 */
export interface DeliveryOutcome {
  delivered: string[];
  failures: TlsRptDestinationFailure[];
}

/** Sends reports to their destinations; `close()` closes the dispatcher and transport it created. */
export interface ReportSender {
  /** §3: the reporter MAY deliver to each destination; the report is delivered once one of them accepts. */
  deliverAll(usable: TlsRptDestination[], report: TlsRptReport, gz: Buffer, key: DomainDayKey, filename: string): Promise<DeliveryOutcome>;
  close(): Promise<void>;
}

type OwnedMailTransport = { transport: TlsRptMailTransport; owned: boolean };

/** Creates the sender of a reporter (nothing is opened before the first delivery). */
export function createReportSender(options: TlsRptReporterOptions, settings: ReporterSettings): ReportSender {
  let ownDispatcher: Dispatcher | undefined;
  const dispatcher = (): Dispatcher => {
    if (options.dispatcher) return options.dispatcher;
    ownDispatcher ??= createReportHttpsAgent({
      resolver: settings.resolver,
      ...(options.ca !== undefined ? { ca: options.ca } : {}),
      dnsTimeoutMs: settings.dnsTimeoutMs,
      // A handshake that never completes holds a socket no longer than one POST may take.
      connectTimeoutMs: Math.min(30_000, options.httpsTimeoutMs ?? 60_000),
      allowInternalDestinations: settings.allowInternalDestinations,
    });
    return ownDispatcher;
  };
  const mail = lazyMailTransport(options.mailTransport as TlsRptMailTransportInput);
  const mailTransport = mail.get;

  const deliverTo = async (destination: TlsRptDestination, report: TlsRptReport, gz: Buffer, key: DomainDayKey, filename: string, deadline: Deadline): Promise<void> => {
    const context = { policyDomain: key.policyDomain, reportId: report['report-id'] };
    if (destination.kind === 'https') {
      await postTlsRptReport(destination.url, gz, {
        dispatcher: dispatcher(),
        context,
        signal: deadline.signal,
        // One POST never outlives the report's sendTimeoutMs: the deadline's signal stops it (its own timer, when
        // later, leaves the deadline the cause).
        timeoutMs: Math.max(1, Math.min(options.httpsTimeoutMs ?? 60_000, deadline.remainingMs() + 1_000)),
        ...(options.httpsPort !== undefined ? { httpsPort: options.httpsPort } : {}),
      });
      return;
    }
    const { transport } = await mailTransport();
    const mailOptions = { from: settings.mailFrom, to: destination.address, submitter: settings.submitter, filename, ...(options.dkim ? { dkim: options.dkim } : {}) };
    // A transport cannot be aborted: past the deadline the report stops waiting for it.
    await untilAborted(sendTlsRptMail(transport, report, gz, mailOptions), deadline.signal);
  };

  const attempt = async (destination: TlsRptDestination, report: TlsRptReport, gz: Buffer, key: DomainDayKey, filename: string, deadline: Deadline): Promise<TlsRptDestinationFailure | undefined> => {
    const uri = destinationLabel(destination);
    try {
      if (deadline.signal.aborted) throw deadlineError(uri, settings.sendTimeoutMs, undefined);
      await deliverTo(destination, report, gz, key, filename, deadline);
      return undefined;
    } catch (error) {
      // A failure caused by the deadline says so; a refusal, an HTTP status or a usage error keeps its own code.
      const byDeadline = (deadline.signal.aborted || deadline.remainingMs() <= 0) && !isUsageError(error) && !(error instanceof TlsRptError && error.code !== 'TLSRPT_DELIVERY_FAILED');
      const e = byDeadline ? deadlineError(uri, settings.sendTimeoutMs, error) : error;
      return { uri, error: toTlsRptError(e, isUsageError(e) ? 'TLSRPT_TRANSPORT_UNUSABLE' : 'TLSRPT_DELIVERY_FAILED', `delivery to ${uri} failed`, { domain: key.policyDomain }) };
    }
  };

  return {
    async deliverAll(usable, report, gz, key, filename) {
      const deadline = startDeadline(settings.sendTimeoutMs);
      try {
        // The destinations in parallel, a few at a time, all within one deadline (not one deadline each).
        const failed = await mapConcurrent(usable, settings.sendConcurrency, (d) => attempt(d, report, gz, key, filename, deadline));
        const delivered = usable.filter((_, i) => failed[i] === undefined).map(destinationLabel);
        return { delivered, failures: failed.filter((f): f is TlsRptDestinationFailure => f !== undefined) };
      } finally {
        deadline.stop();
      }
    },
    async close() {
      await mail.close();
      // destroy, not close: a connection attempt given up at a deadline would otherwise hold close() until it times out.
      if (ownDispatcher) await ownDispatcher.destroy().catch(() => undefined);
    },
  };
}

/** The mail transport, created on first use; `close()` closes it when it was created here. */
function lazyMailTransport(input: TlsRptMailTransportInput): { get(): Promise<OwnedMailTransport>; close(): Promise<void> } {
  let mail: Promise<OwnedMailTransport> | undefined;
  return {
    get() {
      // A transport that cannot even be created is a configuration error, not a failed delivery.
      mail ??= createMailTransport(input).catch((error: unknown) => {
        throw new TlsRptError('TLSRPT_TRANSPORT_UNUSABLE', `mailTransport is not usable: ${error instanceof Error ? error.message : String(error)}`, { cause: error, details: { option: 'mailTransport' } });
      });
      return mail;
    },
    async close() {
      const m = await mail?.catch(() => undefined);
      if (m?.owned) m.transport.close?.();
    },
  };
}

/** Errors of configuration or usage (not of a delivery): they never count as delivery attempts. */
export function isUsageError(error: unknown): boolean {
  if (error instanceof TlsRptError) return error.code === 'TLSRPT_TRANSPORT_UNUSABLE' || error.code === 'TLSRPT_NO_TRANSPORT' || error.code === 'TLSRPT_REPORT_INVALID';
  return error instanceof TypeError || error instanceof RangeError;
}

/** The deadline of one report's delivery: its signal fires at `sendTimeoutMs` (wall clock, not the reporter's `now`). */
interface Deadline {
  signal: AbortSignal;
  remainingMs(): number;
  stop(): void;
}

function startDeadline(ms: number): Deadline {
  const controller = new AbortController();
  const end = Date.now() + ms;
  const timer = setTimeout(() => controller.abort(), ms);
  timer.unref?.();
  return { signal: controller.signal, remainingMs: () => end - Date.now(), stop: () => clearTimeout(timer) };
}

function deadlineError(uri: string, sendTimeoutMs: number, cause: unknown): TlsRptError {
  return new TlsRptError('TLSRPT_DELIVERY_FAILED', `delivery to ${uri} did not finish within sendTimeoutMs (${sendTimeoutMs} ms)`, {
    ...(cause !== undefined ? { cause } : {}),
    details: { reason: 'deadline', sendTimeoutMs },
  });
}

/** `promise`, or a rejection once `signal` fires (the promise keeps running; its outcome is then ignored). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  promise.catch(() => undefined);
  if (signal.aborted) return Promise.reject(new Error('aborted'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** `task` for every item, at most `limit` at a time; the results in the items' order. `task` must not reject. */
async function mapConcurrent<T, R>(items: readonly T[], limit: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await task(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
