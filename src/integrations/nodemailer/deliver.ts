/**
 * Delivery of one message to one recipient domain along its MTA-STS delivery plan (RFC 8461 §4, §5): MX hosts
 * in preference order, every address of each, each session judged by the hooks. Under `enforce` a host that
 * fails MX matching or TLS validation is never given the message; when no host passes, the domain fails with a
 * temporary `EMTASTS` error (RFC 8461 §5.1: defer, never bounce) that lists every host tried.
 */
import type { SMTPConnectionOptions, SMTPConnectionSendInfo, SMTPEnvelope } from 'nodemailer/lib/smtp-connection';
import { normalizeDomainOrUndefined } from '../../domain.js';
import type { Logger } from '../../logger.js';
import { MtaStsSenderError, type MtaStsSenderErrorJSON, type TlsRptResultType } from '../../errors.js';
import type { DeliveryPlan, EffectiveMode, MxCandidate } from '../../plan/plan.js';
import type { PolicySource, PolicyStatus } from '../../types.js';
import type { DeliveryFailure, MtaStsHooks } from '../hooks.js';
import { runSmtpSession, type SessionRequest, type SessionResult, type SmtpConnectionClass } from './session.js';

/** One MX host (address) tried for a domain, or skipped. */
export interface MxAttempt {
  mx: string;
  priority: number;
  ip?: string;
  /**
   * `skipped`: not connected to (not in the enforce policy, RFC 8461 §4.1). `refused`: connected, but the session
   * failed the policy (STARTTLS missing, TLS < 1.2, invalid certificate, §4.2) and the message was not given to it.
   * `failed`: the host could not be reached or the session broke. `rejected`: the host answered the transaction
   * with an error. `delivered`: it accepted the message.
   */
  outcome: 'skipped' | 'refused' | 'failed' | 'rejected' | 'delivered';
  stage: 'policy' | 'dns' | 'connect' | 'tls' | 'auth' | 'smtp' | 'done';
  reason: string;
  /** RFC 8460 result type of a policy failure (also under `testing`, where the host is still used). */
  resultType?: TlsRptResultType;
  tlsVersion?: string;
  /** The TLS handshake failed and the message was retried on this address without STARTTLS (never under enforce). */
  fallback?: 'plaintext';
  /** The error of the SMTP client, when there was one. */
  errorCode?: string;
  responseCode?: number;
}

/** How one recipient domain was handled (`info.mtaSts[domain]`). */
export interface DomainDeliveryResult {
  domain: string;
  /** The envelope recipients of this domain. */
  recipients: string[];
  status: 'delivered' | 'failed';
  /** The mode applied: the policy's, or `none` without a usable policy. */
  mode: EffectiveMode;
  /** Why there is no policy, or where it came from. */
  policyStatus: PolicyStatus;
  /**
   * The Policy Domain whose MTA-STS policy was looked up and applied: the recipient domain for delivery to its MX
   * hosts; the smart host's name for mail relayed through a smart host (RFC 8461 §3.4). Absent when there was none
   * (a smart host given by IP address).
   */
  policyDomain?: string;
  policyId?: string;
  policySource?: PolicySource;
  /** The MX host (and address) that took the message. */
  mx?: string;
  ip?: string;
  /** Was the delivering session encrypted? */
  secure: boolean;
  tlsVersion?: string;
  /** Did the delivering session pass RFC 8461 §4.2 validation (TLS 1.2+, trusted, unexpired, names the MX)? */
  validated: boolean;
  /** Under `testing` / none: what failed about the delivering session (reported, not enforced). */
  resultType?: TlsRptResultType;
  /** The delivering session is a plaintext retry after a failed TLS handshake. */
  plaintextFallback?: boolean;
  accepted: string[];
  rejected: string[];
  rejectedErrors?: Error[];
  /** The final SMTP reply of the MX. */
  response?: string;
  /** Every MX host tried or skipped, in order. */
  attempts: MxAttempt[];
  /** Why the domain failed. */
  error?: MtaStsDeliveryError | Error;
  /**
   * Set by the guard when the message went to a smart host that is not an MX host of this domain. The smart host's
   * name is then the policy domain (`policyDomain`, RFC 8461 §3.4) and `mode`, `policyId`, `mx`, `validated` are
   * those of the hop to the smart host; a smart host given by IP has no policy domain (nothing applied, mode `none`).
   */
  relay?: { host: string };
}

/** What `sendMail` resolves with: Nodemailer's usual fields plus per-domain MTA-STS details. */
export interface MtaStsSentMessageInfo {
  envelope: { from: string | false; to: string[] };
  messageId: string;
  /** Recipients an MX host (or the relay) accepted. */
  accepted: string[];
  /** Recipients not delivered (rejected by the MX, or their domain failed). */
  rejected: string[];
  /** The subset of `rejected` whose failure is temporary: retry these later (e.g. `EMTASTS`). */
  deferred: string[];
  rejectedErrors?: Error[];
  /** The final SMTP reply (of the last domain delivered; every domain's is in `mtaSts`). */
  response: string;
  /** Per recipient domain: policy, mode, MX used, TLS version, validation, attempts. */
  mtaSts: Record<string, DomainDeliveryResult>;
}

/** Codes of {@link MtaStsDeliveryError}. */
export type MtaStsDeliveryErrorCode =
  /** No MX host passed the domain's enforce policy (RFC 8461 §5): temporary, retry later. */
  | 'EMTASTS'
  /** The domain accepts no mail (null MX, RFC 7505) or does not exist: permanent. */
  | 'ENOMX'
  /** The MX lookup failed temporarily: retry later. */
  | 'EDNS'
  /** No MX host could be reached or completed a session (no policy failure involved): retry later. */
  | 'ECONNECTION'
  /** Several domains failed for different reasons (see `domains`). */
  | 'EENVELOPE';

/**
 * The error of a refused or failed delivery. Shaped like Nodemailer's SMTP errors (`code`, `response`,
 * `responseCode`, `command`), plus `temporary` (retry later: never bounce) and the MX hosts tried.
 */
export class MtaStsDeliveryError extends MtaStsSenderError<MtaStsDeliveryErrorCode> {
  override readonly name: string = 'MtaStsDeliveryError';
  /** A synthetic SMTP reply, e.g. `451 4.7.5 ...` (4xx when temporary). */
  readonly response: string;
  readonly responseCode: number;
  readonly command = 'CONN';
  /** Nodemailer's convention: the opposite of `temporary`. */
  readonly permanent: boolean;
  readonly mode: EffectiveMode | undefined;
  readonly policyId: string | undefined;
  /** The recipients that were not delivered. */
  readonly recipients: string[];
  /** Every MX host tried or skipped, with its reason and RFC 8460 result type. */
  readonly attempts: MxAttempt[];
  /** For an error over several domains: each domain's result. */
  readonly domains?: Record<string, DomainDeliveryResult>;

  constructor(
    code: MtaStsDeliveryErrorCode,
    message: string,
    options: { temporary: boolean; enhanced: string; /** Text of the synthetic reply; default `message`. */ responseText?: string; domain?: string; mode?: EffectiveMode; policyId?: string; recipients?: string[]; attempts?: MxAttempt[]; domains?: Record<string, DomainDeliveryResult>; cause?: unknown },
  ) {
    super(code, message, options.temporary, { ...(options.cause !== undefined ? { cause: options.cause } : {}), ...(options.domain !== undefined ? { domain: options.domain } : {}) });
    this.permanent = !options.temporary;
    this.responseCode = options.temporary ? 451 : options.enhanced === '5.1.10' ? 556 : 550;
    this.response = `${this.responseCode} ${options.enhanced} ${options.responseText ?? message}`;
    this.mode = options.mode;
    this.policyId = options.policyId;
    this.recipients = options.recipients ?? [];
    this.attempts = options.attempts ?? [];
    if (options.domains) this.domains = options.domains;
  }

  /** The JSON view of {@link MtaStsSenderError.toJSON}, plus the Nodemailer-shaped reply and the MX hosts tried. */
  override toJSON(): MtaStsSenderErrorJSON<MtaStsDeliveryErrorCode> & { response: string; responseCode: number; mode?: EffectiveMode; policyId?: string; recipients: string[]; attempts: MxAttempt[] } {
    return {
      ...super.toJSON(),
      response: this.response,
      responseCode: this.responseCode,
      ...(this.mode !== undefined ? { mode: this.mode } : {}),
      ...(this.policyId !== undefined ? { policyId: this.policyId } : {}),
      recipients: this.recipients,
      attempts: this.attempts,
    };
  }
}

export interface DeliverOptions {
  hooks: MtaStsHooks;
  /** Nodemailer's SMTP client class (loaded by the factory). */
  smtpConnection: SmtpConnectionClass;
  plan: DeliveryPlan;
  /** The candidates to try, in order. Default: all of the plan's (allowed or not: refused ones are reported). */
  candidates?: MxCandidate[];
  envelope: SMTPEnvelope & { to: string[] };
  message: Buffer;
  port: number;
  connection: SMTPConnectionOptions;
  auth?: SessionRequest['auth'];
  forceAuth?: boolean;
  /** The caller's TLS options (a guarded transport's `tls`); the policy's TLS options override them. */
  tlsBase?: SessionRequest['tlsBase'];
  callerTls?: SessionRequest['callerTls'];
  /** Allow the plaintext retry after a failed handshake where the hooks allow it. Default true. */
  plaintextFallback?: boolean;
  requireTls?: boolean;
  /** Bound of the wait for the reply to STARTTLS, in ms (see `SessionRequest.starttlsTimeoutMs`). */
  starttlsTimeoutMs?: number;
  maxAddressesPerMx: number;
  maxSessions: number;
}

/** The state of one domain's delivery: the result being built, the sessions used, the last error seen. */
interface DomainRun {
  readonly options: DeliverOptions;
  readonly result: DomainDeliveryResult;
  readonly policyId: string | undefined;
  sessions: number;
  lastError: (Error & Record<string, unknown>) | undefined;
}

/** What one MX host or address did for the domain: `next` (try the next one), `stop` (session limit), or done. */
type Step = 'next' | 'stop' | DomainDeliveryResult;

type ErrorWithFields = Error & Record<string, unknown>;

/** What an attempt records besides its outcome: the host, its address and the TLS facts. */
type AttemptFacts = Omit<MxAttempt, 'outcome' | 'stage' | 'reason'>;

/** Delivers to one domain. Never throws. */
export async function deliverToDomain(options: DeliverOptions): Promise<DomainDeliveryResult> {
  const { hooks, plan } = options;
  const recipients = [...options.envelope.to];
  const result = pendingResult(plan, recipients);
  const policyId = result.policyId;
  const run: DomainRun = { options, result, policyId, sessions: 0, lastError: undefined };
  if (plan.allowed.length === 0 && plan.noCandidate?.action === 'bounce') {
    const final = hooks.deliveryFailed(plan);
    return failDomain(run, new MtaStsDeliveryError('ENOMX', final.reason, { temporary: false, enhanced: final.enhancedStatus, domain: plan.domain, mode: plan.mode, ...(policyId ? { policyId } : {}), recipients }), true);
  }
  for (const candidate of options.candidates ?? plan.candidates) {
    const step = await tryCandidate(run, candidate);
    if (step === 'stop') break;
    if (step !== 'next') return step;
  }
  return noHostTookIt(run);
}

/** The domain failed; `decided`: the decision was already emitted (by `hooks.deliveryFailed`). */
function failDomain(run: DomainRun, error: Error, decided = false): DomainDeliveryResult {
  const { hooks, plan } = run.options;
  run.result.error = error;
  run.result.rejectedErrors = [error];
  if (!decided) hooks.emitDecision({ stage: 'delivery', action: 'failed', domain: plan.domain, plan, reason: error.message });
  return run.result;
}

/** One MX host: skipped when the policy does not list it (§4.1), else each of its addresses in turn. */
async function tryCandidate(run: DomainRun, candidate: MxCandidate): Promise<Step> {
  const { hooks } = run.options;
  const attempts = run.result.attempts;
  if (!candidate.allowed) {
    // §4.1: an MX host the enforce policy does not list is never connected to; reported as a policy failure.
    attempts.push({ mx: candidate.host, priority: candidate.priority, outcome: 'skipped', stage: 'policy', reason: candidate.reason, ...(candidate.resultType ? { resultType: candidate.resultType } : {}) });
    recordSafely(hooks, candidate, { success: false, resultType: candidate.resultType ?? 'validation-failure' });
    return 'next';
  }
  let addresses: string[];
  try {
    addresses = await hooks.addressesFor(candidate);
  } catch (error) {
    attempts.push({ mx: candidate.host, priority: candidate.priority, outcome: 'failed', stage: 'dns', reason: (error as Error).message, ...codes(error) });
    run.lastError = error as ErrorWithFields;
    return 'next';
  }
  for (const ip of addresses.slice(0, run.options.maxAddressesPerMx)) {
    if (run.sessions >= run.options.maxSessions) return 'stop';
    run.sessions++;
    const step = await tryAddress(run, candidate, ip);
    if (step !== 'next') return step;
  }
  return 'next';
}

function sessionRequest(options: DeliverOptions, candidate: MxCandidate, ip: string): SessionRequest {
  return {
    hooks: options.hooks,
    smtpConnection: options.smtpConnection,
    candidate,
    ip,
    port: options.port,
    envelope: options.envelope,
    message: options.message,
    connection: options.connection,
    ...(options.auth ? { auth: options.auth } : {}),
    ...(options.forceAuth ? { forceAuth: true } : {}),
    ...(options.tlsBase ? { tlsBase: options.tlsBase } : {}),
    ...(options.callerTls ? { callerTls: options.callerTls } : {}),
    ...(options.requireTls ? { requireTls: true } : {}),
    ...(options.plaintextFallback === false ? { plaintextFallback: false } : {}),
    ...(options.starttlsTimeoutMs !== undefined ? { starttlsTimeoutMs: options.starttlsTimeoutMs } : {}),
  };
}

/** One session with one address of an MX host, judged by the hooks. */
async function tryAddress(run: DomainRun, candidate: MxCandidate, ip: string): Promise<Step> {
  const { hooks } = run.options;
  const attempts = run.result.attempts;
  const request = sessionRequest(run.options, candidate, ip);
  const base = { mx: candidate.host, priority: candidate.priority, ip };
  const first = await runSmtpSession(request);
  const handshake = first.stage === 'tls' && first.verdict ? await afterFailedHandshake(run, candidate, request, first, base) : { session: first, fellBack: false };
  if (handshake === 'next') return 'next';
  const { session, fellBack, fallbackResultType } = handshake;
  if (session.stage === 'connect') {
    attempts.push({ ...base, outcome: 'failed', stage: 'connect', reason: session.error?.message ?? 'connection failed', ...codes(session.error) });
    run.lastError = session.error as ErrorWithFields;
    return 'next';
  }
  if (session.stage === 'tls') {
    // The plaintext retry failed its handshake too (cannot happen without STARTTLS); treat as a connect failure.
    attempts.push({ ...base, outcome: 'failed', stage: 'tls', reason: session.verdict?.reason ?? 'TLS failed', ...codes(session.error) });
    return 'next';
  }
  const verdict = session.verdict;
  if (verdict && !fellBack) recordSafely(hooks, candidate, verdict, { ip, ...(session.localAddress ? { sendingMtaIp: session.localAddress } : {}) });
  if (session.stage === 'policy') {
    // §4.2 / §5: the session did not validate under enforce: the message is not given to this host.
    // Without a verdict, a hook threw: the session was closed unjudged, a temporary refusal of this host.
    attempts.push({ ...base, outcome: 'refused', stage: 'policy', reason: verdict?.reason ?? session.error?.message ?? 'session refused', ...(verdict?.resultType ? { resultType: verdict.resultType } : {}), ...(session.tlsVersion ? { tlsVersion: session.tlsVersion } : {}) });
    if (!verdict && session.error) run.lastError = session.error as ErrorWithFields;
    return 'next';
  }
  const tlsFacts = { ...(session.tlsVersion ? { tlsVersion: session.tlsVersion } : {}), ...(fellBack ? { fallback: 'plaintext' as const } : {}) };
  if (session.delivered) return delivered(run, candidate, session, { ...base, ...tlsFacts }, fellBack, fallbackResultType);
  return transactionFailed(run, session, { ...base, ...tlsFacts });
}

/**
 * The STARTTLS handshake failed: reported; under enforce (or with TLS required) the host is refused, otherwise the
 * session is retried in plaintext, delivering as without MTA-STS (RFC 8461 §5, like Postfix).
 */
async function afterFailedHandshake(
  run: DomainRun,
  candidate: MxCandidate,
  request: SessionRequest,
  session: SessionResult,
  base: { mx: string; priority: number; ip: string },
): Promise<'next' | { session: SessionResult; fellBack: boolean; fallbackResultType?: TlsRptResultType }> {
  const { hooks, plan } = run.options;
  const verdict = session.verdict!;
  recordSafely(hooks, candidate, verdict, { ip: base.ip, ...(session.localAddress ? { sendingMtaIp: session.localAddress } : {}) });
  const attempt: MxAttempt = { ...base, outcome: plan.mode === 'enforce' || candidate.requireTls ? 'refused' : 'failed', stage: 'tls', reason: verdict.reason, ...(verdict.resultType ? { resultType: verdict.resultType } : {}), ...codes(session.error) };
  run.result.attempts.push(attempt);
  if (!verdict.plaintextFallback || run.options.plaintextFallback === false) {
    run.lastError = session.error as ErrorWithFields;
    return 'next';
  }
  attempt.fallback = 'plaintext';
  return { session: await runSmtpSession({ ...request, plaintext: true }), fellBack: true, fallbackResultType: verdict.resultType ?? 'validation-failure' };
}

/** The host took the message: the domain's result, and the `delivered` decision. */
function delivered(run: DomainRun, candidate: MxCandidate, session: SessionResult, base: AttemptFacts, fellBack: boolean, fallbackResultType: TlsRptResultType | undefined): DomainDeliveryResult {
  const { hooks, plan } = run.options;
  const result = run.result;
  const verdict = session.verdict;
  const info = session.info as SMTPConnectionSendInfo;
  // What failed about this delivery (reported, not enforced): the handshake that forced the plaintext retry, or the
  // session's own verdict.
  const reported = fallbackResultType ?? (verdict && !verdict.success ? verdict.resultType : undefined);
  result.attempts.push({ ...base, outcome: 'delivered', stage: 'done', reason: info.response, ...(reported ? { resultType: reported } : {}) });
  result.status = 'delivered';
  result.mx = candidate.host;
  result.ip = base.ip!;
  result.secure = session.secure;
  if (session.tlsVersion) result.tlsVersion = session.tlsVersion;
  result.validated = verdict?.verdict.ok === true;
  if (reported) result.resultType = reported;
  if (fellBack) result.plaintextFallback = true;
  result.accepted = [...info.accepted];
  result.rejected = [...info.rejected];
  if (info.rejectedErrors && info.rejectedErrors.length > 0) result.rejectedErrors = [...info.rejectedErrors];
  else delete result.rejectedErrors;
  result.response = info.response;
  hooks.emitDecision({
    stage: 'delivery',
    action: 'delivered',
    domain: plan.domain,
    plan,
    mx: candidate.host,
    ip: result.ip,
    verdict: result.validated ? 'pass' : 'fail',
    ...(result.resultType ? { resultType: result.resultType } : {}),
    ...(result.tlsVersion ? { tlsVersion: result.tlsVersion } : {}),
    reason: `${plan.domain}: delivered to ${candidate.host} [${result.ip}] ${result.secure ? `over ${result.tlsVersion}` : 'in plaintext'}${result.validated ? ', certificate validated' : ''} (mode ${plan.mode})`,
  });
  return result;
}

/** The SMTP transaction failed: the next host is tried, unless this one answered for the recipients. */
function transactionFailed(run: DomainRun, session: SessionResult, base: AttemptFacts): Step {
  const error = session.error as (ErrorWithFields & { responseCode?: number }) | undefined;
  run.result.attempts.push({ ...base, outcome: session.tryNext ? 'failed' : 'rejected', stage: session.stage === 'auth' ? 'auth' : 'smtp', reason: error?.message ?? 'transaction failed', ...codes(error) });
  run.lastError = error;
  if (session.tryNext) return 'next';
  // The MX answered for these recipients: that is the domain's answer (no other MX is tried).
  if (error) {
    error.domain = run.options.plan.domain;
    error.attempts = run.result.attempts;
    error.temporary = typeof error.responseCode === 'number' ? error.responseCode < 500 : true;
    const rejected = Array.isArray(error.rejected) ? (error.rejected as string[]) : run.result.recipients;
    run.result.rejected = [...rejected];
  }
  return failDomain(run, error ?? new Error('transaction failed'));
}

/** No host took the message: the hooks decide the final action (RFC 8461 §5.1: defer) and emit it. */
function noHostTookIt(run: DomainRun): DomainDeliveryResult {
  const { hooks, plan } = run.options;
  const { attempts, recipients } = run.result;
  const policyId = run.policyId;
  const failures = attempts.map((a): DeliveryFailure => ({ mx: a.mx, ...(a.ip ? { ip: a.ip } : {}), ...(a.resultType ? { resultType: a.resultType } : {}), reason: a.reason }));
  const final = hooks.deliveryFailed(plan, { failures });
  const base = { temporary: final.temporary, enhanced: final.enhancedStatus, domain: plan.domain, mode: plan.mode, ...(policyId ? { policyId } : {}), recipients, attempts, ...(run.lastError ? { cause: run.lastError } : {}) };
  if (final.enhancedStatus === '4.7.5') {
    const responseText = `MTA-STS: no MX host of ${plan.domain} passed its enforce policy (id ${policyId ?? '?'}); try again later`;
    return failDomain(run, new MtaStsDeliveryError('EMTASTS', final.reason, { ...base, responseText }), true);
  }
  return failDomain(run, new MtaStsDeliveryError(attempts.length === 0 ? 'ENOMX' : 'ECONNECTION', final.reason, base), true);
}

/**
 * Records a session for TLS-RPT (RFC 8460). Reporting never affects delivery: a recorder or `outcome` listener that
 * throws is logged, and the message is neither failed after it was delivered nor given to a host it was refused.
 */
function recordSafely(hooks: MtaStsHooks, candidate: MxCandidate, result: Parameters<MtaStsHooks['recordOutcome']>[1], context?: Parameters<MtaStsHooks['recordOutcome']>[2]): void {
  try {
    hooks.recordOutcome(candidate, result, context);
  } catch (error) {
    hooks.logger.warn?.('mta-sts: recording a TLS-RPT outcome threw; delivery is not affected', { mx: candidate.host, error: String(error) });
  }
}

/** Re-emits a session outcome; a throwing `outcome` listener is a bug of the listener: it must not fail (or re-send) a delivery. */
export function emitOutcome(emitter: { emit(event: 'outcome', outcome: unknown): boolean }, logger: Logger, outcome: unknown): void {
  try {
    emitter.emit('outcome', outcome);
  } catch (error) {
    logger.warn?.('mta-sts: an outcome listener threw', { error: String(error) });
  }
}

/**
 * The result of a domain whose delivery threw (an exception of ours or of an injected seam): a temporary failure,
 * never a bounce and never "delivered" (RFC 8461 §5.1: defer; under `enforce`, nothing unverified went out, since the
 * message is given to a host only after the hooks allowed it).
 */
export function failedUnexpectedly(hooks: MtaStsHooks, plan: DeliveryPlan, recipients: string[], error: unknown): DomainDeliveryResult {
  const lookup = plan.lookup;
  const policyId = lookup.status === 'policy' ? lookup.policy?.id : undefined;
  const enforce = plan.mode === 'enforce';
  const reason = `${plan.domain}: delivery failed unexpectedly (${String((error as Error)?.message ?? error).slice(0, 200)}); not delivered, retry later (RFC 8461 §5.1)`;
  const err = new MtaStsDeliveryError(enforce ? 'EMTASTS' : 'ECONNECTION', reason, {
    temporary: true,
    enhanced: enforce ? '4.7.5' : '4.3.0',
    domain: plan.domain,
    mode: plan.mode,
    ...(policyId ? { policyId } : {}),
    recipients,
    cause: error,
  });
  try {
    hooks.emitDecision({ stage: 'delivery', action: 'defer', domain: plan.domain, plan, reason });
  } catch {
    // The decision is informational; the deferral stands.
  }
  return { ...pendingResult(plan, [...recipients]), rejectedErrors: [err], error: err };
}

/** A domain's result before any host took the message: failed, every recipient rejected, nothing tried yet. */
function pendingResult(plan: DeliveryPlan, recipients: string[]): DomainDeliveryResult {
  const lookup = plan.lookup;
  const policyId = lookup.status === 'policy' ? lookup.policy?.id : undefined;
  return {
    domain: plan.domain,
    recipients,
    status: 'failed',
    mode: plan.mode,
    policyStatus: lookup.status,
    ...(policyId !== undefined ? { policyId, policySource: lookup.source } : {}),
    policyDomain: plan.domain,
    secure: false,
    validated: false,
    accepted: [],
    rejected: [...recipients],
    attempts: [],
  };
}

function codes(error: unknown): { errorCode?: string; responseCode?: number } {
  if (typeof error !== 'object' || error === null) return {};
  const e = error as { code?: unknown; originalCode?: unknown; responseCode?: unknown };
  const code = typeof e.originalCode === 'string' ? e.originalCode : typeof e.code === 'string' ? e.code : undefined;
  return { ...(code ? { errorCode: code } : {}), ...(typeof e.responseCode === 'number' ? { responseCode: e.responseCode } : {}) };
}

/** Groups envelope recipients by normalised domain (order kept); addresses without a valid domain go to `invalid`. */
export function groupRecipients(to: readonly string[]): { groups: Map<string, string[]>; invalid: string[] } {
  const groups = new Map<string, string[]>();
  const invalid: string[] = [];
  for (const address of to) {
    const at = address.lastIndexOf('@');
    const domain = at > 0 ? normalizeDomainOrUndefined(address.slice(at + 1)) : undefined;
    if (domain === undefined) {
      invalid.push(address);
      continue;
    }
    const list = groups.get(domain);
    if (list) list.push(address);
    else groups.set(domain, [address]);
  }
  return { groups, invalid };
}

/** True when a failure may succeed later (`temporary`, a 4xx reply, or anything not marked permanent). */
export function isTemporary(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const e = error as { temporary?: unknown; responseCode?: unknown; permanent?: unknown };
  if (typeof e.temporary === 'boolean') return e.temporary;
  if (typeof e.responseCode === 'number') return e.responseCode < 500;
  return e.permanent !== true;
}

/**
 * Combines per-domain results into what `sendMail` resolves with, or throws: the send fails only when no recipient
 * was accepted (like Nodemailer's SMTP transport when every recipient is rejected). A single failed domain throws
 * its own error; several throw an aggregate (`EMTASTS` when every domain failed MTA-STS, else `EENVELOPE`).
 */
export function buildSendResult(input: { envelope: { from: string | false; to: string[] }; messageId: string; order: string[]; results: Record<string, DomainDeliveryResult>; invalid: string[] }): MtaStsSentMessageInfo {
  const { envelope, messageId, order, results, invalid } = input;
  const info: MtaStsSentMessageInfo = { envelope, messageId, accepted: [], rejected: [], deferred: [], response: '', mtaSts: {} };
  const rejectedErrors: Error[] = [];
  for (const address of invalid) {
    info.rejected.push(address);
    rejectedErrors.push(Object.assign(new Error(`Invalid recipient domain in ${JSON.stringify(address)}`), { code: 'EENVELOPE', recipient: address, responseCode: 553, permanent: true }));
  }
  for (const domain of order) {
    const r = results[domain];
    if (!r) continue;
    info.mtaSts[domain] = r;
    info.accepted.push(...r.accepted);
    info.rejected.push(...r.rejected);
    if (r.rejectedErrors) rejectedErrors.push(...r.rejectedErrors);
    if (r.status === 'failed' && isTemporary(r.error)) info.deferred.push(...r.rejected);
    if (r.status === 'delivered' && r.response) info.response = r.response;
  }
  if (rejectedErrors.length > 0) info.rejectedErrors = rejectedErrors;
  if (info.accepted.length > 0) return info;

  const failed = order.map((d) => results[d]).filter((r): r is DomainDeliveryResult => r !== undefined);
  let error: Error & Record<string, unknown>;
  if (failed.length === 1 && invalid.length === 0 && failed[0]!.error) {
    error = failed[0]!.error as Error & Record<string, unknown>;
  } else {
    const errors = failed.map((r) => r.error).filter((e): e is NonNullable<typeof e> => e !== undefined);
    const codes = new Set(errors.map((e) => String((e as { code?: unknown }).code)));
    const temporary = errors.some(isTemporary);
    const only = codes.size === 1 && invalid.length === 0 ? [...codes][0] : undefined;
    const summary = failed.map((r) => `${r.domain}: ${r.error?.message ?? 'failed'}`).join(' | ') || 'no valid recipient domain';
    error = new MtaStsDeliveryError(only === 'EMTASTS' ? 'EMTASTS' : 'EENVELOPE', `No recipient domain accepted the message: ${summary}`, {
      temporary,
      enhanced: temporary ? '4.0.0' : '5.0.0',
      recipients: envelope.to,
      attempts: failed.flatMap((r) => r.attempts),
      domains: Object.fromEntries(failed.map((r) => [r.domain, r])),
    }) as unknown as Error & Record<string, unknown>;
  }
  error.rejected = info.rejected;
  error.rejectedErrors = rejectedErrors;
  error.deferred = info.deferred;
  error.mtaSts = info.mtaSts;
  error.envelope = envelope;
  error.messageId = messageId;
  throw error;
}
