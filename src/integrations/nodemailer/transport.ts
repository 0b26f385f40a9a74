/**
 * A Nodemailer transport that delivers straight to the recipients' MX hosts and applies MTA-STS (RFC 8461).
 *
 * ```ts
 * const transporter = nodemailer.createTransport(createMtaStsTransport({ name: 'mail.example.org' }));
 * const info = await transporter.sendMail({ from, to, subject, text });
 * ```
 *
 * Recipients are grouped by domain; each domain follows its own delivery plan (policy + MX hosts):
 * - `enforce`: only MX hosts the policy lists (§4.1), STARTTLS required, TLS 1.2+, a certificate that chains to a
 *   trusted root, is valid now and names the dialled MX host (§4.2; connection by IP with SNI = the MX name). A
 *   host that fails is not given the message; the next one is tried. When none passes, the domain fails with a
 *   temporary `EMTASTS` error (451 4.7.5) listing every host tried (§5, §5.1: defer, never bounce).
 * - `testing`: delivered as without MTA-STS (opportunistic STARTTLS; when the TLS handshake fails, retried in
 *   plaintext like Postfix, unless `plaintextFallback: false`); what would have failed is recorded and emitted.
 * - `none` or no usable policy: opportunistic STARTTLS (`requireTlsEverywhere` makes TLS mandatory).
 *
 * Several domains in one message: each is delivered on its own. The send fails only when every domain failed;
 * otherwise it resolves, and the recipients of failed domains are in `info.rejected` (and in `info.deferred` when
 * the failure is temporary), with the reason in `info.rejectedErrors` and `info.mtaSts[domain].error`.
 *
 * Every session is recorded with the TLS-RPT recorder (RFC 8460), `no-policy-found` sessions included, and every
 * decision is emitted as `decision` on the transport and on the `mta-sts-sender:decision` diagnostics channel.
 *
 * No connection is pooled or reused: each domain gets fresh sessions. DANE (RFC 7672) is not implemented; RFC 8461
 * §2 lets it take precedence where a domain has both. To send through a smart host, use {@link guardTransport} on
 * an existing SMTP transport: it applies the smart host's own policy (RFC 8461 §3.4).
 */
import { EventEmitter } from 'node:events';
import os from 'node:os';
import type { MailMessage, Transport } from 'nodemailer';
import type { SMTPConnectionOptions, SMTPEnvelope } from 'nodemailer/lib/smtp-connection';
import type { MtaSts, MtaStsOptions } from '../../engine.js';
import { MtaStsError } from '../../errors.js';
import { TLSRPT_MAIL_MARKER } from '../../tlsrpt/deliver.js';
import { currentReportDelivery } from '../../tlsrpt/recorder.js';
import type { Logger } from '../../logger.js';
import type { TlsRptRecorder } from '../../tlsrpt/types.js';
import { anyOf, bool, ipAddress, logger, methods, notHere, num, port, str, type OptionSpec } from '../../options.js';
import { requirePeer } from '../../peers.js';
import { HOOKS_OPTION_SPEC, pickOptions, validateIntegrationOptions } from '../../option-specs.js';
import { MtaStsHooks, type HooksDeliveryPlan, type MtaStsDecision, type MtaStsHooksOptions } from '../hooks.js';
import type { SmtpConnectionClass } from './session.js';
import { buildSendResult, deliverToDomain, emitOutcome, failedUnexpectedly, groupRecipients, MtaStsDeliveryError, type DeliverOptions, type DomainDeliveryResult, type MtaStsSentMessageInfo } from './deliver.js';

/** The transport's version, reported to Nodemailer. */
export const TRANSPORT_VERSION = '0.1.0';

/** Options of {@link createMtaStsTransport}. Engine options are used only when `mtaSts` is not given. */
export interface MtaStsTransportOptions extends MtaStsOptions {
  /** The engine (shared policy cache). Default: one created from the engine options, closed by `close()`. */
  mtaSts?: MtaSts;
  /** Hooks to use (events, recorder). Default: new hooks around `mtaSts`. */
  hooks?: MtaStsHooks;
  /** TLS-RPT recorder fed with every session outcome (RFC 8460). */
  recorder?: TlsRptRecorder;
  /** Host name announced in EHLO. Default `os.hostname()`. */
  name?: string;
  /** Time to establish the TCP connection, in ms. Default 30000. */
  connectionTimeoutMs?: number;
  /** Time to wait for the greeting (and for the STARTTLS handshake), in ms. Default 30000. */
  greetingTimeoutMs?: number;
  /** Inactivity timeout of a session, in ms. Default 300000 (RFC 5321 §4.5.3.2 suggests minutes). */
  socketTimeoutMs?: number;
  /**
   * Time to wait for the reply to STARTTLS, in ms. Default 5000. An MX (or a path attacker) that swallows the command
   * is then refused after this long and reported as `starttls-not-supported` (RFC 8460 §4.3.1), not a connection
   * failure after the whole socket timeout; under `enforce` the domain is deferred with 4.7.5.
   */
  starttlsTimeoutMs?: number;
  /** Local address to bind to. */
  localAddress?: string;
  /** Library logger (decisions, warnings). */
  logger?: Logger;
  /** Nodemailer's SMTP logger (bunyan-style, or `true` for the console), passed to each SMTP connection. */
  smtpLogger?: SMTPConnectionOptions['logger'];
  /** Log SMTP traffic through `smtpLogger`. */
  debug?: boolean;
  /** Retry in plaintext after a failed TLS handshake when the domain does not require TLS. Default true (never under enforce). */
  plaintextFallback?: boolean;
  /** Addresses (A/AAAA) tried per MX host, an integer from 1 to 64. Default 2. */
  maxAddressesPerMx?: number;
  /** Sessions (connection attempts, a plaintext retry not counted) per recipient domain and message, 1 to 1000. Default 8. */
  maxSessionsPerDomain?: number;
  /** Recipient domains of one message delivered at the same time, 1 to 1000. Default 4. */
  maxConcurrentDomains?: number;

  // ---- FOR TESTS ONLY ----
  /** FOR TESTS ONLY: the SMTP port of MX hosts (RFC 5321 delivers on 25), e.g. the test world's `smtpPort`. Default 25. */
  smtpPort?: number;
}

const SMART_HOST = 'createMtaStsTransport() delivers straight to each recipient domain\'s MX hosts and has no SMTP server of its own; to send through a smart host, create nodemailer.createTransport({ host, port, auth, ... }) and add MTA-STS to it with guardTransport()';
const POLICY_TLS = 'STARTTLS and certificate checks follow each domain\'s MTA-STS policy (RFC 8461 §4.2); set requireTlsEverywhere: true to require TLS for every domain';

/** Every option of {@link createMtaStsTransport}: the hooks' and the engine's, plus the transport's own. */
export const TRANSPORT_OPTION_SPEC: OptionSpec = Object.freeze({
  ...HOOKS_OPTION_SPEC,
  hooks: methods('MTA-STS hooks (createMtaStsHooks())', ['planDelivery', 'verifySession', 'handshakeFailed', 'recordOutcome', 'emitDecision']),
  name: str('a host name'),
  connectionTimeoutMs: num(1, 3_600_000, { unit: 'ms' }),
  greetingTimeoutMs: num(1, 3_600_000, { unit: 'ms' }),
  socketTimeoutMs: num(1, 86_400_000, { unit: 'ms' }),
  starttlsTimeoutMs: num(1, 600_000, { unit: 'ms' }),
  localAddress: ipAddress,
  smtpLogger: anyOf('true, false or a bunyan-style logger', bool, logger),
  debug: bool,
  maxAddressesPerMx: num(1, 64, { integer: true }),
  maxSessionsPerDomain: num(1, 1000, { integer: true }),
  maxConcurrentDomains: num(1, 1000, { integer: true }),
  // Options of Nodemailer's SMTP transport that have no meaning for direct MX delivery: refused, not ignored.
  host: notHere(SMART_HOST),
  auth: notHere(SMART_HOST),
  pool: notHere(SMART_HOST),
  secure: notHere(SMART_HOST),
  service: notHere(SMART_HOST),
  url: notHere(SMART_HOST),
  proxy: notHere(SMART_HOST),
  tls: notHere(POLICY_TLS),
  requireTLS: notHere(POLICY_TLS),
  ignoreTLS: notHere(POLICY_TLS),
  opportunisticTLS: notHere(POLICY_TLS),
  // Nodemailer's `port`: MX hosts listen on 25 (Nodemailer's timeout names get "did you mean ...Ms?").
  port: notHere('MX hosts are reached on port 25 (RFC 5321); smtpPort changes it FOR TESTS ONLY. To send to a server of your own, use nodemailer.createTransport({ host, port }) with guardTransport()'),
  // FOR TESTS ONLY
  smtpPort: port,
});

/** Nodemailer's SMTP client, loaded at creation (nodemailer is an optional peer: a missing one is reported by name). */
export function loadSmtpConnection(feature: string): SmtpConnectionClass {
  const loaded = requirePeer<SmtpConnectionClass | { default: SmtpConnectionClass }>('nodemailer', feature, 'nodemailer/lib/smtp-connection');
  return typeof loaded === 'function' ? loaded : loaded.default;
}

export type SendCallback = (error: Error | null, info?: MtaStsSentMessageInfo) => void;

/**
 * The transport object. Pass it to `nodemailer.createTransport()`. Emits `decision` ({@link MtaStsDecision}) and
 * `outcome` (TLS-RPT session outcomes), forwarded from its hooks.
 */
export class MtaStsTransport extends EventEmitter implements Transport<MtaStsSentMessageInfo> {
  readonly name = 'MTA-STS';
  readonly version = TRANSPORT_VERSION;
  readonly hooks: MtaStsHooks;
  private readonly options: MtaStsTransportOptions;
  private readonly ownsHooks: boolean;
  private readonly smtpConnection: SmtpConnectionClass;
  private readonly forward = (decision: MtaStsDecision) => this.emit('decision', decision);
  private readonly forwardOutcome = (outcome: unknown) => emitOutcome(this, this.hooks.logger, outcome);

  constructor(options: MtaStsTransportOptions = {}) {
    super({ captureRejections: true });
    validateIntegrationOptions('createMtaStsTransport()', options, TRANSPORT_OPTION_SPEC);
    this.smtpConnection = loadSmtpConnection('createMtaStsTransport()');
    this.options = options;
    this.ownsHooks = options.hooks === undefined;
    this.hooks = options.hooks ?? new MtaStsHooks(pickOptions<MtaStsHooksOptions>(options, HOOKS_OPTION_SPEC));
    this.hooks.on('decision', this.forward);
    this.hooks.on('outcome', this.forwardOutcome);
  }

  /** An async listener rejected (EventEmitter `captureRejections`): logged, never an unhandled rejection. */
  override [EventEmitter.captureRejectionSymbol](error: unknown, event: string | symbol): void {
    this.hooks.logger.warn?.(`mta-sts: a ${String(event)} listener failed`, { error: String(error) });
  }

  get mtaSts(): MtaSts {
    return this.hooks.mtaSts;
  }

  send(mail: MailMessage<MtaStsSentMessageInfo>, callback: SendCallback): void {
    let returned = false;
    const done: SendCallback = (error, info) => {
      if (returned) return;
      returned = true;
      callback(error, info);
    };
    this.deliver(mail).then(
      (info) => setImmediate(() => done(null, info)),
      (error: Error) => setImmediate(() => done(error)),
    );
  }

  /** Nothing to connect to in advance (MX hosts depend on the recipients): resolves `true`. */
  verify(callback?: (error: Error | null, success?: boolean) => void): Promise<boolean> | void {
    if (callback) {
      setImmediate(() => callback(null, true));
      return;
    }
    return Promise.resolve(true);
  }

  isIdle(): boolean {
    return true;
  }

  /** Releases the engine when the transport created it. */
  close(): void {
    this.hooks.off('decision', this.forward);
    this.hooks.off('outcome', this.forwardOutcome);
    if (this.ownsHooks) void this.hooks.close();
  }

  private async deliver(mail: MailMessage<MtaStsSentMessageInfo>): Promise<MtaStsSentMessageInfo> {
    const envelope = mail.message.getEnvelope() as { from: string | false; to: string[] };
    const messageId = mail.message.messageId();
    const to = [...(envelope.to ?? [])];
    if (to.length === 0) throw Object.assign(new Error('No recipients defined'), { code: 'EENVELOPE', command: 'API' });
    const message = await mail.message.build();

    const { groups, invalid } = groupRecipients(to);

    const base: SMTPEnvelope = { from: envelope.from };
    if (mail.data.dsn) base.dsn = mail.data.dsn;
    if (mail.data.requireTLSExtensionEnabled) base.requireTLSExtensionEnabled = true;

    // RFC 8460 §5.3: a TLS report is delivered despite TLS failures at the reporting domain. Only a report sent by
    // sendTlsRptMail() (inside its report-delivery context) qualifies: the marker alone is a plain mail option that
    // an application may copy from untrusted input, and it would switch `enforce` off for that message.
    const reportMail = (mail.data as Record<string, unknown>)[TLSRPT_MAIL_MARKER] !== undefined && currentReportDelivery() !== undefined;
    const results: Record<string, DomainDeliveryResult> = {};
    const domains = [...groups.entries()];
    const limit = this.options.maxConcurrentDomains ?? 4;
    let next = 0;
    const worker = async () => {
      while (next < domains.length) {
        const [domain, recipients] = domains[next++]!;
        results[domain] = await this.deliverDomain(domain, { ...base, to: recipients }, message, reportMail);
      }
    };
    await Promise.all(Array.from({ length: Math.min(limit, domains.length) }, worker));

    return buildSendResult({ envelope: { from: envelope.from, to }, messageId, order: domains.map(([d]) => d), results, invalid });
  }

  private async deliverDomain(domain: string, envelope: SMTPEnvelope & { to: string[] }, message: Buffer, reportMail: boolean): Promise<DomainDeliveryResult> {
    const hooks = this.hooks;
    let plan;
    try {
      plan = await hooks.planDelivery(domain, { reportDelivery: reportMail });
    } catch (error) {
      // The MX (or address) lookup failed: not a policy decision; a temporary failure when DNS is at fault.
      const temporary = !(error instanceof MtaStsError) || error.temporary;
      const err = new MtaStsDeliveryError(error instanceof MtaStsError && error.code === 'MTASTS_INVALID_DOMAIN' ? 'ENOMX' : 'EDNS', `${domain}: ${(error as Error).message}`, {
        temporary,
        enhanced: temporary ? '4.4.3' : '5.1.2',
        domain,
        recipients: envelope.to,
        cause: error,
      });
      hooks.emitDecision({ stage: 'delivery', action: 'failed', domain, reason: err.message });
      return { domain, recipients: envelope.to, status: 'failed', mode: 'none', policyStatus: 'temp-error', secure: false, validated: false, accepted: [], rejected: [...envelope.to], rejectedErrors: [err], attempts: [], error: err };
    }
    try {
      return await deliverToDomain(this.deliveryOptions(plan, envelope, message));
    } catch (error) {
      // An exception of ours (or of a seam) while delivering: never a bounce, never "delivered" (RFC 8461 §5.1).
      return failedUnexpectedly(hooks, plan, envelope.to, error);
    }
  }

  private deliveryOptions(plan: HooksDeliveryPlan, envelope: SMTPEnvelope & { to: string[] }, message: Buffer): DeliverOptions {
    const o = this.options;
    const connection: SMTPConnectionOptions = {
      name: o.name ?? os.hostname(),
      connectionTimeout: o.connectionTimeoutMs ?? 30_000,
      greetingTimeout: o.greetingTimeoutMs ?? 30_000,
      socketTimeout: o.socketTimeoutMs ?? 300_000,
      ...(o.localAddress ? { localAddress: o.localAddress } : {}),
      ...(o.smtpLogger !== undefined ? { logger: o.smtpLogger } : {}),
      ...(o.debug ? { debug: true } : {}),
    };
    return {
      hooks: this.hooks,
      plan,
      envelope,
      message,
      port: o.smtpPort ?? 25,
      connection,
      maxAddressesPerMx: o.maxAddressesPerMx ?? 2,
      maxSessions: o.maxSessionsPerDomain ?? 8,
      ...(o.plaintextFallback !== undefined ? { plaintextFallback: o.plaintextFallback } : {}),
      ...(o.starttlsTimeoutMs !== undefined ? { starttlsTimeoutMs: o.starttlsTimeoutMs } : {}),
      smtpConnection: this.smtpConnection,
    };
  }
}

/**
 * Creates the direct-to-MX MTA-STS transport for `nodemailer.createTransport()`. Every option is checked first:
 * a bad or unknown one throws an `MtaStsError` `MTASTS_INVALID_OPTIONS` (naming the option, the value and what was
 * expected), and a missing `nodemailer` throws `MTASTS_MISSING_PEER`, before any mail can be bounced.
 */
export function createMtaStsTransport(options: MtaStsTransportOptions = {}): MtaStsTransport {
  return new MtaStsTransport(options);
}
