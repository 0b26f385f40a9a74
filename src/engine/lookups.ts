/**
 * The engine's lookups on top of discovery: `getPolicy` (normalise, share the discovery, fall back to the cached
 * policy when the caller aborts — RFC 8461 §3.3, §10.2), the optional on-path background refresh, and the
 * refresher's per-domain step (adopt from tier 2, take the fleet's `refresh:` lease, re-check the TXT id, refetch
 * when due — §5.1).
 */
import { normalizeDomain } from '../domain.js';
import { MtaStsError } from '../errors.js';
import type { PolicyStoreEntry } from '../cache/store.js';
import type { TieredPolicyCache } from '../cache/tiered.js';
import type { PolicyLookup } from '../types.js';
import type { Discovery, DiscoveryMode } from './discovery.js';
import type { DiscoveryTracer } from './trace.js';

export interface GetPolicyOptions {
  /**
   * Stops waiting when it fires: the result is then the unexpired cached policy (source `stale-cache`, error
   * `MTASTS_ABORTED`), or `temp-error` when none is known. An abort never turns a known policy off (RFC 8461 §3.3).
   * A policy in the local tier is returned at once; one known only to the store costs that read (at most
   * `storeTimeoutMs`).
   */
  signal?: AbortSignal;
  /** Fetch the policy even when the cached one's id matches (proactive refresh, §5.1 re-check). Backoff still applies. */
  refresh?: boolean;
  /**
   * Observes the discovery step by step (`DiscoveryTraceStep`): the `_mta-sts` TXT answer, the policy
   * fetch (URL, HTTP status, content type, bytes, elapsed ms, error code) and the cache decision. For diagnostics
   * (the `mta-sts check` trace); called synchronously, must not throw. A call joining a discovery already in
   * flight for the domain sees the steps from then on. Default: none (nothing is built for it).
   */
  trace?: DiscoveryTracer;
}

/** The settings the lookups need. */
export interface LookupSettings {
  now: () => number;
  refreshAfterFraction: number;
  refreshIntervalMs: number;
}

const DAY_MS = 86_400_000;
/** Most input names whose normal form `getPolicy` remembers. */
const MAX_NORMALIZED = 1_000;

/** `getPolicy`: normalise, discover (shared per domain), and on the caller's abort fall back to the cached policy. */
export function createGetPolicy(discovery: Discovery, s: LookupSettings): (domain: string, options?: GetPolicyOptions) => Promise<PolicyLookup> {
  const refreshing = new Set<string>();
  // Recently normalised names (a sender looks the same domains up again and again); bounded, cleared when full.
  const normalized = new Map<string, string>();
  return async (domainInput, opts = {}) => {
    let domain: string;
    try {
      const known = typeof domainInput === 'string' ? normalized.get(domainInput) : undefined;
      if (known !== undefined) domain = known;
      else {
        domain = normalizeDomain(domainInput);
        if (normalized.size >= MAX_NORMALIZED) normalized.clear();
        normalized.set(domainInput, domain);
      }
    } catch (error) {
      return Object.freeze({ domain: typeof domainInput === 'string' ? domainInput : '', status: 'invalid', source: 'fetched', error: error as MtaStsError });
    }
    const signal = opts.signal;
    // §3.3, §10.2: an abort is a discovery that did not complete: an unexpired cached policy still applies.
    const aborted = () => discovery.fallback(domain, new MtaStsError('MTASTS_ABORTED', 'policy lookup aborted', { domain, cause: signal?.reason }), 'temp-error', true);
    if (signal?.aborted) return aborted();
    if (opts.refresh !== true) {
      // A fresh local policy whose TXT record was checked recently: answered without I/O or discovery promises.
      const hit = discovery.answerFromCache(domain, opts.trace);
      if (hit) {
        maybeRefreshInBackground(discovery, s, refreshing, hit);
        return hit;
      }
    }
    const mode: DiscoveryMode = { used: true, fetch: opts.refresh === true ? 'always' : 'changed' };
    const pending = discovery.lookup(domain, mode, opts.trace).then((result) => {
      maybeRefreshInBackground(discovery, s, refreshing, result);
      return result;
    });
    if (!signal) return pending;
    // The shared discovery keeps running for other callers; only this caller stops waiting.
    return new Promise<PolicyLookup>((resolve) => {
      const onAbort = () => resolve(aborted());
      signal.addEventListener('abort', onAbort, { once: true });
      void pending.then((result) => {
        signal.removeEventListener('abort', onAbort);
        resolve(result);
      });
    });
  };
}

/** `refreshAfterFraction`: refetch an aging policy that a lookup returned, in the background (§5.1, §10.2). */
function maybeRefreshInBackground(discovery: Discovery, s: LookupSettings, refreshing: Set<string>, result: PolicyLookup): void {
  const policy = result.policy;
  if (s.refreshAfterFraction <= 0 || result.source !== 'cache' || !policy || refreshing.has(result.domain)) return;
  if (s.now() - policy.fetchedAt < Math.min(policy.maxAge * 1000 * s.refreshAfterFraction, DAY_MS)) return;
  refreshing.add(result.domain);
  void discovery.lookup(result.domain, { used: false, fetch: 'always' }).finally(() => refreshing.delete(result.domain));
}

/**
 * §5.1: is a cached policy due for a refetch although its id is unchanged? When half its max_age is gone, or when it
 * would expire before the refresher's next visit (1.5 intervals, allowing for the jitter).
 */
export function isDue(entry: PolicyStoreEntry, now: number, refreshIntervalMs: number): boolean {
  const age = now - entry.fetchedAt;
  return age >= (entry.policy.maxAge * 1000) / 2 || (refreshIntervalMs > 0 && entry.expiresAt - now < 1.5 * refreshIntervalMs);
}

/**
 * One domain's refresh: adopt a newer entry from tier 2 (or write ours back when tier 2 lost it), then, holding the
 * fleet's `refresh:<domain>` lease for the interval, re-check the TXT id and refetch when due.
 */
export async function refreshOne(cache: TieredPolicyCache, discovery: Discovery, s: LookupSettings, domain: string): Promise<boolean> {
  const local = cache.peek(domain);
  if (!local) return false;
  const shared = await cache.readShared(domain);
  if (shared && shared.fetchedAt > local.fetchedAt && s.now() < shared.expiresAt) cache.adopt(domain, shared, false);
  if ((await cache.tryLock(`refresh:${domain}`, s.refreshIntervalMs > 0 ? s.refreshIntervalMs : 60_000)) === 'busy') return false;
  const result = await discovery.lookup(domain, { used: false, fetch: 'due' });
  return result.source === 'fetched' && result.status === 'policy';
}
