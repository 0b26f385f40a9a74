/**
 * Delivery planning with discovery (RFC 8461 §4, §5): the policy lookup and the MX lookup run concurrently, then the
 * pure {@link buildPlan} decides. The MX answer comes from DNS unless the caller passes the MX hosts.
 *
 * A reused MX answer whose TTL is unknown (`node:dns` reports none for MX) is checked against the policy in force
 * and asked for again when they disagree (see {@link recheckMx}), so no stale MX answer defers mail to a domain whose
 * policy and MX records changed together.
 */
import { classifyMxRecords, lookupMx, orderMxHosts, type MxLookup } from '../discovery/mx.js';
import type { MxRecord } from '../discovery/resolver.js';
import type { MxAnswer, SharedAnswersResolver } from '../discovery/shared-answers.js';
import { normalizeDomain, normalizeDomainOrUndefined } from '../domain.js';
import { findMatchingPattern } from '../mx/match.js';
import { buildPlan, type DeliveryPlan } from '../plan/plan.js';
import type { ActivePolicy, PolicyLookup } from '../types.js';

export interface PlannerOptions {
  resolver: SharedAnswersResolver;
  dnsTimeoutMs: number;
  maxMxHosts: number;
  trustRoots: (string | Buffer)[] | undefined;
  requireTlsEverywhere: boolean;
  getPolicy: (domain: string, options: { signal?: AbortSignal }) => Promise<PolicyLookup>;
}

/** The MX lookup of one plan, and the shared answer it came from (none when the query failed or hosts were given). */
interface AskedMx {
  mx: MxLookup;
  answer?: MxAnswer;
}

/** The label of an MX answer planned with no policy (policy ids are never empty, RFC 8461 §3.1). */
const NO_POLICY = '';

/** Plans delivery to a domain. Rejects with `MTASTS_INVALID_DOMAIN`, or a temporary error when the MX lookup fails. */
export async function planDelivery(o: PlannerOptions, domainInput: string, mxHosts: ReadonlyArray<string | MxRecord> | undefined, signal: AbortSignal | undefined): Promise<DeliveryPlan> {
  const domain = normalizeDomain(domainInput);
  const given = mxHosts?.map((mx, index) => (typeof mx === 'string' ? { exchange: mx, priority: index } : mx));
  const [lookup, asked] = await Promise.all([
    o.getPolicy(domain, signal ? { signal } : {}),
    given ? Promise.resolve<AskedMx>({ mx: classifyMxRecords(given) }) : askMx(o, domain, signal, false),
  ]);
  const { mx } = await recheckMx(o, domain, signal, lookup, asked);
  if (mx.kind === 'error') throw mx.error;
  const candidates = mx.kind === 'ok' || mx.kind === 'implicit' ? orderMxHosts(mx.records, o.maxMxHosts) : [];
  return buildPlan({
    domain,
    lookup,
    mx: candidates,
    nullMx: mx.kind === 'null-mx',
    domainNotFound: mx.kind === 'nxdomain',
    implicitMx: mx.kind === 'implicit',
    ca: o.trustRoots,
    requireTlsEverywhere: o.requireTlsEverywhere,
  });
}

/** The MX records of `domain` through the shared answers; `fresh`: never a reused answer. */
async function askMx(o: PlannerOptions, domain: string, signal: AbortSignal | undefined, fresh: boolean): Promise<AskedMx> {
  let answer: MxAnswer | undefined;
  const mx = await lookupMx(
    async () => {
      answer = await o.resolver.resolveMxAnswer(domain, { fresh });
      return answer.records;
    },
    domain,
    o.dnsTimeoutMs,
    signal,
  );
  return mx.kind === 'error' || answer === undefined ? { mx } : { mx, answer };
}

/**
 * RFC 1035 §3.2.1, RFC 2181 §8: an answer may not be reused beyond its TTL. `node:dns` reports no MX TTL, so a
 * reused MX answer (at most `dnsAnswerCacheMs` old) may have outlived it. It is asked for again, fresh, when it
 * disagrees with the policy in force: the policy id changed since the answer was last planned with (a domain that
 * publishes a new policy often moves its MX records with it, RFC 8461 §3.1), or no MX host matches the policy's
 * `mx` patterns (RFC 8461 §4.1). The fresh outcome then counts, whatever it is. Each answer is labelled with the
 * policy it was planned with.
 */
async function recheckMx(o: PlannerOptions, domain: string, signal: AbortSignal | undefined, lookup: PolicyLookup, asked: AskedMx): Promise<AskedMx> {
  const label = lookup.policy?.id ?? NO_POLICY;
  const stale = asked.answer?.reused === true && (asked.answer.label !== label || !anyMxMatches(asked.mx, lookup.policy));
  const current = stale ? await askMx(o, domain, signal, true) : asked;
  current.answer?.setLabel(label);
  return current;
}

/** True unless a policy with `mx` patterns (enforce, testing) applies and no MX host of the answer matches one. */
function anyMxMatches(mx: MxLookup, policy: ActivePolicy | undefined): boolean {
  if (policy === undefined || policy.mode === 'none') return true;
  if (mx.kind === 'null-mx') return false;
  if (mx.kind !== 'ok') return true;
  return mx.records.some((r) => {
    const host = normalizeDomainOrUndefined(r.exchange);
    return host !== undefined && findMatchingPattern(host, policy.mx) !== undefined;
  });
}
