/**
 * How the guard ({@link guardTransport}) routes each recipient domain, and the results of routed domains.
 *
 * The guarded transport talks to one host. For each recipient domain that host is either one of the domain's MX
 * hosts (in its MX records, or matching its MTA-STS policy's `mx` patterns: the domain's own policy applies, RFC 8461
 * §4, §5), or a smart host: "an administratively configured intermediate SMTP relay, which is different from the
 * message recipient's server as determined from DNS". For a smart host, RFC 8461 §3.4 says "compliant senders MUST
 * treat the smart host domain as the Policy Domain for the purposes of policy discovery and application": the
 * smart host's own name is then the policy domain, and its policy is applied to the one "MX host" of the hop, the
 * smart host itself. A smart host given as an IP address (or `localhost`) has no policy domain: nothing to discover.
 * When the guard cannot tell which case holds for a domain whose policy would matter, it defers the domain (§5.1).
 *
 * Which case holds is never taken from the MX answer alone where an `enforce` policy is at stake: DNS is not
 * authenticated, and an attacker who answers the MX query without the transport's host would otherwise turn the
 * refused delivery to an unlisted MX host into a relay without the domain's policy. A host that the recipient
 * domain's `enforce` policy does not list is a smart host only when the guard is told so (`relay: true`); otherwise
 * that domain is deferred (RFC 8461 §4.1, §5.1). A host the policy lists is an MX host of the domain whatever DNS
 * says, with or without `relay: true`: the domain's own policy applies to the session.
 */
import { MtaStsError } from '../../errors.js';
import { findMatchingPattern } from '../../mx/match.js';
import type { DeliveryPlan, EffectiveMode, MxCandidate } from '../../plan/plan.js';
import type { PolicyLookup } from '../../types.js';
import type { MtaStsHooks } from '../hooks.js';
import { MtaStsDeliveryError, type DomainDeliveryResult } from './deliver.js';

/** The `smart-host` event of the guard, once per host: mail is relayed, and what that means for MTA-STS (§3.4). */
export interface SmartHostNotice {
  host: string;
  /** The recipient domains of the first message relayed. */
  domains: string[];
  /** The policy domain of the hop (the smart host's name, RFC 8461 §3.4); absent for a smart host given by IP. */
  policyDomain?: string;
  /** The mode applied to the hop: the smart host's policy mode, or `none`. */
  mode: EffectiveMode;
  reason: string;
}

/** A policy as recorded in a result: the mode, the status of the lookup, the id. */
export interface PolicySummary {
  mode: EffectiveMode;
  status: PolicyLookup['status'];
  policyId?: string;
}

export function policySummary(lookup: PolicyLookup): PolicySummary {
  const policy = lookup.status === 'policy' ? lookup.policy : undefined;
  return { mode: policy?.mode ?? 'none', status: lookup.status, ...(policy ? { policyId: policy.id } : {}) };
}

/** How the guard handles one recipient domain: direct MX delivery (plan + candidate), relay, or defer. */
export interface Classification {
  plan?: DeliveryPlan;
  candidate?: MxCandidate;
  /** The recipient domain's own policy. */
  policy: PolicySummary;
  /** Set when the domain must be deferred: why. */
  defer?: unknown;
  /** The whole reason of the deferral, when `defer` alone does not say it. */
  reason?: string;
}

/** What the guard was told about its transport's host. */
export interface HostDeclaration {
  /** The host has a name (a policy domain of its own, RFC 8461 §3.4), not an IP address or `localhost`. */
  named: boolean;
  /** `relay: true`: the host is a smart host for every domain whose policy does not list it. */
  smartHost: boolean;
}

/** Finds the candidate for the transport's host in the domain's plan, or says the host relays for it, or defers. */
export async function classifyDomain(hooks: MtaStsHooks, domain: string, host: string, declared: HostDeclaration): Promise<Classification> {
  if (!declared.named || declared.smartHost) return classifyByPolicy(hooks, domain, host, declared);
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
  if (plan && candidate) return { plan, candidate, policy: policySummary(plan.lookup) };
  const lookup = plan?.lookup ?? (await hooks.mtaSts.getPolicy(domain));
  const listed = await listedHostPlan(hooks, domain, host, lookup);
  if (listed) return listed;
  const policy = lookup.status === 'policy' ? lookup.policy : undefined;
  // The MX hosts are unknown: under enforce the host might be an MX host the policy does not list (§4.1), and an
  // exception of ours proves nothing either. Relaying would take the domain's policy out of play: defer instead.
  if (planError !== undefined && (!(planError instanceof MtaStsError) || policy?.mode === 'enforce')) return { policy: policySummary(lookup), defer: planError };
  // The same when DNS gave no MX host list to compare with (NXDOMAIN, null MX, no MX records: possibly spoofed)
  // while an enforce policy applies: the plan itself defers such a domain (§5.1), so the guard must not relay it.
  if (plan && plan.mode === 'enforce' && (plan.nullMx || plan.implicitMx || plan.candidates.length === 0)) {
    return { policy: policySummary(lookup), defer: new Error(plan.noCandidate?.reason ?? `${domain}: no MX host list to check ${host} against`) };
  }
  return undeclaredSmartHost(domain, host, lookup);
}

/**
 * The domain's policy lists the host (RFC 8461 §4.1): it is one of the domain's MX hosts whatever the MX answer
 * says, and the domain's policy applies to the session with it (a plan with the host as its one MX host).
 */
async function listedHostPlan(hooks: MtaStsHooks, domain: string, host: string, lookup: PolicyLookup): Promise<Classification | undefined> {
  const policy = lookup.status === 'policy' ? lookup.policy : undefined;
  if (!policy || policy.mode === 'none' || findMatchingPattern(host, policy.mx) === undefined) return undefined;
  const single = await hooks.planDelivery(domain, { mxHosts: [{ exchange: host, priority: 0 }] });
  const only = single.candidates[0];
  return only ? { plan: single, candidate: only, policy: policySummary(single.lookup) } : undefined;
}

/**
 * Without the MX lookup: a host without a name (IP address, `localhost`) or one declared a smart host
 * (`relay: true`). Only the domain's policy is consulted: a policy that lists the host makes it an MX host of the
 * domain (its policy applies); otherwise the host relays, unless an `enforce` policy applies and nobody said the
 * host is a smart host.
 */
async function classifyByPolicy(hooks: MtaStsHooks, domain: string, host: string, declared: HostDeclaration): Promise<Classification> {
  let lookup: PolicyLookup;
  try {
    lookup = await hooks.mtaSts.getPolicy(domain);
  } catch (error) {
    if (error instanceof MtaStsError && error.code === 'MTASTS_INVALID_DOMAIN') return { policy: { mode: 'none', status: 'invalid' } };
    throw error;
  }
  if (declared.named) {
    const listed = await listedHostPlan(hooks, domain, host, lookup);
    if (listed) return listed;
  }
  return declared.smartHost ? { policy: policySummary(lookup) } : undeclaredSmartHost(domain, host, lookup);
}

/**
 * The host is not an MX host the domain's policy lists. Under `enforce`, the MX answer that says so is not
 * authenticated (an attacker can leave the host out of it), so the host is a smart host (RFC 8461 §3.4) only when the
 * guard was told (`relay: true`); otherwise the domain is deferred, never relayed without its policy (§4.1, §5.1).
 */
function undeclaredSmartHost(domain: string, host: string, lookup: PolicyLookup): Classification {
  const policy = policySummary(lookup);
  if (policy.mode !== 'enforce') return { policy };
  const reason = `${domain}: ${host} is not listed in the enforce policy of ${domain} (RFC 8461 §4.1) and the guard was not told it is a smart host; not delivered, retry later (RFC 8461 §5.1). If ${host} is a relay (smart host) rather than an MX host of ${domain}, guard the transport with relay: true to apply the smart host's own policy (RFC 8461 §3.4)`;
  return { policy, defer: new Error(reason), reason };
}

/**
 * The smart host's route (RFC 8461 §3.4): `apply` its plan (a policy, or TLS required by configuration), `none`
 * (no usable policy: the transport relays as it would without MTA-STS), or `defer` (the plan failed: an exception
 * of ours must not switch a policy off).
 */
export type SmartHostRoute =
  | { kind: 'apply'; plan: DeliveryPlan; candidate: MxCandidate; policy: PolicySummary }
  | { kind: 'none'; policy: PolicySummary }
  | { kind: 'defer'; policy: PolicySummary; cause: unknown };

/** Discovers the smart host's policy and plans the hop to the one "MX host" it has: itself. Never throws. */
export async function routeSmartHost(hooks: MtaStsHooks, policyDomain: string): Promise<SmartHostRoute> {
  try {
    const plan = await hooks.planDelivery(policyDomain, { mxHosts: [{ exchange: policyDomain, priority: 0 }] });
    const candidate = plan.candidates[0];
    const policy = policySummary(plan.lookup);
    if (!candidate) return { kind: 'defer', policy, cause: new Error(`no candidate for the smart host ${policyDomain}`) };
    if (plan.mode === 'none' && !plan.tlsRequired) return { kind: 'none', policy };
    return { kind: 'apply', plan, candidate, policy };
  } catch (error) {
    return { kind: 'defer', policy: { mode: 'none', status: 'temp-error' }, cause: error ?? new Error('planning failed') };
  }
}

/** What the `smart-host` notice says, by route. */
export function smartHostReason(host: string, policyDomain: string | undefined, route: SmartHostRoute | undefined): string {
  if (policyDomain === undefined) {
    return `mail is relayed through the smart host ${host}, which is ${host === 'localhost' ? 'localhost' : 'an IP address'}: it has no policy domain, so no MTA-STS policy can be discovered or applied to this hop (RFC 8461 §3.4 makes the smart host's domain the policy domain); configure the smart host by name to apply its policy. The relay's onward delivery must apply the recipient domains' policies.`;
  }
  const lead = `mail is relayed through the smart host ${host}, which is not an MX host of the recipient domains: ${policyDomain} is the policy domain of this hop (RFC 8461 §3.4)`;
  if (route?.kind === 'apply') return `${lead}; its ${route.plan.mode} policy${route.policy.policyId ? ` (id ${route.policy.policyId})` : ''} is applied to the session with ${host}.`;
  if (route?.kind === 'defer') return `${lead}; its policy could not be determined, relayed mail is deferred.`;
  return `${lead}; it publishes no usable MTA-STS policy (${route?.policy.status ?? 'none'}), so mail goes out with the transport's own TLS settings.`;
}

/** The reason of a domain's `relay` decision. */
export function relayDecisionReason(domain: string, host: string, policyDomain: string | undefined, route: SmartHostRoute | undefined): string {
  if (policyDomain === undefined) return `${domain}: relayed through ${host}, which has no policy domain (an IP address or localhost, RFC 8461 §3.4); MTA-STS not applied to this hop`;
  const mode = route?.kind === 'apply' ? `its ${route.plan.mode} policy applies` : route?.kind === 'defer' ? 'its policy could not be determined: deferred' : 'no usable policy: the transport\'s own TLS settings apply';
  return `${domain}: ${host} is not an MX host of ${domain}: smart-host delivery, the policy domain is ${policyDomain} (RFC 8461 §3.4), ${mode}`;
}

/**
 * A domain the guard could not route safely (its plan failed and an `enforce` policy applies, the smart host's plan
 * failed, or an exception of ours): deferred, neither relayed without its policy nor bounced (RFC 8461 §5.1).
 */
export function deferredResult(hooks: MtaStsHooks, host: string, domain: string, recipients: string[], policy: PolicySummary, cause: unknown, policyDomain = domain, given?: string): DomainDeliveryResult {
  const enforce = policy.mode === 'enforce';
  const why = String((cause as Error)?.message ?? cause).slice(0, 200);
  const reason =
    given ??
    (policyDomain !== domain
      ? `${domain}: the policy of the smart host ${policyDomain} (RFC 8461 §3.4) could not be determined (${why}); not relayed, retry later (RFC 8461 §5.1)`
      : enforce
        ? `${domain}: the MX hosts could not be determined (${why}) and its enforce policy does not list ${host}; not relayed without MTA-STS, retry later (RFC 8461 §4.1, §5.1)`
        : `${domain}: planning failed unexpectedly (${why}); not delivered, retry later`);
  const error = new MtaStsDeliveryError(enforce || policyDomain !== domain ? 'EMTASTS' : 'EDNS', reason, {
    temporary: true,
    enhanced: enforce || policyDomain !== domain ? '4.7.5' : '4.4.3',
    domain,
    mode: policy.mode,
    ...(policy.policyId ? { policyId: policy.policyId } : {}),
    recipients,
    cause,
  });
  hooks.emitDecision({ stage: 'delivery', action: 'defer', domain, mode: policy.mode, mx: host, ...(policyDomain !== domain ? { policyDomain } : {}), reason });
  return {
    domain,
    recipients,
    status: 'failed',
    mode: policy.mode,
    policyStatus: policy.status,
    ...(policy.policyId ? { policyId: policy.policyId } : {}),
    policyDomain,
    secure: false,
    validated: false,
    accepted: [],
    rejected: [...recipients],
    rejectedErrors: [error],
    attempts: [],
    error,
    ...(policyDomain !== domain ? { relay: { host } } : {}),
  };
}

/** A domain relayed as the transport would without MTA-STS (no policy for the hop): Nodemailer's answer, per domain. */
export function passThroughResult(domain: string, recipients: string[], host: string, policyDomain: string | undefined, policy: PolicySummary | undefined, sent: { accepted?: string[]; response?: string }): DomainDeliveryResult {
  const accepted = (sent.accepted ?? []).filter((r) => recipients.includes(r));
  const result: DomainDeliveryResult = {
    domain,
    recipients,
    status: accepted.length > 0 ? 'delivered' : 'failed',
    mode: policy?.mode ?? 'none',
    policyStatus: policy?.status ?? 'none',
    ...(policy?.policyId ? { policyId: policy.policyId } : {}),
    ...(policyDomain !== undefined ? { policyDomain } : {}),
    secure: false,
    validated: false,
    accepted,
    rejected: recipients.filter((x) => !accepted.includes(x)),
    attempts: [],
    relay: { host },
  };
  if (sent.response) result.response = sent.response;
  return result;
}

/**
 * One recipient domain's share of the smart host's delivery (one transaction for every relayed recipient, under the
 * smart host's policy): its recipients, what the smart host accepted of them, and the policy domain that applied.
 */
export function relayedShare(result: DomainDeliveryResult, domain: string, recipients: string[], host: string): DomainDeliveryResult {
  const accepted = result.accepted.filter((r) => recipients.includes(r));
  const share: DomainDeliveryResult = { ...result, domain, recipients: [...recipients], accepted, rejected: recipients.filter((r) => !accepted.includes(r)), status: accepted.length > 0 ? 'delivered' : 'failed', relay: { host } };
  delete share.rejectedErrors;
  delete share.error;
  const mine = (result.rejectedErrors ?? []).filter((e) => {
    const recipient = (e as { recipient?: unknown }).recipient;
    return typeof recipient !== 'string' || recipients.includes(recipient);
  });
  if (share.rejected.length > 0 && mine.length > 0) share.rejectedErrors = mine;
  if (share.status === 'failed') {
    share.error = result.error ?? mine[0] ?? new Error(`${domain}: the smart host ${host} accepted none of its recipients`);
    share.rejectedErrors ??= [share.error];
  }
  return share;
}
