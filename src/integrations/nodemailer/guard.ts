/**
 * MTA-STS for an existing Nodemailer SMTP transport, in one line:
 *
 * ```ts
 * const transporter = nodemailer.createTransport({ host: 'mx1.example.com', port: 25 });
 * guardTransport(transporter, { mtaSts });
 * ```
 *
 * For every message, each recipient domain is checked: is the transport's host one of that domain's MX hosts (in
 * its MX records, or matching its MTA-STS policy's `mx` patterns)?
 *
 * - Yes (direct MX delivery): the domain's policy governs the session. Under `enforce` a host the policy does not
 *   list is refused (`EMTASTS`, temporary), and otherwise the session must use STARTTLS with TLS 1.2+ and a
 *   certificate valid for the host name: the guard runs that domain's transaction itself, with Nodemailer's SMTP
 *   client and the transport's own settings (port, name, timeouts, auth, logger) plus `requireTLS: true`,
 *   `tls.servername` = the host, `rejectUnauthorized: true`, `minVersion: 'TLSv1.2'` and a strict
 *   `checkServerIdentity`, connecting to the host's address from the engine's resolver. Under `testing` / none it
 *   delivers with opportunistic TLS and reports. Sessions are recorded for TLS-RPT.
 * - No (smart host / relay): MTA-STS governs delivery to MX hosts only (RFC 8461 §5). The message is
 *   passed to the transport untouched; the guard says so once per host (`smart-host` event, logger warning) and
 *   emits a `relay` decision per domain. It does not pretend: the relay's onward delivery must apply MTA-STS.
 *
 * Pooled transports (`pool: true`) are refused: a pooled connection is shared by messages whose domains may need
 * different TLS requirements. Proxies configured on the transport are not used for the direct MX sessions.
 */
import { EventEmitter } from 'node:events';
import type Mail from 'nodemailer/lib/mailer';
import type { MailMessage } from 'nodemailer';
import type { SMTPConnectionOptions, SMTPEnvelope } from 'nodemailer/lib/smtp-connection';
import { normalizeDomainOrUndefined } from '../../domain.js';
import { MtaStsError } from '../../errors.js';
import { findMatchingPattern } from '../../mx/match.js';
import type { DeliveryPlan, MxCandidate } from '../../plan/plan.js';
import type { PolicyLookup } from '../../types.js';
import { bool, describeValue, invalidOptionsError, notHere, num, type OptionSpec } from '../../options.js';
import { HOOKS_OPTION_SPEC, pickOptions, validateIntegrationOptions } from '../../option-specs.js';
import { MtaStsHooks, type MtaStsDecision, type MtaStsHooksOptions } from '../hooks.js';
import type { SmtpConnectionClass } from './session.js';
import { loadSmtpConnection, TRANSPORT_OPTION_SPEC } from './transport.js';
import { buildSendResult, deliverToDomain, failedUnexpectedly, groupRecipients, MtaStsDeliveryError, type DeliverOptions, type DomainDeliveryResult, type MtaStsSentMessageInfo } from './deliver.js';

/** Options of {@link guardTransport}. Engine options are used only when neither `mtaSts` nor `hooks` is given. */
export interface GuardTransportOptions extends MtaStsHooksOptions {
  /** Hooks to use (shared events, recorder). Default: new hooks around `mtaSts`. */
  hooks?: MtaStsHooks;
  /**
   * Declare the transport's host a smart host: skip the per-domain MX check (saves the MX lookups). MTA-STS is then
   * never applied by this transport; the guard says so once.
   */
  relay?: boolean;
  /** Addresses (A/AAAA) of the transport's host tried for a direct MX session, an integer from 1 to 64. Default 2. */
  maxAddressesPerMx?: number;
  /** Sessions (connection attempts, a plaintext retry not counted) per recipient domain and message, 1 to 1000. Default 8. */
  maxSessionsPerDomain?: number;
}

/** Every option of {@link guardTransport}: the hooks' and the engine's, plus the guard's own. */
export const GUARD_OPTION_SPEC: OptionSpec = Object.freeze({
  ...HOOKS_OPTION_SPEC,
  hooks: TRANSPORT_OPTION_SPEC.hooks!,
  relay: bool,
  maxAddressesPerMx: num(1, 64, { integer: true }),
  maxSessionsPerDomain: num(1, 1000, { integer: true }),
  maxAddresses: notHere('renamed: maxAddressesPerMx (addresses tried per MX host) and maxSessionsPerDomain (sessions per domain and message) are separate options'),
});

/** The `smart-host` event: the transport relays, MTA-STS does not apply to this hop. */
export interface SmartHostNotice {
  host: string;
  domains: string[];
  reason: string;
}

/** The minimal shape of Nodemailer's SMTP transport the guard relies on. */
export interface SmtpTransportLike {
  name: string;
  options: SMTPConnectionOptions & { forceAuth?: boolean; pool?: boolean; proxy?: string; getSocket?: unknown };
  send(mail: MailMessage, callback: (error: Error | null, info?: unknown) => void): void;
  getAuth?(authOpts?: unknown): unknown;
}

const GUARDED = Symbol.for('mta-sts-sender.guard');

/** A domain's policy, for the record of a relayed delivery (where it was not applied). */
interface RelayPolicy {
  mode: DeliveryPlan['mode'];
  status: PolicyLookup['status'];
  policyId?: string;
}

function relayPolicy(lookup: PolicyLookup): RelayPolicy {
  const policy = lookup.status === 'policy' ? lookup.policy : undefined;
  return { mode: policy?.mode ?? 'none', status: lookup.status, ...(policy ? { policyId: policy.id } : {}) };
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
  private readonly warned = new Set<string>();
  private readonly forward = (decision: MtaStsDecision) => this.emit('decision', decision);
  /** A throwing `outcome` listener is a bug of the listener: it must not fail (or re-send) a delivery. */
  private readonly forwardOutcome = (outcome: unknown) => {
    try {
      this.emit('outcome', outcome);
    } catch (error) {
      this.hooks.logger.warn?.('mta-sts: an outcome listener threw', { error: String(error) });
    }
  };

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
    const guardedSend = function (this: unknown, mail: MailMessage, callback: (error: Error | null, info?: unknown) => void): void {
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

  private passThrough(mail: MailMessage, callback: (error: Error | null, info?: unknown) => void): void {
    this.originalSend.call(this.transport, mail, callback);
  }

  private warnSmartHost(host: string, domains: string[], why: string): void {
    if (this.warned.has(host)) return;
    this.warned.add(host);
    const reason = `MTA-STS does not apply: ${why}; mail is relayed through the smart host ${host}, and MTA-STS governs only delivery to a domain's MX hosts (RFC 8461 §5). The relay's own onward delivery must apply it.`;
    this.hooks.logger.warn?.(`mta-sts: ${reason}`, { host, domains });
    try {
      this.emit('smart-host', { host, domains, reason } satisfies SmartHostNotice);
    } catch (error) {
      // A listener's bug must not fail a send (after direct domains were delivered, a retry would duplicate them).
      this.hooks.logger.warn?.('mta-sts: a smart-host listener threw', { error: String(error) });
    }
  }

  private send(mail: MailMessage, callback: (error: Error | null, info?: unknown) => void): void {
    let returned = false;
    const done = (error: Error | null, info?: unknown) => {
      if (returned) return;
      returned = true;
      callback(error, info);
    };
    this.guardedSend(mail, done).catch((error: Error) => setImmediate(() => done(error)));
  }

  private async guardedSend(mail: MailMessage, done: (error: Error | null, info?: unknown) => void): Promise<void> {
    const hostName = normalizeDomainOrUndefined(this.host);
    const envelope = mail.message.getEnvelope() as { from: string | false; to: string[] };
    const to = [...(envelope.to ?? [])];
    const { groups } = groupRecipients(to);
    const domains = [...groups.keys()];
    if (this.options.relay || hostName === undefined || hostName === 'localhost') {
      const why = this.options.relay ? 'the transport is declared a relay' : `the transport's host ${this.host} is not an MX host name`;
      this.warnSmartHost(this.host, domains, why);
      for (const domain of domains) this.hooks.emitDecision({ stage: 'relay', action: 'relay', domain, mx: this.host, reason: `${domain}: ${why}; MTA-STS not applied to this hop` });
      this.passThrough(mail, done);
      return;
    }

    // Which domains does this transport deliver to directly (its host is one of their MX hosts)?
    const direct = new Map<string, { plan: DeliveryPlan; candidate: MxCandidate }>();
    const relayed: string[] = [];
    const relayModes = new Map<string, RelayPolicy>();
    const deferred = new Map<string, DomainDeliveryResult>();
    await Promise.all(
      domains.map(async (domain) => {
        let found: Classification;
        try {
          found = await this.classify(domain, hostName);
        } catch (error) {
          found = { policy: { mode: 'none', status: 'temp-error' }, defer: error };
        }
        if (found.defer !== undefined) deferred.set(domain, this.deferredResult(domain, groups.get(domain)!, found.policy, found.defer));
        else if (found.candidate && found.plan) direct.set(domain, { plan: found.plan, candidate: found.candidate });
        else {
          relayed.push(domain);
          relayModes.set(domain, found.policy);
        }
      }),
    );
    for (const domain of relayed) {
      this.hooks.emitDecision({ stage: 'relay', action: 'relay', domain, mode: relayModes.get(domain)?.mode ?? 'none', mx: this.host, reason: `${domain}: ${this.host} is not an MX host of ${domain}: smart-host delivery, MTA-STS not applied (RFC 8461 §5)` });
    }
    if (direct.size === 0 && deferred.size === 0) {
      this.warnSmartHost(this.host, relayed, `${this.host} is not an MX host of ${relayed.join(', ') || 'the recipient domains'}`);
      // Nodemailer's own result, plus `mtaSts` saying that each domain was relayed (MTA-STS not applied).
      this.passThrough(mail, (error, info) => {
        if (!error && info && typeof info === 'object') {
          const sent = info as { accepted?: string[]; response?: string };
          const mtaSts: Record<string, DomainDeliveryResult> = {};
          for (const domain of relayed) mtaSts[domain] = this.relayResult(domain, groups.get(domain)!, relayModes.get(domain), sent);
          (info as { mtaSts?: unknown }).mtaSts = mtaSts;
        }
        done(error, info);
      });
      return;
    }

    const messageId = mail.message.messageId();
    const message = await mail.message.build();
    const results: Record<string, DomainDeliveryResult> = {};
    const options = this.transport.options;
    const connection: SMTPConnectionOptions = {
      ...(options.name ? { name: options.name } : {}),
      ...(options.connectionTimeout !== undefined ? { connectionTimeout: options.connectionTimeout } : {}),
      ...(options.greetingTimeout !== undefined ? { greetingTimeout: options.greetingTimeout } : {}),
      ...(options.socketTimeout !== undefined ? { socketTimeout: options.socketTimeout } : {}),
      ...(options.socketCloseTimeout !== undefined ? { socketCloseTimeout: options.socketCloseTimeout } : {}),
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
      ...(options.logger !== undefined ? { logger: options.logger } : {}),
      ...(options.debug ? { debug: true } : {}),
      ...(options.lmtp ? { lmtp: true } : {}),
      ...(options.secure ? { secure: true } : {}),
    };
    const port = Number(options.port) || (options.secure ? 465 : 587);
    const auth = typeof this.transport.getAuth === 'function' ? this.transport.getAuth(mail.data.auth) : undefined;
    const base: SMTPEnvelope = { from: envelope.from };
    if (mail.data.dsn) base.dsn = mail.data.dsn;

    for (const [domain, result] of deferred) results[domain] = result;
    await Promise.all(
      [...direct.entries()].map(async ([domain, { plan, candidate }]) => {
        results[domain] = await this.deliverSafely(plan, groups.get(domain)!, {
          hooks: this.hooks,
          smtpConnection: this.smtpConnection,
          plan,
          candidates: [candidate],
          envelope: { ...base, to: groups.get(domain)! },
          message,
          port,
          connection,
          ...(auth ? { auth: auth as never } : {}),
          maxAddressesPerMx: this.options.maxAddressesPerMx ?? 2,
          maxSessions: this.options.maxSessionsPerDomain ?? 8,
          ...(options.tls ? { tlsBase: options.tls } : {}),
          // Outside enforce the transport keeps its own STARTTLS behaviour (delivery "as without MTA-STS").
          callerTls: { ...(options.requireTLS ? { requireTLS: true } : {}), ...(options.ignoreTLS ? { ignoreTLS: true } : {}), ...(options.opportunisticTLS ? { opportunisticTLS: true } : {}) },
          // One meaning everywhere: default true (as documented), never under enforce or when TLS is required, and
          // never with credentials: Nodemailer itself never retries without TLS after a failed handshake, so the
          // retry would hand the password in clear to whoever broke the handshake.
          plaintextFallback: auth ? false : (this.options.plaintextFallback ?? this.hooks.plaintextFallback),
          ...(options.forceAuth ? { forceAuth: true } : {}),
        });
      }),
    );

    if (relayed.length > 0) {
      // The other domains go through the transport as a relay, with their recipients only.
      this.warnSmartHost(this.host, relayed, `${this.host} is not an MX host of ${relayed.join(', ')}`);
      const relayRecipients = relayed.flatMap((d) => groups.get(d)!);
      mail.message.setEnvelope({ from: envelope.from, to: relayRecipients });
      const relayResult = await new Promise<{ error?: Error; info?: { accepted?: string[]; rejected?: string[]; rejectedErrors?: Error[]; response?: string } }>((resolve) =>
        this.originalSend.call(this.transport, mail, (error, info) => resolve(error ? { error } : { info: info as never })),
      );
      for (const domain of relayed) {
        const r = this.relayResult(domain, groups.get(domain)!, relayModes.get(domain), relayResult.info ?? {});
        if (relayResult.error) {
          r.error = relayResult.error;
          r.rejectedErrors = [relayResult.error];
        }
        results[domain] = r;
      }
    }

    const { invalid } = groupRecipients(to);
    const info: MtaStsSentMessageInfo = buildSendResult({ envelope: { from: envelope.from, to }, messageId, order: domains, results, invalid });
    setImmediate(() => done(null, info));
  }

  /** Delivers one direct domain; an exception while doing so defers the domain (RFC 8461 §5.1), never bounces it. */
  private async deliverSafely(plan: DeliveryPlan, recipients: string[], options: DeliverOptions): Promise<DomainDeliveryResult> {
    try {
      return await deliverToDomain(options);
    } catch (error) {
      return failedUnexpectedly(this.hooks, plan, recipients, error);
    }
  }

  /**
   * A domain the guard could not classify safely (its plan failed and an `enforce` policy applies, or an exception of
   * ours): deferred, neither relayed (that would skip the policy) nor bounced (RFC 8461 §5.1).
   */
  private deferredResult(domain: string, recipients: string[], policy: RelayPolicy, cause: unknown): DomainDeliveryResult {
    const enforce = policy.mode === 'enforce';
    const reason = enforce
      ? `${domain}: the MX hosts could not be determined (${String((cause as Error)?.message ?? cause).slice(0, 200)}) and its enforce policy does not list ${this.host}; not relayed without MTA-STS, retry later (RFC 8461 §4.1, §5.1)`
      : `${domain}: planning failed unexpectedly (${String((cause as Error)?.message ?? cause).slice(0, 200)}); not delivered, retry later`;
    const error = new MtaStsDeliveryError(enforce ? 'EMTASTS' : 'EDNS', reason, {
      temporary: true,
      enhanced: enforce ? '4.7.5' : '4.4.3',
      domain,
      mode: policy.mode,
      ...(policy.policyId ? { policyId: policy.policyId } : {}),
      recipients,
      cause,
    });
    this.hooks.emitDecision({ stage: 'delivery', action: 'defer', domain, mode: policy.mode, mx: this.host, reason });
    return {
      domain,
      recipients,
      status: 'failed',
      mode: policy.mode,
      policyStatus: policy.status,
      ...(policy.policyId ? { policyId: policy.policyId } : {}),
      secure: false,
      validated: false,
      accepted: [],
      rejected: [...recipients],
      rejectedErrors: [error],
      attempts: [],
      error,
    };
  }

  private relayResult(domain: string, recipients: string[], policy: RelayPolicy | undefined, sent: { accepted?: string[]; response?: string }): DomainDeliveryResult {
    const accepted = (sent.accepted ?? []).filter((r) => recipients.includes(r));
    const result: DomainDeliveryResult = {
      domain,
      recipients,
      status: accepted.length > 0 ? 'delivered' : 'failed',
      mode: policy?.mode ?? 'none',
      policyStatus: policy?.status ?? 'none',
      ...(policy?.policyId ? { policyId: policy.policyId } : {}),
      secure: false,
      validated: false,
      accepted,
      rejected: recipients.filter((x) => !accepted.includes(x)),
      attempts: [],
      relay: { host: this.host },
    };
    if (sent.response) result.response = sent.response;
    return result;
  }

  /** Finds the candidate for the transport's host in the domain's plan, or says the host relays for it. */
  private async classify(domain: string, host: string): Promise<Classification> {
    const hooks = this.hooks;
    let plan: DeliveryPlan | undefined;
    let planError: unknown;
    try {
      plan = await hooks.planDelivery(domain);
    } catch (error) {
      if (error instanceof MtaStsError && error.code === 'MTASTS_INVALID_DOMAIN') return { policy: { mode: 'none', status: 'invalid' } };
      // MX lookup failed: the policy alone can still say the host is one of the domain's MX hosts.
      planError = error ?? new Error('planning failed');
    }
    const candidate = plan?.candidates.find((c) => c.host === host);
    if (plan && candidate) return { plan, candidate, policy: relayPolicy(plan.lookup) };
    const lookup = plan?.lookup ?? (await hooks.mtaSts.getPolicy(domain));
    const policy = lookup.status === 'policy' ? lookup.policy : undefined;
    if (policy && policy.mode !== 'none' && findMatchingPattern(host, policy.mx) !== undefined) {
      // The host is a policy-listed MX host of the domain (though not in its MX records now): apply the policy.
      const single = await hooks.planDelivery(domain, { mxHosts: [{ exchange: host, priority: 0 }] });
      const only = single.candidates[0];
      if (only) return { plan: single, candidate: only, policy: relayPolicy(single.lookup) };
    }
    // The MX hosts are unknown: under enforce the host might be an MX host the policy does not list (§4.1), and an
    // exception of ours proves nothing either. Relaying would deliver without MTA-STS: defer instead.
    if (planError !== undefined && (!(planError instanceof MtaStsError) || policy?.mode === 'enforce')) return { policy: relayPolicy(lookup), defer: planError };
    // The same when DNS gave no MX host list to compare with (NXDOMAIN, null MX, no MX records: possibly spoofed)
    // while an enforce policy applies: the plan itself defers such a domain (§5.1), so the guard must not relay it.
    if (plan && plan.mode === 'enforce' && (plan.nullMx || plan.implicitMx || plan.candidates.length === 0)) {
      return { policy: relayPolicy(lookup), defer: new Error(plan.noCandidate?.reason ?? `${domain}: no MX host list to check ${host} against`) };
    }
    return { policy: relayPolicy(lookup) };
  }
}

/** How the guard handles one recipient domain: direct MX delivery (plan + candidate), relay, or defer. */
interface Classification {
  plan?: DeliveryPlan;
  candidate?: MxCandidate;
  policy: RelayPolicy;
  /** Set when the domain must be deferred: why. */
  defer?: unknown;
}

/**
 * Adds MTA-STS to an existing Nodemailer SMTP transport (the object `nodemailer.createTransport({ host, port })`
 * returns, or its `.transporter`). Returns the guard; `guard.unguard()` removes it.
 * Throws an `MtaStsError` `MTASTS_INVALID_OPTIONS` for a pooled or non-SMTP transport, an already guarded one, or a
 * bad option, and `MTASTS_MISSING_PEER` when `nodemailer` is not installed.
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
  return new MtaStsGuard(transport, options);
}

export { MtaStsDeliveryError };
