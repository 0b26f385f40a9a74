/**
 * Delivery planning with discovery (RFC 8461 §4, §5): the policy lookup and the MX lookup run concurrently, then the
 * pure {@link buildPlan} decides. The MX answer comes from DNS unless the caller passes the MX hosts.
 */
import { classifyMxRecords, lookupMx, orderMxHosts } from '../discovery/mx.js';
import type { DnsResolver, MxRecord } from '../discovery/resolver.js';
import { normalizeDomain } from '../domain.js';
import { buildPlan, type DeliveryPlan } from '../plan/plan.js';
import type { PolicyLookup } from '../types.js';

export interface PlannerOptions {
  resolver: DnsResolver;
  dnsTimeoutMs: number;
  maxMxHosts: number;
  trustRoots: (string | Buffer)[] | undefined;
  requireTlsEverywhere: boolean;
  getPolicy: (domain: string, options: { signal?: AbortSignal }) => Promise<PolicyLookup>;
}

/** Plans delivery to a domain. Rejects with `MTASTS_INVALID_DOMAIN`, or a temporary error when the MX lookup fails. */
export async function planDelivery(o: PlannerOptions, domainInput: string, mxHosts: ReadonlyArray<string | MxRecord> | undefined, signal: AbortSignal | undefined): Promise<DeliveryPlan> {
  const domain = normalizeDomain(domainInput);
  const given = mxHosts?.map((mx, index) => (typeof mx === 'string' ? { exchange: mx, priority: index } : mx));
  const [lookup, mx] = await Promise.all([
    o.getPolicy(domain, signal ? { signal } : {}),
    given ? Promise.resolve(classifyMxRecords(given)) : lookupMx(o.resolver, domain, o.dnsTimeoutMs, signal),
  ]);
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
