/**
 * MTA-STS hooks for any SMTP client or MTA (RFC 8461 §4, §5; TLS reporting per RFC 8460).
 *
 * A client that delivers to MX hosts itself follows one short sequence per recipient domain:
 *
 * 1. `planDelivery(domain)`: the policy and the MX candidates in preference order. Connect only to candidates
 *    with `allowed: true`; when there is none, do what `plan.noCandidate` says (`defer`: a temporary failure,
 *    never a bounce, RFC 8461 §5.1). Report a skipped candidate with `recordOutcome(candidate, { success: false })`.
 * 2. `addressesFor(candidate)`: the addresses of the MX host, resolved through the engine's resolver. Connect by IP.
 * 3. `tlsOptionsFor(candidate)`: the options for the STARTTLS upgrade (`tls.connect`): SNI and verification name =
 *    the MX host name that was dialled, TLS 1.2 or later, the trust roots, and under `enforce`
 *    `rejectUnauthorized: true` so that an invalid certificate aborts the handshake. Use them unchanged: the trust
 *    settings are the engine's; a client certificate goes in as `tlsOptionsFor(candidate, { cert, key })`. Use STARTTLS whenever the
 *    server offers it; under `enforce` (`candidate.requireTls`) never continue without it.
 * 4. After STARTTLS: `verifySession(candidate, tlsSocket)`, or `verifySession(candidate, null)` when the session
 *    stayed in plaintext; `handshakeFailed(candidate, error)` when STARTTLS was refused or the handshake failed.
 *    Continue with MAIL FROM only when `proceed` is true; otherwise close the connection and try the next
 *    candidate (or, when `plaintextFallback` is true, reconnect without STARTTLS: never under `enforce`).
 * 5. `recordOutcome(candidate, verdict)`: once per session, feeds the TLS-RPT recorder (RFC 8460).
 * 6. When no allowed candidate took the message (or none was allowed): `deliveryFailed(plan)` returns the final
 *    action (`defer` with the reason, the SMTP enhanced status and the RFC 8460 result types of what failed;
 *    `bounce` only for a domain that accepts no mail) and emits it as a `delivery` decision. A queueing client
 *    defers: RFC 8461 §5.1 asks for the policy to be re-checked before a message fails for good.
 *
 * Every decision is emitted as a `decision` event on the hooks object and published on the `node:diagnostics_channel`
 * channel `mta-sts-sender:decision` ({@link DECISION_CHANNEL}), so operators can log and count them.
 *
 * DANE (RFC 7672) is not implemented: RFC 8461 §2 lets DANE take precedence over MTA-STS for a domain that has
 * both; a client that validates DANE itself should skip these hooks for DANE-protected MX hosts.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import { EventEmitter } from 'node:events';
import type { TLSSocket } from 'node:tls';
import { createMtaSts, type MtaSts, type MtaStsOptions } from '../engine.js';
import { HOOKS_OPTION_SPEC, validateIntegrationOptions } from '../option-specs.js';
import { resolveAddresses } from '../discovery/lookup.js';
import type { MxRecord } from '../discovery/resolver.js';
import { errorCodeOf, type TlsRptResultType } from '../errors.js';
import { silentLogger, type Logger } from '../logger.js';
import { safeLogger } from '../engine/safe-logger.js';
import { planForReportDelivery, type DeliveryPlan, type EffectiveMode, type MxCandidate, type NoCandidateAction } from '../plan/plan.js';
import { sharedSecureContext, type MxTlsOptions } from '../tls/connect-options.js';
import { CLIENT_TLS_OPTION_SPEC, validatedSessionTls, type ClientTlsIdentity } from '../tls/caller-tls.js';
import { validateOptions } from '../options.js';
import { classifyTlsFailure, type StartTlsRefusal } from '../tls/handshake-failure.js';
import { verifyTls, type TlsSessionInfo, type TlsVerification } from '../tls/verify.js';
import { markFallbackToCachedPolicy, policyFailureReason, sessionFailureReason } from '../tlsrpt/reason-codes.js';
import type { SessionOutcome, TlsRptRecorder } from '../tlsrpt/types.js';
import { policyRef } from './policy-ref.js';
import type { PolicySource } from '../types.js';

export type { StartTlsRefusal } from '../tls/handshake-failure.js';
export type { ClientTlsIdentity } from '../tls/caller-tls.js';

/** The `node:diagnostics_channel` channel every {@link MtaStsDecision} is published on. */
export const DECISION_CHANNEL = 'mta-sts-sender:decision';

const decisionChannel = diagnosticsChannel.channel(DECISION_CHANNEL);

/** Which step of a delivery a decision belongs to. */
export type DecisionStage = 'plan' | 'candidate' | 'session' | 'outcome' | 'delivery' | 'relay';

/**
 * What was decided:
 * - `plan`: a delivery plan was made (`reason` names the mode and the policy).
 * - `use`: the MX host may be used. `skip`: it is not used (enforce: not in the policy, RFC 8461 §4.1).
 * - `proceed`: the session satisfies the policy; deliver. `refuse`: it does not; do not deliver on it (enforce).
 * - `report`: it does not satisfy the policy, but the policy is `testing` (or none): deliver and report (§5).
 * - `fallback-plaintext`: the TLS handshake failed; the client may retry this host without STARTTLS (not enforce).
 * - `defer` / `bounce`: no MX host can be used: temporary / permanent failure for the domain.
 * - `delivered` / `failed`: the outcome of the domain's delivery. `recorded`: an outcome went to TLS-RPT.
 * - `relay`: mail goes through a smart host, not to an MX host of `domain`: the smart host's name is the policy
 *   domain (`policyDomain`, RFC 8461 §3.4), or there is none (a smart host given by IP address).
 */
export type DecisionAction = 'plan' | 'use' | 'skip' | 'proceed' | 'refuse' | 'report' | 'fallback-plaintext' | 'defer' | 'bounce' | 'delivered' | 'failed' | 'recorded' | 'relay';

/** One decision, as emitted on the hooks object and on {@link DECISION_CHANNEL}. JSON-safe. */
export interface MtaStsDecision {
  stage: DecisionStage;
  action: DecisionAction;
  /** The recipient (policy) domain. */
  domain: string;
  /**
   * The Policy Domain that applied, when it is not `domain`: the smart host's name for mail relayed through a smart
   * host (RFC 8461 §3.4; the guard's `relay` and `defer` decisions). The smart host's own plan, session and outcome
   * decisions have the smart host's name as `domain`.
   */
  policyDomain?: string;
  /** The mode applied: the policy's mode, or `none` without a usable policy. */
  mode: EffectiveMode;
  /** The policy id (TXT `id`), when a policy applies. */
  policyId?: string;
  policySource?: PolicySource;
  /** The MX host concerned. */
  mx?: string;
  /** The address connected to. */
  ip?: string;
  /** `pass` / `fail` of the TLS or MX check, when one was made. */
  verdict?: 'pass' | 'fail';
  /** RFC 8460 result type of a failure. */
  resultType?: TlsRptResultType;
  /** Negotiated TLS version. */
  tlsVersion?: string;
  reason: string;
  /** Epoch ms. */
  at: number;
}

/** The answer of {@link MtaStsHooks.verifySession} and {@link MtaStsHooks.handshakeFailed}. */
export interface SessionVerdict {
  /** Continue the SMTP transaction on this connection? False under `enforce` when the session fails §4.2. */
  proceed: boolean;
  /** The TLS check itself (RFC 8461 §4.2): `ok`, `reason`, `resultType`, negotiated `protocol`. */
  verdict: TlsVerification;
  domain: string;
  mx: string;
  ip?: string;
  mode: EffectiveMode;
  /** Did the session satisfy the policy that applies (what TLS-RPT counts as a successful session)? */
  success: boolean;
  /** RFC 8460 result type when `success` is false. */
  resultType?: TlsRptResultType;
  /** Why. */
  reason: string;
  /** The TLS error code (`CERT_HAS_EXPIRED`, ...) when there was one (RFC 8460 `failure-reason-code`). */
  failureReasonCode?: string;
  /** May the client retry this host in plaintext (handshake failed, and neither the policy nor the configuration requires TLS)? */
  plaintextFallback: boolean;
}

/** What {@link MtaStsHooks.recordOutcome} takes besides a {@link SessionVerdict}. */
export interface OutcomeInput {
  success: boolean;
  resultType?: TlsRptResultType;
  failureReasonCode?: string;
  ip?: string;
}

/** Extra facts about a session, for TLS-RPT failure details. */
export interface SessionContext {
  /** The address connected to (RFC 8460 `receiving-ip`). */
  ip?: string;
  /** The local address of the connection (RFC 8460 `sending-mta-ip`). */
  sendingMtaIp?: string;
  /** The name the MX announced in its greeting (RFC 8460 `receiving-mx-helo`). */
  receivingMxHelo?: string;
  /** The plan the candidate belongs to; needed only for candidates not returned by {@link MtaStsHooks.planDelivery}. */
  plan?: DeliveryPlan;
  /**
   * Will this client retry the host in plaintext after a failed handshake, when allowed? Default true. Pass false
   * when it will not (its own configuration requires TLS, or it never retries): the verdict and the emitted decision
   * then say `refuse`, not `fallback-plaintext`, so no decision announces a retry that never happens.
   */
  plaintextFallback?: boolean;
  /**
   * The TLS socket of a failed handshake, when the client has it. Its `authorizationError` names the certificate
   * failure (`CERT_HAS_EXPIRED`, ...) when the client's error does not (Nodemailer before 7 replaces the TLS code
   * with its own `ESOCKET`), so the RFC 8460 result type stays exact.
   */
  tlsSocket?: { authorizationError?: unknown } | null;
  /**
   * For {@link MtaStsHooks.handshakeFailed}: the server refused STARTTLS (its reply), or did not offer it (`{}`).
   * Counted as `starttls-not-supported` (RFC 8461 §4.2 requires STARTTLS; RFC 8460 §4.3.1).
   */
  starttlsRefused?: StartTlsRefusal;
  /**
   * For {@link MtaStsHooks.handshakeFailed}: the client sent STARTTLS and no reply came: its wait for the reply ran
   * out, or the connection ended first. The hooks cannot bound a client's wait: bound it yourself (a few seconds,
   * not the whole socket timeout; the Nodemailer integrations use `starttlsTimeoutMs`, default 5000) and then say so
   * here. Counted as `starttls-not-supported` (RFC 8461 §4.2 requires STARTTLS; RFC 8460 §4.3.1), with the
   * `failure-reason-code` `starttls no reply`: a path attacker who strips STARTTLS and swallows the command is
   * reported, not hidden as a connection failure. Takes precedence over `starttlsRefused` and the error.
   */
  starttlsNoReply?: boolean;
}

/** A session (or host) that failed, as {@link MtaStsHooks.deliveryFailed} reports it. */
export interface DeliveryFailure {
  mx: string;
  ip?: string;
  /** RFC 8460 result type, when the failure is a policy or TLS failure. */
  resultType?: TlsRptResultType;
  reason: string;
}

/** What {@link MtaStsHooks.deliveryFailed} returns: the final action for the domain's recipients of this message. */
export interface FinalAction {
  /** `defer`: temporary failure, retry later (RFC 8461 §5.1). `bounce`: the domain accepts no mail (null MX, NXDOMAIN). */
  action: 'defer' | 'bounce';
  /** True for `defer`. */
  temporary: boolean;
  /** RFC 3463 enhanced status code for the reply: `4.7.5` (MTA-STS policy failure), `4.4.1` (no host reachable), `5.1.10` (null MX), `5.1.2` (no such domain). */
  enhancedStatus: string;
  /** The SMTP reply code to use: 451 for `defer`, 556 for a null MX, 550 otherwise. */
  replyCode: number;
  reason: string;
  /** RFC 8460 result types of what failed (skipped hosts, refused sessions, failed handshakes), distinct, in order. */
  resultTypes: TlsRptResultType[];
  /** Every failure that led here. */
  failures: DeliveryFailure[];
}

/** What {@link MtaStsHooks.deliveryFailed} takes besides the plan. */
export interface DeliveryFailedInput {
  /**
   * The failures, when the client tracked them itself (e.g. connection failures the hooks did not see). Default:
   * the failures the hooks saw for this plan (`handshakeFailed`, refused `verifySession`s) and its disallowed hosts.
   */
  failures?: DeliveryFailure[];
}

/** A plan as the hooks return it: `noCandidate` is always set (what to do when no allowed MX host takes the message). */
export type HooksDeliveryPlan = DeliveryPlan & { noCandidate: NoCandidateAction };

/** Options of {@link createMtaStsHooks}: an engine (or the options to create one), a recorder and a logger. */
export interface MtaStsHooksOptions extends MtaStsOptions {
  /** The engine to use. Default: one created from the other options (closed by `close()`). */
  mtaSts?: MtaSts;
  /** Where session outcomes go (RFC 8460). Default: nowhere. */
  recorder?: TlsRptRecorder;
  /**
   * When a TLS handshake fails with a host that neither the policy (`testing`, `none`, no policy) nor the
   * configuration (`requireTlsEverywhere`) requires TLS of, may the client retry that host in plaintext? Default
   * true, like Postfix's opportunistic TLS: without MTA-STS the message would have been delivered anyway (RFC 8461
   * §5: `testing` delivers as without MTA-STS). The failure is still reported. Never applies under `enforce`.
   */
  plaintextFallback?: boolean;
}

export interface PlanDeliveryOptions {
  /** The message is a TLS report (RFC 8460 §5.3): the policy is applied as `testing`, never blocking delivery. */
  reportDelivery?: boolean;
  /** MX hosts to use instead of looking them up (e.g. the host of a transport that is one of the domain's MX). */
  mxHosts?: ReadonlyArray<string | MxRecord>;
  signal?: AbortSignal;
}

/** What {@link MtaStsHooks.emitDecision} takes: a decision without the fields the hooks fill in (time, mode and policy from `plan`). */
export type DecisionInput = Omit<MtaStsDecision, 'at' | 'mode' | 'policyId' | 'policySource'> & { mode?: EffectiveMode; plan?: DeliveryPlan };

/**
 * The hook sequence for custom SMTP clients and MTAs (see the module documentation). An `EventEmitter` that emits
 * `decision` ({@link MtaStsDecision}) and `outcome` ({@link SessionOutcome}, after it went to the recorder).
 */
export class MtaStsHooks extends EventEmitter {
  readonly mtaSts: MtaSts;
  readonly recorder: TlsRptRecorder | undefined;
  readonly logger: Logger;
  readonly plaintextFallback: boolean;
  readonly requireTlsEverywhere: boolean;
  private readonly dnsTimeoutMs: number;
  private readonly now: () => number;
  private readonly ownsEngine: boolean;
  private readonly recorderFailures: RecorderFailureLog;
  private readonly plans = new WeakMap<MxCandidate, DeliveryPlan>();
  /** Failed sessions per plan, for {@link deliveryFailed} (bounded per plan). */
  private readonly failures = new WeakMap<DeliveryPlan, DeliveryFailure[]>();

  constructor(options: MtaStsHooksOptions = {}) {
    super({ captureRejections: true });
    validateIntegrationOptions('createMtaStsHooks()', options, HOOKS_OPTION_SPEC);
    const { mtaSts, recorder, plaintextFallback, ...engineOptions } = options;
    this.mtaSts = mtaSts ?? createMtaSts(engineOptions);
    this.ownsEngine = mtaSts === undefined;
    this.recorder = recorder;
    // Logging is best effort: a throwing logger must not stop a decision half-way (or fail a delivered message).
    this.logger = safeLogger(options.logger ?? silentLogger);
    this.plaintextFallback = plaintextFallback ?? true;
    this.requireTlsEverywhere = options.requireTlsEverywhere === true;
    this.dnsTimeoutMs = options.dnsTimeoutMs ?? 10_000;
    this.now = options.now ?? Date.now;
    this.recorderFailures = new RecorderFailureLog(this.logger, this.now);
  }

  /**
   * Step 1: the delivery plan for a recipient domain (policy + MX candidates in preference order, RFC 8461 §4, §5).
   * Rejects with an `MtaStsError` (`MTASTS_INVALID_DOMAIN`, or a temporary `MTASTS_DNS_TEMPORARY` when the MX
   * lookup fails: defer the message).
   */
  async planDelivery(domain: string, options: PlanDeliveryOptions = {}): Promise<HooksDeliveryPlan> {
    let plan: DeliveryPlan = await this.mtaSts.plan(domain, options.mxHosts, options.signal ? { signal: options.signal } : {});
    if (options.reportDelivery) {
      plan = planForReportDelivery(plan); // RFC 8460 §5.3: a report is delivered despite TLS failures
    } else if (this.requireTlsEverywhere && !plan.tlsRequired) {
      // The engine may have been created without the option: apply it here too.
      plan.tlsRequired = true;
      for (const c of plan.candidates) c.requireTls = true;
    }
    for (const c of plan.candidates) this.plans.set(c, plan);
    const lookup = plan.lookup;
    const policyText = lookup.status === 'policy' && lookup.policy ? `policy id ${lookup.policy.id} (${lookup.source})` : `no usable policy (${lookup.status}${lookup.error ? `: ${lookup.error.code}` : ''})`;
    this.emitDecision({ stage: 'plan', action: 'plan', domain: plan.domain, plan, reason: `${plan.domain}: mode ${plan.mode}, ${policyText}, ${plan.candidates.length} MX candidate(s), ${plan.allowed.length} allowed` });
    for (const c of plan.candidates) {
      const action: DecisionAction = !c.allowed ? 'skip' : c.matched === false ? 'report' : 'use';
      this.emitDecision({
        stage: 'candidate',
        action,
        domain: plan.domain,
        plan,
        mx: c.host,
        ...(c.matched !== undefined ? { verdict: c.matched ? ('pass' as const) : ('fail' as const) } : {}),
        ...(c.resultType ? { resultType: c.resultType } : {}),
        reason: c.reason,
      });
    }
    if (plan.noCandidate && plan.allowed.length === 0) {
      this.emitDecision({ stage: 'candidate', action: plan.noCandidate.action, domain: plan.domain, plan, reason: plan.noCandidate.reason });
    }
    // Never undefined to a caller: with allowed hosts, it says what to do when all of them fail (§5.1: defer).
    plan.noCandidate ??= { action: 'defer', reason: `if no allowed MX host of ${plan.domain} takes the message: defer and retry later (RFC 8461 §5.1); see deliveryFailed()` };
    // The verdicts of verifySession()/handshakeFailed() follow this plan: a client that edits it (allowed = true on a
    // host the enforce policy does not list, mode = 'testing') must fail loudly, not get `proceed: true` (§4.1, §4.2).
    return deepFreezePlan(plan) as HooksDeliveryPlan;
  }

  /** Step 2: the IP addresses of an MX host, through the engine's resolver (never the operating system's). */
  async addressesFor(candidate: MxCandidate | string): Promise<string[]> {
    const host = typeof candidate === 'string' ? candidate : candidate.host;
    const addresses = await resolveAddresses(this.mtaSts.resolver, host, this.dnsTimeoutMs);
    return addresses.map((a) => a.address);
  }

  /**
   * Step 3: the TLS options for the STARTTLS upgrade with this candidate (a fresh copy: `servername` = the MX host
   * name, `minVersion: 'TLSv1.2'`, `rejectUnauthorized` true under enforce, strict `checkServerIdentity`, `ca`).
   * Pass them to `tls.connect({ socket, ...options })` or to the client's TLS settings, unchanged: the trust settings
   * are the engine's (RFC 8461 §4.2). To present a client certificate, pass it as `client` (`cert`, `key`, `pfx`,
   * `passphrase`; anything else is refused with `MTASTS_INVALID_OPTIONS`): Node ignores `cert`/`key` added next to
   * the returned `secureContext`, so the options come back without one.
   */
  tlsOptionsFor(candidate: MxCandidate, client?: ClientTlsIdentity): MxTlsOptions {
    if (client !== undefined) validateOptions('tlsOptionsFor()', client, CLIENT_TLS_OPTION_SPEC);
    const options: MxTlsOptions = { ...candidate.tls };
    // Node builds a SecureContext per connection from `ca`, parsing every root PEM (Node's ~140 plus the extra
    // ones) each time; one shared context per trust-root set makes a session several times cheaper.
    if (!options.secureContext) options.secureContext = sharedSecureContext(options.ca, options.minVersion, options.maxVersion);
    return client === undefined ? options : validatedSessionTls(options, client);
  }

  /** The plan a candidate was returned in by {@link planDelivery}. */
  planOf(candidate: MxCandidate): DeliveryPlan | undefined {
    return this.plans.get(candidate);
  }

  /**
   * Step 4: judges a finished STARTTLS session (`null`: the session stayed in plaintext) against the policy of the
   * candidate's domain. `proceed` is false under `enforce` unless the session is TLS 1.2+ with a certificate valid
   * for the MX host name (RFC 8461 §4.2, §5), and when TLS is required by configuration but missing.
   */
  verifySession(candidate: MxCandidate, session: TLSSocket | TlsSessionInfo | null | undefined, context: SessionContext = {}): SessionVerdict {
    const plan = this.requirePlan(candidate, context);
    const verification = verifyTls(candidate.host, session);
    const tls = session !== null && session !== undefined && verification.protocol !== undefined;
    const mode = plan.mode;
    let proceed: boolean;
    let success: boolean;
    let resultType: TlsRptResultType | undefined;
    let reason = verification.reason;
    if (!candidate.allowed) {
      proceed = false;
      success = false;
      resultType = candidate.resultType ?? 'validation-failure';
      reason = candidate.reason;
    } else if (mode === 'enforce') {
      proceed = verification.ok;
      success = verification.ok;
      if (!verification.ok) resultType = verification.resultType ?? 'validation-failure';
    } else if (mode === 'testing') {
      proceed = tls || !candidate.requireTls;
      success = verification.ok && candidate.matched !== false;
      if (!verification.ok) resultType = verification.resultType ?? 'validation-failure';
      else if (candidate.matched === false) {
        resultType = candidate.resultType ?? 'validation-failure';
        reason = candidate.reason;
      }
    } else {
      // No policy: opportunistic TLS. A session counts as successful when it is encrypted (RFC 8460 no-policy-found).
      proceed = tls || !candidate.requireTls;
      success = tls;
      if (!tls) resultType = verification.resultType ?? 'starttls-not-supported';
      if (!proceed) reason = `${reason}; TLS is required by configuration`;
    }
    const failureReasonCode = !verification.ok ? errorCodeOf(session && 'authorizationError' in session ? session.authorizationError : undefined) : undefined;
    const verdict: SessionVerdict = { proceed, verdict: verification, domain: plan.domain, mx: candidate.host, mode, success, reason, plaintextFallback: false };
    if (context.ip !== undefined) verdict.ip = context.ip;
    if (resultType !== undefined) verdict.resultType = resultType;
    if (failureReasonCode !== undefined) verdict.failureReasonCode = failureReasonCode;
    if (!proceed) this.noteFailure(plan, { mx: candidate.host, ...(context.ip !== undefined ? { ip: context.ip } : {}), ...(resultType ? { resultType } : {}), reason });
    const action: DecisionAction = !proceed ? 'refuse' : success || mode === 'none' ? 'proceed' : 'report';
    this.emitDecision({
      stage: 'session',
      action,
      domain: plan.domain,
      plan,
      mx: candidate.host,
      ...(context.ip !== undefined ? { ip: context.ip } : {}),
      verdict: verification.ok ? 'pass' : 'fail',
      ...(resultType ? { resultType } : {}),
      ...(verification.protocol ? { tlsVersion: verification.protocol } : {}),
      reason,
    });
    return verdict;
  }

  /**
   * Step 4, failure path: STARTTLS was refused (say so with `context.starttlsRefused`), went unanswered (say so with
   * `context.starttlsNoReply`), or the TLS handshake failed
   * (with `rejectUnauthorized` under enforce, an invalid certificate ends here). Classifies the error as an RFC 8460
   * result type from its TLS `code` (also deep in its `cause` chain), an OpenSSL `reason`, or
   * `context.tlsSocket.authorizationError`. A Nodemailer `SMTPConnection` error is translated first with
   * `nodemailerHandshakeFailure()` from `mta-sts-sender/nodemailer`. `proceed` is
   * always false (the connection is unusable); `plaintextFallback` tells whether a plaintext retry is allowed.
   */
  handshakeFailed(candidate: MxCandidate, error: unknown, context: SessionContext = {}): SessionVerdict {
    const plan = this.requirePlan(candidate, context);
    // RFC 8460 §4.3.1: a STARTTLS refused or never answered is `starttls-not-supported`.
    const starttls = context.starttlsNoReply === true ? ({ noReply: true } as const) : context.starttlsRefused;
    const { resultType, code, reason } = classifyTlsFailure(candidate.host, error, context.tlsSocket ?? undefined, starttls);
    const reply = context.starttlsRefused?.replyCode;
    const mode = plan.mode;
    const plaintextFallback = this.plaintextFallback && context.plaintextFallback !== false && mode !== 'enforce' && !candidate.requireTls && candidate.allowed;
    this.noteFailure(plan, { mx: candidate.host, ...(context.ip !== undefined ? { ip: context.ip } : {}), resultType, reason });
    const verification: TlsVerification = { ok: false, resultType, reason };
    const verdict: SessionVerdict = { proceed: false, verdict: verification, domain: plan.domain, mx: candidate.host, mode, success: false, resultType, reason, plaintextFallback };
    if (context.ip !== undefined) verdict.ip = context.ip;
    // RFC 8460 §4.3: a short, stable reason (the TLS error code, or what is known of a refused STARTTLS).
    verdict.failureReasonCode = sessionFailureReason({ resultType, ...(code !== undefined ? { code } : {}), ...(context.starttlsNoReply === true ? { starttlsNoReply: true } : typeof reply === 'number' ? { starttlsReply: reply } : {}) });
    this.emitDecision({
      stage: 'session',
      action: mode === 'enforce' || !plaintextFallback ? 'refuse' : 'fallback-plaintext',
      domain: plan.domain,
      plan,
      mx: candidate.host,
      ...(context.ip !== undefined ? { ip: context.ip } : {}),
      verdict: 'fail',
      resultType,
      reason,
    });
    return verdict;
  }

  /**
   * Step 5: records one session (or one candidate refused without a session) with the TLS-RPT recorder and emits
   * it as `outcome`. The policy reported is the domain's MTA-STS policy (`sts`), or `no-policy-found`; a policy
   * that could not be fetched is reported as an `sts` failure with its result type (RFC 8460 §4.3.2).
   * Returns the outcome (also when there is no recorder).
   */
  recordOutcome(candidate: MxCandidate, result: SessionVerdict | OutcomeInput, context: SessionContext = {}): SessionOutcome {
    const plan = this.requirePlan(candidate, context);
    const policy = policyRef(plan);
    const judged = judgeOutcome(plan, candidate, result);
    const success = judged.success;
    const outcome: SessionOutcome = { policy, at: this.now(), success };
    if (!judged.success) {
      const ip = context.ip ?? ('ip' in result ? result.ip : undefined);
      outcome.failure = {
        resultType: judged.resultType,
        receivingMxHostname: candidate.host,
        ...(ip !== undefined ? { receivingIp: ip } : {}),
        ...(context.sendingMtaIp !== undefined ? { sendingMtaIp: context.sendingMtaIp } : {}),
        ...(context.receivingMxHelo !== undefined ? { receivingMxHelo: context.receivingMxHelo } : {}),
        failureReasonCode: judged.failureReasonCode,
      };
    }
    this.recordSafely(outcome);
    try {
      this.emit('outcome', outcome);
    } catch (error) {
      // A listener's bug: reporting never affects delivery (the session's verdict stands).
      this.logger.warn?.('mta-sts: an outcome listener threw', { error: String(error) });
    }
    this.emitDecision({
      stage: 'outcome',
      action: 'recorded',
      domain: plan.domain,
      plan,
      mx: candidate.host,
      ...(context.ip !== undefined ? { ip: context.ip } : {}),
      verdict: success ? 'pass' : 'fail',
      ...(!success ? { resultType: outcome.failure?.resultType ?? 'validation-failure' } : {}),
      reason: success ? `${policy.type} session with ${candidate.host} counted as successful` : `${policy.type} session with ${candidate.host} counted as failed (${outcome.failure?.resultType})`,
    });
    return outcome;
  }

  /**
   * Step 6: no allowed MX host took the message (every session failed, or no host was allowed). Returns the final
   * action and emits it as a `delivery` decision (`defer`, or `bounce` for a domain that accepts no mail):
   * - a domain with a null MX (RFC 7505) or that does not exist: `bounce` (5.1.10 / 5.1.2), as `plan.noCandidate` says;
   * - otherwise `defer` (RFC 8461 §5.1: never fail for good before the policy is re-checked), with `4.7.5` when the
   *   `enforce` policy refused hosts or sessions, `4.4.1` when hosts were merely unreachable.
   * `resultTypes` lists the RFC 8460 result types of what failed, for the log and the bounce-free retry.
   */
  deliveryFailed(plan: DeliveryPlan, input: DeliveryFailedInput = {}): FinalAction {
    const seen = input.failures ?? [...plan.candidates.filter((c) => !c.allowed).map((c): DeliveryFailure => ({ mx: c.host, reason: c.reason, ...(c.resultType ? { resultType: c.resultType } : {}) })), ...(this.failures.get(plan) ?? [])];
    const failures = seen.map((f) => ({ ...f }));
    const resultTypes = [...new Set(failures.map((f) => f.resultType).filter((t): t is TlsRptResultType => t !== undefined))];
    const bounce = plan.allowed.length === 0 && plan.noCandidate?.action === 'bounce';
    let final: FinalAction;
    if (bounce) {
      const enhancedStatus = plan.nullMx ? '5.1.10' : '5.1.2';
      final = { action: 'bounce', temporary: false, enhancedStatus, replyCode: plan.nullMx ? 556 : 550, reason: plan.noCandidate!.reason, resultTypes, failures };
    } else {
      const summary = failures.map((f) => `${f.ip ? `${f.mx} [${f.ip}]` : f.mx}${f.resultType ? ` (${f.resultType})` : ''}: ${f.reason}`).join('; ');
      const policyId = plan.lookup.status === 'policy' ? plan.lookup.policy?.id : undefined;
      const policyFailure = plan.mode === 'enforce' && (resultTypes.length > 0 || plan.allowed.length === 0);
      const reason = policyFailure
        ? `MTA-STS: no MX host of ${plan.domain} passed its enforce policy (id ${policyId ?? '?'}); not delivered, retry later (RFC 8461 §5.1)`
        : `${plan.domain}: no MX host accepted the message; not delivered, retry later (RFC 8461 §5.1)`;
      const detail = summary || (plan.allowed.length === 0 ? plan.noCandidate?.reason : undefined);
      final = { action: 'defer', temporary: true, enhancedStatus: policyFailure ? '4.7.5' : '4.4.1', replyCode: 451, reason: detail ? `${reason}: ${detail}` : reason, resultTypes, failures };
    }
    this.emitDecision({ stage: 'delivery', action: final.action, domain: plan.domain, plan, ...(resultTypes[0] ? { resultType: resultTypes[0] } : {}), reason: final.reason });
    return final;
  }

  /** Emits a decision on this object (`decision`) and on {@link DECISION_CHANNEL}. For integrations built on the hooks. */
  emitDecision(input: DecisionInput): MtaStsDecision {
    const { plan, mode, ...rest } = input;
    const lookup = plan?.lookup;
    const decision: MtaStsDecision = {
      ...rest,
      mode: mode ?? plan?.mode ?? 'none',
      ...(lookup?.status === 'policy' && lookup.policy ? { policyId: lookup.policy.id, policySource: lookup.source } : {}),
      at: this.now(),
    };
    if (this.listenerCount('decision') > 0) {
      try {
        this.emit('decision', decision);
      } catch (error) {
        this.logger.warn?.('mta-sts: a decision listener threw', { error: String(error) });
      }
    }
    if (decisionChannel.hasSubscribers) decisionChannel.publish(decision);
    const level = decision.action === 'refuse' || decision.action === 'defer' || decision.action === 'bounce' || decision.action === 'failed' ? 'warn' : 'debug';
    this.logger[level]?.(`mta-sts: ${decision.reason}`, { ...decision });
    return decision;
  }

  /**
   * Hands an outcome to the recorder. Reporting never affects delivery: a recorder that throws or whose promise
   * rejects (a database outage) loses the outcome, logged once per burst of failures ({@link RecorderFailureLog}),
   * and never becomes an unhandled rejection.
   */
  private recordSafely(outcome: SessionOutcome): void {
    const recorder = this.recorder;
    if (!recorder) return;
    let pending: unknown;
    try {
      pending = recorder.record(outcome);
    } catch (error) {
      this.recorderFailures.failed(error);
      return;
    }
    if (pending !== null && typeof pending === 'object' && 'then' in pending) {
      Promise.resolve(pending).then(
        () => this.recorderFailures.succeeded(),
        (error: unknown) => this.recorderFailures.failed(error),
      );
    } else {
      this.recorderFailures.succeeded();
    }
  }

  /** An async `decision` or `outcome` listener rejected (EventEmitter `captureRejections`): logged, never unhandled. */
  override [EventEmitter.captureRejectionSymbol](error: unknown, event: string | symbol): void {
    this.logger.warn?.(`mta-sts: a ${String(event)} listener failed`, { error: String(error) });
  }

  /** Closes the engine when the hooks created it. */
  async close(): Promise<void> {
    if (this.ownsEngine) await this.mtaSts.close();
  }

  private noteFailure(plan: DeliveryPlan, failure: DeliveryFailure): void {
    const list = this.failures.get(plan);
    if (!list) this.failures.set(plan, [failure]);
    else if (list.length < MAX_FAILURES_PER_PLAN) list.push(failure);
  }

  private requirePlan(candidate: MxCandidate, context: SessionContext): DeliveryPlan {
    // The plan the candidate came from wins over a `plan` in the context (a stale or wrong one must not relax it).
    const plan = this.plans.get(candidate) ?? context.plan;
    if (!plan) throw new TypeError(`MX candidate ${candidate?.host} was not returned by planDelivery() of these hooks; pass { plan } in the context`);
    return plan;
  }
}

/** Freezes a plan, its candidate lists, each candidate and its TLS options (the policy lookup is frozen already). */
function deepFreezePlan(plan: DeliveryPlan): DeliveryPlan {
  for (const c of plan.candidates) {
    Object.freeze(c.tls);
    Object.freeze(c);
  }
  Object.freeze(plan.candidates);
  Object.freeze(plan.allowed);
  if (plan.noCandidate) Object.freeze(plan.noCandidate);
  return Object.freeze(plan);
}

/** A recorder that keeps failing is logged again after this long (with the count of outcomes dropped meanwhile). */
const RECORDER_FAILURE_LOG_INTERVAL_MS = 60_000;

/**
 * Logs TLS-RPT recorder failures once per burst: the first failure of a burst is a warning, later ones are counted
 * (and logged again at most once a minute while the burst lasts); the first success after a burst ends it with the
 * number of outcomes lost. A recorder outage costs reports, never delivery, and never floods the log.
 */
class RecorderFailureLog {
  private dropped = 0;
  private loggedAt: number | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly now: () => number,
  ) {}

  failed(error: unknown): void {
    this.dropped++;
    const now = this.now();
    if (this.loggedAt !== undefined && now - this.loggedAt < RECORDER_FAILURE_LOG_INTERVAL_MS) return;
    this.loggedAt = now;
    this.logger.warn?.('mta-sts: the TLS-RPT recorder failed; outcomes are dropped (delivery is not affected)', { error: String(error), dropped: this.dropped });
  }

  succeeded(): void {
    if (this.loggedAt === undefined) return;
    this.logger.info?.('mta-sts: the TLS-RPT recorder works again', { dropped: this.dropped });
    this.loggedAt = undefined;
    this.dropped = 0;
  }
}

/** Failures kept per plan for {@link MtaStsHooks.deliveryFailed} (a client that loops on one plan stays bounded). */
const MAX_FAILURES_PER_PLAN = 64;

/** Creates the hooks (see {@link MtaStsHooks}). */
export function createMtaStsHooks(options: MtaStsHooksOptions = {}): MtaStsHooks {
  return new MtaStsHooks(options);
}

/**
 * What a session counts as in TLS-RPT: success, or the RFC 8460 §4.3 result type and a short, stable
 * `failure-reason-code` (see `tlsrpt/reason-codes`).
 * - The domain advertises a policy that could not be used (fetch error, invalid): a policy failure for every
 *   session (§4.3.2), with the policy error's reason (`http status 404`, `policy syntax error`, ...).
 * - The session ran under a cached policy because refreshing it failed (RFC 8461 §3.3): counted as that policy
 *   failure, its reason marked `+fallback-to-cached-policy`, so the domain learns its policy host is failing
 *   although mail still flows under the cached policy. A session that failed TLS keeps its TLS result type.
 */
function judgeOutcome(plan: DeliveryPlan, candidate: MxCandidate, result: SessionVerdict | OutcomeInput): { success: true } | { success: false; resultType: TlsRptResultType; failureReasonCode: string } {
  const lookup = plan.lookup;
  const lookupError = lookup.error;
  if (plan.mode === 'none' && (lookup.status === 'fetch-error' || lookup.status === 'invalid') && lookupError?.resultType) {
    return { success: false, resultType: lookupError.resultType, failureReasonCode: policyFailureReason(lookupError) ?? lookupError.resultType };
  }
  const fellBack = plan.mode !== 'none' && lookup.source === 'stale-cache' && lookupError !== undefined;
  if (result.success) {
    if (!fellBack) return { success: true };
    return { success: false, resultType: lookupError.resultType ?? 'sts-policy-fetch-error', failureReasonCode: markFallbackToCachedPolicy(policyFailureReason(lookupError)) };
  }
  const resultType = result.resultType ?? 'validation-failure';
  const verification = 'verdict' in result ? result.verdict : undefined;
  // The candidate's own result type (not the TLS one) means the MX host is not covered by the policy (RFC 8461 §4.1).
  const notInPolicy = candidate.matched === false && (!candidate.allowed || verification === undefined || verification.ok);
  const reason =
    (notInPolicy ? undefined : result.failureReasonCode) ??
    sessionFailureReason({
      resultType,
      notInPolicy,
      ...(verification?.protocol ? { protocol: verification.protocol } : {}),
      ...(verification?.reason ? { reason: verification.reason } : {}),
    });
  return { success: false, resultType, failureReasonCode: fellBack ? markFallbackToCachedPolicy(reason) : reason };
}
