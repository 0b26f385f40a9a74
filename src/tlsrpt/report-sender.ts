/**
 * Sends one gzipped report to the destinations of a TLSRPT record (RFC 8460 §3 `rua`): HTTPS POST (§5.4) through
 * an undici dispatcher, mail (§5.3) through a Nodemailer transport. Both are created on first use and owned (closed)
 * by the sender unless the caller passed them in. One accepting destination is success (§3); a transport that
 * cannot even be created is a configuration error, never a failed delivery.
 */
import type { Dispatcher } from 'undici';
import type { DomainDayKey } from './aggregate.js';
import { createMailTransport, createReportHttpsAgent, postTlsRptReport, sendTlsRptMail, type TlsRptMailTransport, type TlsRptMailTransportInput } from './deliver.js';
import type { TlsRptDestination } from './discovery.js';
import { TlsRptError, toTlsRptError } from './errors.js';
import type { ReporterSettings, TlsRptReporterOptions } from './reporter-options.js';
import type { TlsRptDestinationFailure } from './reporter-events.js';
import type { TlsRptReport } from './types.js';

/** What {@link ReportSender.deliverAll} did: the URIs that accepted the report, and the failures of the others. */
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
    ownDispatcher ??= createReportHttpsAgent({ resolver: settings.resolver, ...(options.ca !== undefined ? { ca: options.ca } : {}), dnsTimeoutMs: settings.dnsTimeoutMs });
    return ownDispatcher;
  };
  let mail: Promise<OwnedMailTransport> | undefined;
  const mailTransport = (): Promise<OwnedMailTransport> => {
    // A transport that cannot even be created is a configuration error, not a failed delivery.
    mail ??= createMailTransport(options.mailTransport as TlsRptMailTransportInput).catch((error: unknown) => {
      throw new TlsRptError('TLSRPT_TRANSPORT_UNUSABLE', `mailTransport is not usable: ${error instanceof Error ? error.message : String(error)}`, { cause: error, details: { option: 'mailTransport' } });
    });
    return mail;
  };

  const deliverTo = async (destination: TlsRptDestination, report: TlsRptReport, gz: Buffer, key: DomainDayKey, filename: string): Promise<void> => {
    const context = { policyDomain: key.policyDomain, reportId: report['report-id'] };
    if (destination.kind === 'https') {
      await postTlsRptReport(destination.url, gz, {
        dispatcher: dispatcher(),
        context,
        ...(options.httpsTimeoutMs !== undefined ? { timeoutMs: options.httpsTimeoutMs } : {}),
        ...(options.httpsPort !== undefined ? { httpsPort: options.httpsPort } : {}),
      });
      return;
    }
    const { transport } = await mailTransport();
    await sendTlsRptMail(transport, report, gz, { from: settings.mailFrom, to: destination.address, submitter: settings.submitter, filename, ...(options.dkim ? { dkim: options.dkim } : {}) });
  };

  return {
    async deliverAll(usable, report, gz, key, filename) {
      const delivered: string[] = [];
      const failures: TlsRptDestinationFailure[] = [];
      for (const destination of usable) {
        try {
          await deliverTo(destination, report, gz, key, filename);
          delivered.push(destination.uri);
        } catch (error) {
          failures.push({ uri: destination.uri, error: toTlsRptError(error, isUsageError(error) ? 'TLSRPT_TRANSPORT_UNUSABLE' : 'TLSRPT_DELIVERY_FAILED', `delivery to ${destination.uri} failed`, { domain: key.policyDomain }) });
        }
      }
      return { delivered, failures };
    },
    async close() {
      if (mail) {
        const m = await mail.catch(() => undefined);
        if (m?.owned) m.transport.close?.();
      }
      if (ownDispatcher) await ownDispatcher.close().catch(() => undefined);
    },
  };
}

/** Errors of configuration or usage (not of a delivery): they never count as delivery attempts. */
export function isUsageError(error: unknown): boolean {
  if (error instanceof TlsRptError) return error.code === 'TLSRPT_TRANSPORT_UNUSABLE' || error.code === 'TLSRPT_NO_TRANSPORT' || error.code === 'TLSRPT_REPORT_INVALID';
  return error instanceof TypeError || error instanceof RangeError;
}
