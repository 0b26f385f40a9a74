/**
 * Delivery planning (RFC 8461 §4, §5).
 *
 * Given the policy lookup for a recipient domain and its MX hosts, the plan tells an SMTP client which MX hosts it
 * may use, in preference order, and how: under `enforce`, only hosts matching the policy's `mx` patterns, over
 * STARTTLS with TLS 1.2+ and a certificate valid for the dialled MX name, and when none qualifies the message is
 * deferred (a temporary failure, never a bounce: §5.1 asks for a re-check of the policy before failing for good).
 * Under `testing` the client delivers as it would without MTA-STS and reports what would have failed; `none` and
 * "no policy" mean plain opportunistic TLS. Pure: no I/O.
 */
import type { TlsRptResultType } from '../errors.js';
import { findMatchingPattern } from '../mx/match.js';
import { mxTlsOptions, type MxTlsOptions } from '../tls/connect-options.js';
import type { PolicyLookup } from '../types.js';

/** The effective mode a plan applies: a policy's mode, or `none` when there is no usable policy. */
export type EffectiveMode = 'enforce' | 'testing' | 'none';

/** One MX host in a plan. */
export interface MxCandidate {
  /** The MX host name (normalised). */
  host: string;
  /** MX preference (lower first). */
  priority: number;
  /** May the client connect to this host at all? False only under `enforce` (or for an invalid host name). */
  allowed: boolean;
  /** Does the host match the policy's `mx` patterns? `undefined` when there is no policy with patterns. */
  matched: boolean | undefined;
  /** The pattern it matched. */
  pattern?: string;
  /** Why it is (not) allowed, for logs and error messages. */
  reason: string;
  /** Set when the MX name is not a valid host name (never connected to, whatever the mode). */
  invalid?: true;
  /** RFC 8460 result type for a host the policy does not admit (reported under `testing`, refused under `enforce`). */
  resultType?: TlsRptResultType;
  /** Must the session use STARTTLS (no plaintext fallback)? */
  requireTls: boolean;
  /** Must the certificate validate (handshake aborted otherwise)? When false, verify after the fact and report. */
  requireValidCertificate: boolean;
  /** Options for `tls.connect` / the SMTP client's STARTTLS. */
  tls: MxTlsOptions;
}

/** What the client does when no candidate is allowed. */
export interface NoCandidateAction {
  /**
   * `defer`: temporary failure, retry later (policy re-checked then). `bounce`: permanent (null MX, RFC 7505, or
   * NXDOMAIN) — never while an `enforce` policy applies (then a null MX or NXDOMAIN is deferred, RFC 8461 §5.1).
   */
  action: 'defer' | 'bounce';
  reason: string;
}

/** The plan for one recipient domain. */
export interface DeliveryPlan {
  domain: string;
  mode: EffectiveMode;
  /** The policy lookup the plan follows. */
  lookup: PolicyLookup;
  /** True under `enforce` (or with `requireTls` for every domain). */
  tlsRequired: boolean;
  /** All MX candidates in preference order, allowed or not. */
  candidates: MxCandidate[];
  /** The allowed candidates, in preference order: the hosts to try. */
  allowed: MxCandidate[];
  /** True when the domain publishes a null MX (RFC 7505): it accepts no mail. */
  nullMx: boolean;
  /** True when no MX record exists and the domain itself is the implicit MX (RFC 5321 §5.1). */
  implicitMx: boolean;
  /** Set when `allowed` is empty. */
  noCandidate?: NoCandidateAction;
}

export interface BuildPlanInput {
  domain: string;
  lookup: PolicyLookup;
  /** MX hosts with priorities, normalised; `invalid` marks a name that is not a valid host name (never allowed). */
  mx: ReadonlyArray<{ host: string; priority: number; invalid?: boolean }>;
  nullMx?: boolean;
  /** The domain does not exist (NXDOMAIN for its MX query). */
  domainNotFound?: boolean;
  implicitMx?: boolean;
  /** Trust roots for MX TLS. */
  ca: (string | Buffer)[] | undefined;
  /** Require STARTTLS for every domain, policy or not. */
  requireTlsEverywhere?: boolean;
}

/** Builds a delivery plan. Pure. */
export function buildPlan(input: BuildPlanInput): DeliveryPlan {
  const policy = input.lookup.status === 'policy' ? input.lookup.policy : undefined;
  // §5 (none) and "no usable policy": behave as without MTA-STS.
  const mode: EffectiveMode = policy ? policy.mode : 'none';
  const enforce = mode === 'enforce';
  const tlsRequired = enforce || input.requireTlsEverywhere === true;
  const patterns = policy && mode !== 'none' ? policy.mx : undefined;
  const candidates = input.mx.map((mx) => (mx.invalid ? invalidCandidate(mx, input, tlsRequired, enforce) : planCandidate(mx, input, patterns, tlsRequired, enforce)));
  const allowed = candidates.filter((c) => c.allowed);
  const plan: DeliveryPlan = {
    domain: input.domain,
    mode,
    lookup: input.lookup,
    tlsRequired,
    candidates,
    allowed,
    nullMx: input.nullMx === true,
    implicitMx: input.implicitMx === true,
  };
  if (allowed.length === 0) plan.noCandidate = noCandidateAction(input, plan, enforce);
  return plan;
}

/** An MX name that is not a valid host name: never used. */
function invalidCandidate(mx: BuildPlanInput['mx'][number], input: BuildPlanInput, tlsRequired: boolean, enforce: boolean): MxCandidate {
  return {
    host: mx.host,
    priority: mx.priority,
    allowed: false,
    matched: false,
    invalid: true,
    reason: `MX name ${JSON.stringify(mx.host)} is not a valid host name`,
    resultType: 'validation-failure',
    requireTls: tlsRequired,
    requireValidCertificate: enforce,
    tls: mxTlsOptions(mx.host, input.ca, enforce),
  };
}

/** One valid MX host: matched against the policy's patterns (§4.1), allowed or not, and why. */
function planCandidate(mx: BuildPlanInput['mx'][number], input: BuildPlanInput, patterns: readonly string[] | undefined, tlsRequired: boolean, enforce: boolean): MxCandidate {
  const pattern = patterns ? findMatchingPattern(mx.host, patterns) : undefined;
  const matched = patterns ? pattern !== undefined : undefined;
  let allowed = true;
  let reason: string;
  let resultType: TlsRptResultType | undefined;
  if (matched === false) {
    // §4.1: an MX that matches no pattern is not used under enforce; under testing it is used and reported.
    resultType = 'validation-failure';
    if (enforce) {
      allowed = false;
      reason = `${mx.host} is not listed in the enforce policy of ${input.domain} (RFC 8461 §4.1)`;
    } else {
      reason = `${mx.host} is not listed in the testing policy of ${input.domain}; delivering and reporting (RFC 8461 §5)`;
    }
  } else if (matched === true) {
    reason = enforce ? `${mx.host} matches policy pattern ${pattern}; TLS 1.2+ with a valid certificate required` : `${mx.host} matches policy pattern ${pattern} (testing: report only)`;
  } else {
    reason = tlsRequired ? `${mx.host}: no MTA-STS policy; TLS required by configuration` : `${mx.host}: no MTA-STS policy; opportunistic TLS`;
  }
  const candidate: MxCandidate = {
    host: mx.host,
    priority: mx.priority,
    allowed,
    matched,
    reason,
    requireTls: tlsRequired,
    requireValidCertificate: enforce, // §4.2 under enforce; §5 testing validates but delivers anyway
    tls: mxTlsOptions(mx.host, input.ca, enforce),
  };
  if (pattern !== undefined) candidate.pattern = pattern;
  if (resultType !== undefined) candidate.resultType = resultType;
  return candidate;
}

/** What to do when no MX host may be used: defer or bounce, and why. */
function noCandidateAction(input: BuildPlanInput, plan: DeliveryPlan, enforce: boolean): NoCandidateAction {
  if ((plan.nullMx || input.domainNotFound) && enforce) {
    // An enforce policy applies (typically cached and unexpired): a null MX or NXDOMAIN contradicts it and may be
    // a spoofed DNS answer. §5.1: no permanent failure before the policy is re-checked; §3.3: the cached policy
    // applies until it expires. So defer, never bounce: an attacker must not be able to cause bounces.
    const what = plan.nullMx ? 'publishes a null MX (RFC 7505)' : 'does not exist (NXDOMAIN)';
    return {
      action: 'defer',
      reason: `${input.domain} ${what} according to DNS, but an unexpired enforce policy applies to it; deferring rather than bouncing, the answer may be spoofed (RFC 8461 §5.1, §3.3)`,
    };
  }
  if (plan.nullMx) return { action: 'bounce', reason: `${input.domain} publishes a null MX and accepts no mail (RFC 7505)` };
  if (input.domainNotFound) return { action: 'bounce', reason: `${input.domain} does not exist (NXDOMAIN)` };
  // §5.1: an enforce failure is never permanent before the policy has been re-checked: defer.
  return {
    action: 'defer',
    reason: plan.candidates.length === 0 ? `${input.domain} has no MX host to deliver to` : `no MX host of ${input.domain} is permitted by its enforce policy (RFC 8461 §4.1)`,
  };
}

/**
 * The plan for delivering a TLS report by mail (RFC 8460 §5.3): reports "MUST" be delivered despite TLS failures at
 * the reporting domain, so an `enforce` policy is applied as `testing` (every valid MX host, opportunistic TLS,
 * failures noted but not blocking). Pure.
 */
export function planForReportDelivery(plan: DeliveryPlan): DeliveryPlan {
  if (plan.mode !== 'enforce' && !plan.tlsRequired) return plan;
  const candidates = plan.candidates.map((c): MxCandidate =>
    c.invalid ? c : { ...c, allowed: true, requireTls: false, requireValidCertificate: false, tls: { ...c.tls, rejectUnauthorized: false }, reason: `${c.reason}; TLS report mail is delivered despite TLS failures (RFC 8460 §5.3)` },
  );
  const allowed = candidates.filter((c) => c.allowed);
  const relaxed: DeliveryPlan = { ...plan, mode: plan.mode === 'enforce' ? 'testing' : plan.mode, tlsRequired: false, candidates, allowed };
  if (allowed.length > 0) delete relaxed.noCandidate;
  return relaxed;
}
