/**
 * Report delivery (RFC 8460 §5): by mail (§5.3) or HTTPS POST (§5.4), gzip-compressed (§5.2).
 *
 * Mail: a `multipart/report; report-type=tlsrpt` message with a human-readable `text/plain` part and the gzipped
 * report as an `application/tlsrpt+gzip` attachment named as §5.1 says, with the `TLS-Report-Domain` and
 * `TLS-Report-Submitter` header fields and the Subject `Report Domain: <d> Submitter: <s> Report-ID: <<id>>`.
 * §5.3 requires a DKIM signature by the reporting domain (configure `dkim`; the two TLS-Report header fields are
 * added to the signed fields). The message is composed with Nodemailer's MailComposer and sent through the
 * caller's Nodemailer transport.
 *
 * §5.3 also says reports MUST be delivered despite TLS failures at the reporting domain (its MX may be exactly
 * what is broken) and the report session SHOULD NOT be counted in the next report. So:
 * - the transport used for reports must NOT enforce MTA-STS (or DANE) for the report recipient: use a relay, or an
 *   opportunistic-TLS transport; never the MTA-STS-enforcing transport of this library;
 * - delivery runs inside {@link runAsReportDelivery}, so outcomes recorded during it are not counted, and the mail
 *   options carry `tlsRptReport` (see {@link TLSRPT_MAIL_MARKER}) so Nodemailer plugins can recognise it.
 *
 * HTTPS: `POST` of the gzipped report with `Content-Type: application/tlsrpt+gzip`; any 2xx is success (§5.4),
 * redirects are not followed, and the whole exchange has one deadline.
 */
import { randomUUID } from 'node:crypto';
import type { DKIMOptions, SendMailOptions, SMTPTransportOptions } from 'nodemailer';
import { Agent, request, type Dispatcher } from 'undici';
import { createResolverLookup } from '../discovery/lookup.js';
import type { DnsResolver } from '../discovery/resolver.js';
import { errorCodeOf } from '../errors.js';
import { guardedConnector, publicAddressLookup } from './internal-address.js';
import { TlsRptError, toTlsRptError } from './errors.js';
import { runAsReportDelivery } from './recorder.js';
import type { TlsRptReport } from './types.js';

/** RFC 8460 §6 media type of a gzipped report. */
export const TLSRPT_GZIP_MEDIA_TYPE = 'application/tlsrpt+gzip';
/** RFC 8460 §6 media type of an uncompressed report. */
export const TLSRPT_JSON_MEDIA_TYPE = 'application/tlsrpt+json';
/**
 * Name of the property set on the Nodemailer mail options of every report mail (`{ policyDomain, reportId }`).
 * A Nodemailer plugin or an MTA-STS-enforcing transport can check `mail.data.tlsRptReport` to recognise report
 * mail, deliver it without enforcing, and not record its session (RFC 8460 §5.3).
 */
export const TLSRPT_MAIL_MARKER = 'tlsRptReport';

/** Any Nodemailer transporter (what `nodemailer.createTransport()` returns) fits. */
export interface TlsRptMailTransport {
  sendMail(mail: SendMailOptions): Promise<unknown>;
  close?(): void;
}

/** Options of {@link sendTlsRptMail}. */
export interface TlsRptMailOptions {
  /** `From` (and envelope sender). Its domain should be the submitter's, and DKIM-signed by it (§5.3). */
  from: string;
  /** The report recipient (the decoded `mailto:` address). */
  to: string;
  /** Domain of the sending MTA: `TLS-Report-Submitter`, Subject and file name. */
  submitter: string;
  /** Attachment file name (see `tlsRptFileName`, §5.1). */
  filename: string;
  /** DKIM signing (§5.3: reports sent by mail MUST carry a valid DKIM signature of the reporting domain). */
  dkim?: DKIMOptions;
  /** Replaces the human-readable text part. */
  text?: string;
  /** `Message-ID` (with angle brackets). Default: a random UUID at the submitter's domain. */
  messageId?: string;
}

/** Result of a successful mail delivery. */
export interface TlsRptMailResult {
  /** The `Message-ID` of the report mail. */
  messageId: string;
  /** The server's final answer, when the transport reports it. */
  response?: string;
}

/** The human-readable part of a report mail. Contains no addresses and no message data. */
export function describeReport(report: TlsRptReport, submitter: string, filename: string): string {
  let ok = 0;
  let failed = 0;
  for (const p of report.policies) {
    ok += p.summary['total-successful-session-count'];
    failed += p.summary['total-failure-session-count'];
  }
  const domain = report.policies[0]?.policy['policy-domain'] ?? '(none)';
  return [
    `This is an aggregate SMTP TLS report (RFC 8460) from ${submitter} (${report['organization-name']}).`,
    '',
    `Policy domain: ${domain}`,
    `Period: ${report['date-range']['start-datetime']} to ${report['date-range']['end-datetime']}`,
    `Report-ID: ${report['report-id']}`,
    `Successful sessions: ${ok}`,
    `Failed sessions: ${failed}`,
    '',
    `The machine-readable report is attached as ${filename} (${TLSRPT_GZIP_MEDIA_TYPE}).`,
    `Contact: ${report['contact-info']}`,
    '',
  ].join('\r\n');
}

/** The §5.3 Subject: `Report Domain: <policy-domain> Submitter: <submitter> Report-ID: <<report-id>>`. */
export function tlsRptSubject(policyDomain: string, submitter: string, reportId: string): string {
  return `Report Domain: ${policyDomain} Submitter: ${submitter} Report-ID: <${reportId}>`;
}

const HEADER_CASE: Readonly<Record<string, string>> = { 'tls-report-domain': 'TLS-Report-Domain', 'tls-report-submitter': 'TLS-Report-Submitter' };

/**
 * Composes the RFC 8460 §5.3 report message (without DKIM: the transport signs it). Returns the raw RFC 5322
 * message. Loads `nodemailer` (a peer dependency) on first use.
 */
export async function composeTlsRptMail(report: TlsRptReport, gzipped: Uint8Array, options: TlsRptMailOptions): Promise<Buffer> {
  const { default: MailComposer } = await import('nodemailer/lib/mail-composer');
  const policyDomain = report.policies[0]?.policy['policy-domain'];
  if (!policyDomain) throw new TlsRptError('TLSRPT_REPORT_INVALID', 'a report mail needs a report with at least one policy');
  const node = new MailComposer({
    messageId: options.messageId ?? `<${randomUUID()}@${options.submitter}>`,
    from: options.from,
    to: options.to,
    // §5.3: Subject = "Report" FWS "Domain:" FWS domain-name FWS "Submitter:" FWS domain-name FWS "Report-ID:" FWS "<" id ">"
    subject: tlsRptSubject(policyDomain, options.submitter, report['report-id']),
    // §5.3: these two header fields MUST be included.
    headers: { 'TLS-Report-Domain': policyDomain, 'TLS-Report-Submitter': options.submitter },
    normalizeHeaderKey: (key: string) => HEADER_CASE[key.toLowerCase()] ?? key,
    text: options.text ?? describeReport(report, options.submitter, options.filename),
    attachments: [
      // §5.3: the report as application/tlsrpt+gzip, named as §5.1 says.
      { filename: options.filename, content: Buffer.from(gzipped), contentType: TLSRPT_GZIP_MEDIA_TYPE, contentTransferEncoding: 'base64' },
    ],
  }).compile();
  // §5.3: the top-level media type is multipart/report with report-type "tlsrpt" (Nodemailer would say mixed).
  node.setHeader('Content-Type', 'multipart/report; report-type=tlsrpt');
  quoteAttachmentName(node, options.filename);
  return node.build();
}

/** A §5.1 file name that fits one quoted MIME parameter: printable ASCII without quotes or backslashes. */
const QUOTABLE_NAME = /^[\x20-\x7e]+$/;

/**
 * Writes the attachment's name as one quoted parameter, `filename="<name>"` (and `name="<name>"` in its
 * Content-Type), as the RFC 8460 §5.3 example and the large report senders do. Nodemailer would split a name this
 * long into RFC 2231 continuations (`filename*0=…; filename*1=…`), which some report parsers do not reassemble.
 */
function quoteAttachmentName(root: { childNodes?: unknown[] }, filename: string): void {
  if (!QUOTABLE_NAME.test(filename) || /["\\]/.test(filename)) {
    throw new TlsRptError('TLSRPT_REPORT_INVALID', `report file name ${JSON.stringify(filename)} is not printable ASCII without quotes (RFC 8460 §5.1)`);
  }
  type Node = { filename?: string; childNodes?: Node[]; setHeader(key: string, value: unknown): void };
  const attachment = ((root.childNodes ?? []) as Node[]).find((child) => child.filename === filename);
  if (!attachment) return;
  // `prepared` headers are emitted as given (folded only at whitespace, never inside the quoted name).
  attachment.setHeader('Content-Type', { prepared: true, foldLines: true, value: `${TLSRPT_GZIP_MEDIA_TYPE}; name="${filename}"` });
  attachment.setHeader('Content-Disposition', { prepared: true, foldLines: true, value: `attachment; filename="${filename}"` });
}

/**
 * Sends one report by mail through `transport` (§5.3). Resolves when the transport accepted the message for the
 * recipient.
 *
 * @throws {TlsRptError} `TLSRPT_DELIVERY_FAILED` when the transport fails or rejects the recipient.
 */
export async function sendTlsRptMail(transport: TlsRptMailTransport, report: TlsRptReport, gzipped: Uint8Array, options: TlsRptMailOptions): Promise<TlsRptMailResult> {
  const policyDomain = report.policies[0]?.policy['policy-domain'] ?? '';
  const messageId = options.messageId ?? `<${randomUUID()}@${options.submitter}>`;
  const raw = await composeTlsRptMail(report, gzipped, { ...options, messageId });
  const dkim: DKIMOptions | undefined = options.dkim
    ? {
        ...options.dkim,
        // §5.3: the TLS-Report header fields SHOULD be covered by the DKIM signature.
        headerFieldNames:
          options.dkim.headerFieldNames ??
          'From:Sender:Reply-To:Subject:Date:Message-ID:To:Cc:MIME-Version:Content-Type:Content-Transfer-Encoding:TLS-Report-Domain:TLS-Report-Submitter',
      }
    : undefined;
  const mail: SendMailOptions & { [TLSRPT_MAIL_MARKER]: { policyDomain: string; reportId: string } } = {
    raw,
    envelope: { from: options.from, to: [options.to] },
    ...(dkim ? { dkim } : {}),
    [TLSRPT_MAIL_MARKER]: { policyDomain, reportId: report['report-id'] },
  };
  let info: unknown;
  try {
    // §5.3: the report session must not be counted in the next report.
    info = await runAsReportDelivery({ policyDomain, reportId: report['report-id'] }, () => transport.sendMail(mail));
  } catch (error) {
    const e = error as { code?: unknown; responseCode?: unknown; response?: unknown };
    throw new TlsRptError('TLSRPT_DELIVERY_FAILED', `report mail to ${options.to} failed: ${error instanceof Error ? error.message : String(error)}`, {
      cause: error,
      domain: policyDomain,
      details: {
        to: options.to,
        ...(typeof e?.code === 'string' ? { code: e.code } : {}),
        ...(typeof e?.responseCode === 'number' ? { responseCode: e.responseCode } : {}),
        ...(typeof e?.response === 'string' ? { response: e.response.slice(0, 300) } : {}),
      },
    });
  }
  const result = (info ?? {}) as { response?: unknown; rejected?: unknown; accepted?: unknown };
  const rejected = Array.isArray(result.rejected) ? result.rejected : [];
  const accepted = Array.isArray(result.accepted) ? result.accepted : undefined;
  if (rejected.length > 0 || (accepted !== undefined && accepted.length === 0)) {
    throw new TlsRptError('TLSRPT_DELIVERY_FAILED', `report mail to ${options.to} was rejected`, {
      domain: policyDomain,
      details: { to: options.to, ...(typeof result.response === 'string' ? { response: result.response.slice(0, 300) } : {}) },
    });
  }
  // The transport reports a Message-ID of its own for raw messages; the one in the message is ours.
  return { messageId, ...(typeof result.response === 'string' ? { response: result.response } : {}) };
}

/** What the reporter accepts as `mailTransport`: a transporter, or options / a URL for `nodemailer.createTransport`. */
export type TlsRptMailTransportInput = TlsRptMailTransport | SMTPTransportOptions | string;

/**
 * Returns a transporter for `input`: the transporter itself, or a new one from `nodemailer.createTransport` (then
 * `owned` is true and the caller closes it).
 */
export async function createMailTransport(input: TlsRptMailTransportInput): Promise<{ transport: TlsRptMailTransport; owned: boolean }> {
  if (typeof input === 'object' && input !== null && typeof (input as TlsRptMailTransport).sendMail === 'function') {
    return { transport: input as TlsRptMailTransport, owned: false };
  }
  const { default: nodemailer } = await import('nodemailer');
  const transport = nodemailer.createTransport(input as SMTPTransportOptions | string);
  return { transport, owned: true };
}

/** Options of {@link postTlsRptReport}. */
export interface PostTlsRptReportOptions {
  /** The undici dispatcher (e.g. `new Agent({ connect: { ca } })`). Default: undici's global dispatcher. */
  dispatcher?: Dispatcher;
  /** Overall deadline for connect, request and response, in ms. Default 60 000. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** `User-Agent` header. Default `mta-sts-sender-tlsrpt`. */
  userAgent?: string;
  /** For the report-session marker: the policy domain and report id being delivered. */
  context?: { policyDomain: string; reportId: string };

  // ---- FOR TESTS ONLY ----
  /**
   * FOR TESTS ONLY: connect to this port instead of the URL's (a loopback test server cannot listen on 443). The
   * request goes to the same host name, so SNI and certificate checks are unchanged.
   */
  httpsPort?: number;
}

/** Result of a successful HTTPS delivery. */
export interface TlsRptHttpsResult {
  status: number;
}

/**
 * POSTs a gzipped report to an `https:` report URI (RFC 8460 §5.4). 2xx is success; redirects are not followed.
 *
 * @throws {TlsRptError} `TLSRPT_HTTP_STATUS` (non-2xx) or `TLSRPT_DELIVERY_FAILED` (network, TLS, timeout).
 */
export async function postTlsRptReport(url: string, gzipped: Uint8Array, options: PostTlsRptReportOptions = {}): Promise<TlsRptHttpsResult> {
  const target = new URL(url);
  if (target.protocol !== 'https:') throw new TlsRptError('TLSRPT_DELIVERY_FAILED', `not an https URL: ${url}`, { details: { url } });
  if (options.httpsPort !== undefined) target.port = String(options.httpsPort);
  const timeoutMs = options.timeoutMs ?? 60_000;
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, timeoutMs);
  timer.unref?.();
  const onAbort = () => controller.abort();
  if (options.signal) {
    if (options.signal.aborted) controller.abort();
    else options.signal.addEventListener('abort', onAbort, { once: true });
  }
  const context = options.context ?? { policyDomain: target.hostname, reportId: '' };
  try {
    const pending = runAsReportDelivery(context, () =>
      request(target, {
        method: 'POST',
        // §5.4: the gzipped report SHOULD use the media type application/tlsrpt+gzip.
        headers: { 'content-type': TLSRPT_GZIP_MEDIA_TYPE, 'user-agent': options.userAgent ?? 'mta-sts-sender-tlsrpt' },
        body: Buffer.from(gzipped),
        signal: controller.signal,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        ...(options.dispatcher ? { dispatcher: options.dispatcher } : {}),
      }),
    );
    // undici leaves a request queued behind a connection attempt until the connect timeout, whatever the signal says:
    // the deadline is kept here (the late answer, if any, is dropped).
    const response = await Promise.race([pending, rejectOnAbort(controller.signal)]).catch((error: unknown) => {
      void pending.then((late) => late.body.destroy(), () => undefined);
      throw error;
    });
    const status = response.statusCode;
    // The answer's body is of no use; read and drop a bounded amount so the connection can be reused.
    await response.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
    // §5.4: the receiver MUST answer with a "successful" (2xx) status; redirects are not followed.
    if (status < 200 || status > 299) {
      const location = response.headers.location;
      throw new TlsRptError('TLSRPT_HTTP_STATUS', `report POST to ${url} answered ${status}`, {
        details: { url, status, ...(typeof location === 'string' ? { location } : {}) },
      });
    }
    return { status };
  } catch (error) {
    if (error instanceof TlsRptError) throw error;
    const reason = timedOut ? 'timeout' : options.signal?.aborted ? 'aborted' : (errorCodeOf(error) ?? 'error');
    throw toTlsRptError(error, 'TLSRPT_DELIVERY_FAILED', `report POST to ${url} failed (${reason})`, { details: { url, reason, ...(timedOut ? { timeoutMs } : {}) } });
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
  }
}

/** A promise that rejects when `signal` fires (never resolves). */
function rejectOnAbort(signal: AbortSignal): Promise<never> {
  return new Promise<never>((_, reject) => {
    if (signal.aborted) reject(new Error('aborted'));
    else signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
  });
}

/** Options of {@link createReportHttpsAgent}. */
export interface ReportHttpsAgentOptions {
  /** Resolve report hosts through this resolver (the library's DNS seam) instead of the operating system. */
  resolver?: DnsResolver;
  /** Extra trust anchors (PEM), e.g. a test CA. Replaces the default roots when given. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** DNS deadline per lookup. Default 10 000 ms. */
  dnsTimeoutMs?: number;
  /** Connect timeout. Default 30 000 ms. */
  connectTimeoutMs?: number;
  /** Connect to internal addresses too (loopback, private, link-local, …): test worlds only. Default false. */
  allowInternalDestinations?: boolean;
}

/**
 * An undici Agent for report POSTs: resolves through `resolver`, trusts `ca`, keeps no idle sockets for long, and
 * (unless `allowInternalDestinations`) never connects to an internal address, checked at connect time on the
 * address the socket uses (see `internal-address.ts`).
 */
export function createReportHttpsAgent(options: ReportHttpsAgentOptions = {}): Agent {
  const dnsTimeoutMs = options.dnsTimeoutMs ?? 10_000;
  const connect = {
    ...(options.ca !== undefined ? { ca: options.ca } : {}),
    timeout: options.connectTimeoutMs ?? 30_000,
  };
  return new Agent({
    connect:
      options.allowInternalDestinations === true
        ? { ...connect, ...(options.resolver ? { lookup: createResolverLookup(options.resolver, dnsTimeoutMs) as never } : {}) }
        : guardedConnector({ ...connect, lookup: publicAddressLookup(options.resolver, dnsTimeoutMs) as never }),
    keepAliveTimeout: 1_000,
    keepAliveMaxTimeout: 5_000,
  });
}
