/**
 * The RFC 8460 §4.4 policy a delivery plan's sessions are reported under (`policy-type`, `policy-domain`,
 * `policy-string`, `mx-host`). Internal: used by the hooks, not part of the public API.
 */
import { causeChain } from '../errors.js';
import type { DeliveryPlan } from '../plan/plan.js';
import type { TlsRptPolicyRef } from '../tlsrpt/types.js';

/** Longest invalid policy text put in a report (the aggregation cap `maxPolicyStringLength` applies as well). */
const MAX_REPORTED_POLICY_CHARS = 8192;

/** The RFC 8460 policy a plan's sessions are reported under. */
export function policyRef(plan: DeliveryPlan): TlsRptPolicyRef {
  const lookup = plan.lookup;
  if (plan.mode !== 'none' && lookup.status === 'policy' && lookup.policy) {
    return {
      type: 'sts',
      domain: plan.domain,
      policyString: policyLines(lookup.policy.text),
      mxHost: [...lookup.policy.mx],
    };
  }
  if (lookup.status === 'fetch-error' || lookup.status === 'invalid') {
    // RFC 8460 §4.4: the policy-string "including any errors": the text that failed to parse, when one was fetched.
    const text = policyTextOf(lookup.error);
    return { type: 'sts', domain: plan.domain, ...(text !== undefined ? { policyString: policyLines(text) } : {}) };
  }
  return { type: 'no-policy-found', domain: plan.domain };
}

/** One array element per non-empty line (RFC 8460 §4.4 `policy-string`). */
function policyLines(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line.length > 0);
}

/** The fetched policy text a discovery error carries (`details.policyText`, also through a backoff's `cause`). */
function policyTextOf(error: unknown): string | undefined {
  for (const link of causeChain(error)) {
    const text = (link.details as Record<string, unknown> | undefined)?.policyText;
    if (typeof text === 'string') return text.slice(0, MAX_REPORTED_POLICY_CHARS);
  }
  return undefined;
}
