/**
 * MTA-STS for an existing Nodemailer SMTP transport, in one line:
 *
 * ```ts
 * const transporter = nodemailer.createTransport({ host: 'mx1.example.com', port: 25 });
 * guardTransport(transporter, { mtaSts });
 * ```
 *
 * For every message, each recipient domain is checked: is the transport's host one of that domain's MX hosts (in
 * its MX records, or matching its MTA-STS policy's `mx` patterns)? (See `relay.ts` for the routing rules.)
 *
 * - Yes (direct MX delivery): the domain's policy governs the session. Under `enforce` a host the policy does not
 *   list is refused (`EMTASTS`, temporary), and otherwise the session must use STARTTLS with TLS 1.2+ and a
 *   certificate valid for the host name: the guard runs that domain's transaction itself, with Nodemailer's SMTP
 *   client and the transport's own settings (port, name, timeouts, auth, logger) plus `requireTLS: true`,
 *   `tls.servername` = the host, `rejectUnauthorized: true`, `minVersion: 'TLSv1.2'` and a strict
 *   `checkServerIdentity`, connecting to the host's address from the engine's resolver. Under `testing` / none it
 *   delivers with opportunistic TLS and reports. Sessions are recorded for TLS-RPT.
 * - Not an MX host the domain's `enforce` policy lists, and the guard was not told the host is a smart host: the
 *   domain is deferred (`EMTASTS`, 451 4.7.5), whatever the MX answer says. The MX answer is not authenticated: an
 *   attacker who leaves the host out of it must not turn a refused delivery into a relay without the domain's policy.
 * - No (a smart host: `relay: true`, or a domain without an `enforce` policy whose MX hosts do not include the
 *   transport's host): RFC 8461 §3.4 makes the smart host's domain the Policy Domain. The guard
 *   discovers the policy of the host's name and applies it to the hop, the smart host being its one MX host: under
 *   `enforce` the host must match the policy's `mx` patterns and the session needs STARTTLS, TLS 1.2+ and a
 *   certificate valid for the host name (SNI = the host), else the mail is deferred (451, never bounced, never sent
 *   in plaintext); under `testing` it is delivered and the failure reported (TLS-RPT, under the smart host's policy
 *   domain). Without a usable policy the message goes through the transport untouched, as without MTA-STS. A smart
 *   host given by IP address (or `localhost`) has no policy domain: passed through, and the guard says why. The guard
 *   says once per host what applies (`smart-host` event, logger) and emits a `relay` decision per domain.
 *
 * Pooled transports (`pool: true`) are refused: a pooled connection is shared by messages whose domains may need
 * different TLS requirements. Proxies configured on the transport are not used for the sessions the guard runs.
 */
import { EventEmitter } from 'node:events';
import type Mail from 'nodemailer/lib/mailer';
import type { MailMessage } from 'nodemailer';
import type { SMTPConnectionOptions, SMTPEnvelope } from 'nodemailer/lib/smtp-connection';
import { normalizeDomainOrUndefined } from '../../domain.js';
import type { DeliveryPlan, MxCandidate } from '../../plan/plan.js';
import { bool, describeValue, invalidOptionsError, notHere, num, type OptionSpec } from '../../options.js';
import { HOOKS_OPTION_SPEC, pickOptions, validateIntegrationOptions } from '../../option-specs.js';
import { MtaStsHooks, type MtaStsDecision, type MtaStsHooksOptions } from '../hooks.js';
import type { SmtpConnectionClass } from './session.js';
import { guardSessionOptions } from './guard-session.js';
import { SECURE_CONTEXT_HINT } from '../../tls/caller-tls.js';
import { loadSmtpConnection, TRANSPORT_OPTION_SPEC } from './transport.js';
import { buildSendResult, deliverToDomain, emitOutcome, failedUnexpectedly, groupRecipients, MtaStsDeliveryError, type DeliverOptions, type DomainDeliveryResult } from './deliver.js';
import { classifyDomain, deferredResult, type Classification, type HostDeclaration, passThroughResult, relayDecisionReason, relayedShare, routeSmartHost, smartHostReason, type SmartHostNotice, type SmartHostRoute } from './relay.js';

export type { SmartHostNotice } from './relay.js';

/** Options of {@link guardTransport}. Engine options are used only when neither `mtaSts` nor `hooks` is given. */
export interface GuardTransportOptions extends MtaStsHooksOptions {
  /** Hooks to use (shared events, recorder). Default: new hooks around `mtaSts`. */
  hooks?: MtaStsHooks;
  /**
   * The transport's host is a smart host (a relay, RFC 8461 §3.4), not an MX host of the recipient domains. Its name
   * is then the policy domain of the hop (a host given by IP address has none), and no MX lookups are made. Without
   * it, a recipient domain whose `enforce` policy does not list the host is deferred (451 4.7.5, `EMTASTS`): the MX
   * answer is not authenticated and cannot prove the host is a smart host. A domain whose policy lists the host is
   * delivered under that policy either way. Default false.
   */
  relay?: boolean;
  /** Addresses (A/AAAA) of the transport's host tried for a session the guard runs, an integer from 1 to 64. Default 2. */
  maxAddressesPerMx?: number;
  /** Sessions (connection attempts, a plaintext retry not counted) per recipient domain and message, 1 to 1000. Default 8. */
  maxSessionsPerDomain?: number;
  /**
   * In a session the guard runs, time to wait for the reply to STARTTLS, in ms. Default 5000. Unanswered: reported as
   * `starttls-not-supported` (RFC 8460 §4.3.1) and, under `enforce`, deferred with 4.7.5.
   */
  starttlsTimeoutMs?: number;
}

/** Every option of {@link guardTransport}: the hooks' and the engine's, plus the guard's own. */
export const GUARD_OPTION_SPEC: OptionSpec = Object.freeze({
  ...HOOKS_OPTION_SPEC,
  hooks: TRANSPORT_OPTION_SPEC.hooks!,
  relay: bool,
  maxAddressesPerMx: num(1, 64, { integer: true }),
  maxSessionsPerDomain: num(1, 1000, { integer: true }),
  starttlsTimeoutMs: num(1, 600_000, { unit: 'ms' }),
  maxAddresses: notHere('renamed: maxAddressesPerMx (addresses tried per MX host) and maxSessionsPerDomain (sessions per domain and message) are separate options'),
});

/** The minimal shape of Nodemailer's SMTP transport the guard relies on. */
export interface SmtpTransportLike {
  name: string;
  options: SMTPConnectionOptions & { forceAuth?: boolean; pool?: boolean; proxy?: string; getSocket?: unknown };
  send(mail: MailMessage, callback: (error: Error | null, info?: unknown) => void): void;
  getAuth?(authOpts?: unknown): unknown;
}

type SendCallback = (error: Error | null, info?: unknown) => void;
type SentInfo = { accepted?: string[]; rejected?: string[]; rejectedErrors?: Error[]; response?: string };

const GUARDED = Symbol.for('mta-sts-sender.guard');

/** The route of a smart host given by IP address (or `localhost`): no policy domain, nothing to discover (§3.4). */
const NO_POLICY_DOMAIN: SmartHostRoute = Object.freeze({ kind: 'none', policy: Object.freeze({ mode: 'none', status: 'none' }) }) as SmartHostRoute;

/** The recipient domains of one message, sorted by route. */
interface Routes {
  direct: Map<string, { plan: DeliveryPlan; candidate: MxCandidate }>;
  deferred: Map<string, DomainDeliveryResult>;
  relayed: string[];
}

/**
 * A guard installed on a transport. Emits `decision` ({@link MtaStsDecision}), `outcome` (TLS-RPT outcomes) and
 * `smart-host` ({@link SmartHostNotice}, once per host).
 */
export class MtaStsGuard extends EventEmitter {
  readonly hooks: MtaStsHooks;
  readonly host: string;
  private readonly transport: SmtpTransportLike;
  private readonly originalSend: SmtpTransportLike['send'];
  private readonly options: GuardTransportOptions;
  private readonly ownsHooks: boolean;
  private readonly smtpConnection: SmtpConnectionClass;
  private readonly notified = new Set<string>();
  private readonly forward = (decision: MtaStsDecision) => this.emit('decision', decision);
  private readonly forwardOutcome = (outcome: unknown) => emitOutcome(this, this.hooks.logger, outcome);

  constructor(transport: SmtpTransportLike, options: GuardTransportOptions) {
    super({ captureRejections: true });
    validateIntegrationOptions('guardTransport()', options, GUARD_OPTION_SPEC);
    this.smtpConnection = loadSmtpConnection('guardTransport()');
    this.transport = transport;
    this.options = options;
    this.ownsHooks = options.hooks === undefined;
    this.hooks = options.hooks ?? new MtaStsHooks(pickOptions<MtaStsHooksOptions>(options, HOOKS_OPTION_SPEC));
    this.hooks.on('decision', this.forward);
    this.hooks.on('outcome', this.forwardOutcome);
    this.host = String(transport.options.host ?? 'localhost');
    const own = Object.prototype.hasOwnProperty.call(transport, 'send');
    this.originalSend = transport.send;
    const guard = this;
    const guardedSend = function (this: unknown, mail: MailMessage, callback: SendCallback): void {
      guard.send(mail, callback);
    };
    (transport as unknown as Record<symbol, unknown>)[GUARDED] = { guard: this, own };
    transport.send = guardedSend;
  }

  /** An async listener rejected (EventEmitter `captureRejections`): logged, never an unhandled rejection. */
  override [EventEmitter.captureRejectionSymbol](error: unknown, event: string | symbol): void {
    this.hooks.logger.warn?.(`mta-sts: a ${String(event)} listener failed`, { error: String(error) });
  }

  /** Removes the guard: the transport sends as before. */
  unguard(): void {
    const state = (this.transport as unknown as Record<symbol, { guard: MtaStsGuard; own: boolean } | undefined>)[GUARDED];
    if (state?.guard !== this) return;
    if (state.own) this.transport.send = this.originalSend;
    else delete (this.transport as Partial<SmtpTransportLike>).send;
    delete (this.transport as unknown as Record<symbol, unknown>)[GUARDED];
    this.hooks.off('decision', this.forward);
    this.hooks.off('outcome', this.forwardOutcome);
    if (this.ownsHooks) void this.hooks.close();
  }

  /** The transport's own send, as without the guard. */
  private passThrough(mail: MailMessage): Promise<{ error?: Error; info?: SentInfo }> {
    return new Promise((resolve) => this.originalSend.call(this.transport, mail, (error, info) => resolve(error ? { error } : { info: (info ?? {}) as SentInfo })));
  }

  /** Says once per host what applies to mail relayed through it (`smart-host` event, logger), and emits `relay` decisions. */
  private announceRelay(domains: string[], policyDomain: string | undefined, route: SmartHostRoute | undefined): void {
    const mode = route?.kind === 'apply' ? route.plan.mode : 'none';
    for (const domain of domains) {
      const reason = relayDecisionReason(domain, this.host, policyDomain, route);
      this.hooks.emitDecision({ stage: 'relay', action: 'relay', domain, mode, ...(route?.kind === 'apply' ? { plan: route.plan } : {}), mx: this.host, ...(policyDomain ? { policyDomain } : {}), reason });
    }
    if (this.notified.has(this.host)) return;
    this.notified.add(this.host);
    const reason = smartHostReason(this.host, policyDomain, route);
    const level = route?.kind === 'apply' ? 'info' : 'warn';
    this.hooks.logger[level]?.(`mta-sts: ${reason}`, { host: this.host, domains, ...(policyDomain ? { policyDomain } : {}), mode });
    try {
      this.emit('smart-host', { host: this.host, domains, ...(policyDomain ? { policyDomain } : {}), mode, reason } satisfies SmartHostNotice);
    } catch (error) {
      // A listener's bug must not fail a send (after direct domains were delivered, a retry would duplicate them).
      this.hooks.logger.warn?.('mta-sts: a smart-host listener threw', { error: String(error) });
    }
  }

  private send(mail: MailMessage, callback: SendCallback): void {
    let returned = false;
    const done: SendCallback = (error, info) => {
      if (returned) return;
      returned = true;
      callback(error, info);
    };
    this.guardedSend(mail).then(
      (result) => setImmediate(() => done(result.error ?? null, result.info)),
      (error: Error) => setImmediate(() => done(error)),
    );
  }

  private async guardedSend(mail: MailMessage): Promise<{ error?: Error; info?: unknown }> {
    const envelope = mail.message.getEnvelope() as { from: string | false; to: string[] };
    const to = [...(envelope.to ?? [])];
    const { groups, invalid } = groupRecipients(to);
    const domains = [...groups.keys()];
    const hostName = normalizeDomainOrUndefined(this.host);
    // RFC 8461 §3.4: the smart host's domain is the policy domain. An IP address (or localhost) has none.
    const policyDomain = hostName !== undefined && hostName !== 'localhost' ? hostName : undefined;
    // No recipient domain to route (no or only invalid recipients): Nodemailer's own answer, as without the guard.
    if (domains.length === 0) return this.passThrough(mail);
    const routes = await this.sortDomains(groups, hostName ?? this.host, { named: policyDomain !== undefined, smartHost: this.options.relay === true });
    const route = routes.relayed.length === 0 ? undefined : policyDomain === undefined ? NO_POLICY_DOMAIN : await routeSmartHost(this.hooks, policyDomain);
    if (route) this.announceRelay(routes.relayed, policyDomain, route);
    if (routes.direct.size === 0 && routes.deferred.size === 0 && route?.kind === 'none') return this.relayUntouched(mail, routes.relayed, groups, policyDomain, route);

    const messageId = mail.message.messageId();
    const message = await mail.message.build();
    const base: SMTPEnvelope = { from: envelope.from };
    if (mail.data.dsn) base.dsn = mail.data.dsn;
    const deliver = (plan: DeliveryPlan, candidate: MxCandidate, recipients: string[]) => this.deliverSafely(plan, recipients, guardSessionOptions({ transport: this.transport, options: this.options, hooks: this.hooks, smtpConnection: this.smtpConnection, mail, plan, candidate, envelope: { ...base, to: recipients }, message }));
    const results: Record<string, DomainDeliveryResult> = Object.fromEntries(routes.deferred);
    await Promise.all([
      ...[...routes.direct].map(async ([domain, { plan, candidate }]) => {
        results[domain] = await deliver(plan, candidate, groups.get(domain)!);
      }),
      (async () => {
        if (route) Object.assign(results, await this.deliverRelayed(mail, route, routes.relayed, groups, policyDomain, deliver));
      })(),
    ]);
    return { info: buildSendResult({ envelope: { from: envelope.from, to }, messageId, order: domains, results, invalid }) };
  }

  /** The whole message through the transport untouched: Nodemailer's own result, plus `mtaSts` saying how each domain was relayed. */
  private async relayUntouched(mail: MailMessage, domains: string[], groups: Map<string, string[]>, policyDomain: string | undefined, route: SmartHostRoute | undefined): Promise<{ error?: Error; info?: unknown }> {
    const sent = await this.passThrough(mail);
    if (sent.info && typeof sent.info === 'object') {
      (sent.info as { mtaSts?: unknown }).mtaSts = Object.fromEntries(domains.map((d) => [d, passThroughResult(d, groups.get(d)!, this.host, policyDomain, route?.policy, sent.info!)]));
    }
    return sent;
  }

  /** Which domains does this transport deliver to directly (its host is one of their MX hosts), relay, or defer? */
  private async sortDomains(groups: Map<string, string[]>, host: string, declared: HostDeclaration): Promise<Routes> {
    const domains = [...groups.keys()];
    const found = await Promise.all(
      domains.map((domain) => classifyDomain(this.hooks, domain, host, declared).catch((error: unknown): Classification => ({ policy: { mode: 'none', status: 'temp-error' }, defer: error ?? new Error('classification failed') }))),
    );
    const routes: Routes = { direct: new Map(), deferred: new Map(), relayed: [] };
    domains.forEach((domain, i) => {
      const { plan, candidate, policy, defer, reason } = found[i]!;
      if (defer !== undefined) routes.deferred.set(domain, deferredResult(this.hooks, this.host, domain, groups.get(domain)!, policy, defer, domain, reason));
      else if (plan && candidate) routes.direct.set(domain, { plan, candidate });
      else routes.relayed.push(domain);
    });
    return routes;
  }

  /**
   * The relayed domains, in one transaction with the smart host: under its policy (RFC 8461 §3.4), deferred when
   * that policy could not be determined, or through the transport untouched when it has no usable policy.
   */
  private async deliverRelayed(mail: MailMessage, route: SmartHostRoute, relayed: string[], groups: Map<string, string[]>, policyDomain: string | undefined, deliver: (plan: DeliveryPlan, candidate: MxCandidate, recipients: string[]) => Promise<DomainDeliveryResult>): Promise<Record<string, DomainDeliveryResult>> {
    const recipients = relayed.flatMap((d) => groups.get(d)!);
    if (route.kind === 'defer') return Object.fromEntries(relayed.map((d) => [d, deferredResult(this.hooks, this.host, d, groups.get(d)!, route.policy, route.cause, policyDomain ?? this.host)]));
    if (route.kind === 'apply') {
      const hop = await deliver(route.plan, route.candidate, recipients);
      return Object.fromEntries(relayed.map((d) => [d, relayedShare(hop, d, groups.get(d)!, this.host)]));
    }
    const envelope = mail.message.getEnvelope() as { from: string | false };
    mail.message.setEnvelope({ from: envelope.from, to: recipients });
    const sent = await this.passThrough(mail);
    return Object.fromEntries(
      relayed.map((d) => {
        const r = passThroughResult(d, groups.get(d)!, this.host, policyDomain, route.policy, sent.info ?? {});
        if (sent.error) {
          r.error = sent.error;
          r.rejectedErrors = [sent.error];
        }
        return [d, r];
      }),
    );
  }

  /** Delivers one domain (or the hop to the smart host); an exception while doing so defers it (RFC 8461 §5.1), never bounces it. */
  private async deliverSafely(plan: DeliveryPlan, recipients: string[], options: DeliverOptions): Promise<DomainDeliveryResult> {
    try {
      return await deliverToDomain(options);
    } catch (error) {
      return failedUnexpectedly(this.hooks, plan, recipients, error);
    }
  }
}

/**
 * Adds MTA-STS to an existing Nodemailer SMTP transport (the object `nodemailer.createTransport({ host, port })`
 * returns, or its `.transporter`). Returns the guard; `guard.unguard()` removes it.
 * Throws an `MtaStsError` `MTASTS_INVALID_OPTIONS` for a pooled or non-SMTP transport, an already guarded one, one
 * with a `tls.secureContext` (pass the client certificate as `tls.cert`/`tls.key` instead), or a bad option, and
 * `MTASTS_MISSING_PEER` when `nodemailer` is not installed.
 *
 * In a session validated under an `enforce` policy the transport's `tls` contributes only the client identity
 * (`cert`, `key`, `pfx`, `passphrase`); its `ca`, `checkServerIdentity`, `rejectUnauthorized`, `minVersion`,
 * `servername` and other settings do not apply there: the trust settings are the engine's (RFC 8461 §4.2).
 */
export function guardTransport(transporter: Mail | SmtpTransportLike | { transporter: unknown }, options: GuardTransportOptions = {}): MtaStsGuard {
  validateIntegrationOptions('guardTransport()', options, GUARD_OPTION_SPEC);
  const transport = (typeof transporter === 'object' && transporter !== null && 'transporter' in transporter ? transporter.transporter : transporter) as SmtpTransportLike;
  const refuse = (expected: string, hint?: string) => invalidOptionsError('guardTransport()', [{ option: 'transporter', value: describeValue(transport), expected, ...(hint ? { hint } : {}) }]);
  if (!transport || typeof transport.send !== 'function' || typeof transport.options !== 'object') {
    throw refuse('a Nodemailer SMTP transport (nodemailer.createTransport({ host, port, ... }))');
  }
  if (transport.name === 'SMTP (pool)' || transport.options.pool) {
    throw refuse('a non-pooled SMTP transport', 'pooled connections (pool: true) are shared by messages whose domains may require different TLS; use a non-pooled transport or createMtaStsTransport()');
  }
  if (transport.name !== 'SMTP') {
    throw refuse(`Nodemailer's SMTP transport`, `not ${JSON.stringify(transport.name)}`);
  }
  if ((transport as unknown as Record<symbol, unknown>)[GUARDED]) throw refuse('a transport not guarded yet', 'this transport is already guarded');
  const secureContext = (transport.options.tls as { secureContext?: unknown } | undefined)?.secureContext;
  if (secureContext !== undefined) {
    // RFC 8461 §4.2: a validated session trusts the engine's roots only; an opaque context cannot be split (caller-tls.ts).
    throw invalidOptionsError('guardTransport()', [{ option: 'transporter.options.tls.secureContext', value: describeValue(secureContext), expected: 'not set on a guarded transport', hint: SECURE_CONTEXT_HINT }]);
  }
  return new MtaStsGuard(transport, options);
}

export { MtaStsDeliveryError };
