/**
 * The MTA-STS sender engine (RFC 8461 §3–§5).
 *
 * `createMtaSts()` answers, for a recipient domain, "is there a policy, which MX hosts may I use, and with which
 * TLS requirements?". Discovery looks up the `_mta-sts` TXT record on every lookup and fetches the policy file only
 * when no fresh policy is cached for the id it sees. A cached, unexpired policy survives every discovery failure
 * (NXDOMAIN, SERVFAIL, invalid TXT, HTTPS failure), so an attacker who blocks DNS or HTTPS cannot switch a known
 * policy off. Concurrent lookups for one domain share one discovery, and failed fetches back off per domain.
 *
 * Every seam is injected: resolver, dispatcher, store, clock and logger.
 */
import { LRUCache } from 'lru-cache';
import type { Dispatcher } from 'undici';
import * as tls from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { MemoryPolicyStore, type CachedPolicy, type PolicyStore } from './cache/store.js';
import { createResolverLookup } from './discovery/lookup.js';
import { createPolicyAgent, fetchPolicy } from './discovery/fetch-policy.js';
import { classifyMxRecords, lookupMx, orderMxHosts } from './discovery/mx.js';
import { createDefaultResolver, queryDns, type DnsResolver, type MxRecord } from './discovery/resolver.js';
import { shareAnswers } from './discovery/shared-answers.js';
import { normalizeDomain, normalizeDomainOrUndefined } from './domain.js';
import { MtaStsError, isMtaStsError } from './errors.js';
import { silentLogger, type Logger } from './logger.js';
import { buildPlan, type DeliveryPlan } from './plan/plan.js';
import { selectStsTxtRecord, type StsTxtRecord } from './policy/txt-record.js';
import { buildTrustRoots, mxTlsOptions, strictCheckServerIdentity, TrustStore, verifyTls, type CertificateEvidence, type MxTlsOptions, type TlsSessionInfo, type TlsVerification } from './tls/verify.js';
import type { MtaStsPolicy, PolicyLookup, PolicyStatus } from './types.js';

/** Options of {@link createMtaSts}. Every option has a default; none is required. */
export interface MtaStsOptions {
  /** DNS resolver for TXT, MX, A and AAAA. Default: a `node:dns` Resolver (using `dnsServers` when given). */
  resolver?: DnsResolver;
  /** Shortcut: DNS servers (`ip` or `ip:port`) for the default resolver. Default: the system's. */
  dnsServers?: readonly string[];
  /** Deadline for one DNS query, in ms (the default resolver's own retries end by it too). Default 10000. */
  dnsTimeoutMs?: number;
  /** Reuse positive MX, A and AAAA answers for at most this long, in ms; concurrent queries for a name always share one. Default 5000; 0: no reuse. */
  dnsAnswerCacheMs?: number;
  /** Extra trust roots (PEM) for the policy HTTPS fetch and MX TLS. Default: none (Node's bundled roots only). */
  ca?: string | Buffer | ReadonlyArray<string | Buffer>;
  /** Trust Node's bundled root store in addition to `ca`. Default true. */
  systemRoots?: boolean;
  /** undici dispatcher for policy fetches. Default: an Agent that resolves through `resolver` and trusts `ca`. */
  dispatcher?: Dispatcher;
  /** Overall deadline of one policy fetch (connect, headers and body), in ms. Default 60000 (RFC 8461 §3.3 suggests about a minute). */
  fetchTimeoutMs?: number;
  /** Largest policy body accepted, in bytes. Default 65536 (RFC 8461 §3.3). */
  maxPolicyBytes?: number;
  /** Reject a policy not served as `text/plain` (RFC 8461 §3.2). Default true. */
  requireTextPlain?: boolean;
  /** Where policies are cached. Default: a {@link MemoryPolicyStore} holding at most 100000 policies. */
  store?: PolicyStore;
  /** Clock, epoch ms. Default `Date.now`. */
  now?: () => number;
  /** After a failed fetch, no new fetch for the same domain and TXT id for this long, in ms. Default 300000 (RFC 8461 §3.3). */
  fetchBackoffMs?: number;
  /** Re-check the TXT record of a domain with a fresh cached policy at most this often, in ms. Default 0: on every lookup. */
  txtCheckIntervalMs?: number;
  /**
   * How often cached policies are checked for proactive refresh (RFC 8461 §5.1 / §10.2: refresh before expiry, off
   * the delivery path), in ms: every policy older than half its max_age (or one day) is refetched. The timer starts
   * with the first cached policy and never keeps the process alive. Default 3600000 (hourly); 0 disables.
   */
  refreshIntervalMs?: number;
  /**
   * Also refetch, in the background, a cached policy that a lookup returns once it is older than this fraction of its
   * max_age (at most one day). Default 0 (off: the `refreshIntervalMs` timer does it), so lookups never cause a fetch
   * while the cached policy is current.
   */
  refreshAfterFraction?: number;
  /** Most MX hosts considered per domain. Default 16. */
  maxMxHosts?: number;
  /** Require STARTTLS for domains without a policy too. Default false (opportunistic TLS, RFC 3207). */
  requireTlsEverywhere?: boolean;
  /** FOR TESTS ONLY: the port of the policy HTTPS hosts (the RFC fixes 443). */
  policyPort?: number;
  logger?: Logger;
}

export interface GetPolicyOptions {
  signal?: AbortSignal;
  /** Fetch the policy even when the cached one's id matches (proactive refresh, §5.1 re-check). Backoff still applies. */
  refresh?: boolean;
}

export interface PlanOptions {
  signal?: AbortSignal;
}

/** The engine. */
export interface MtaSts {
  /** Discovers (or returns the cached) policy for a recipient domain. Never throws: failures are in `status` / `error`. */
  getPolicy(domain: string, options?: GetPolicyOptions): Promise<PolicyLookup>;
  /**
   * Plans delivery to a recipient domain: MX candidates (from DNS when `mxHosts` is not given) in preference order,
   * which are allowed, TLS options for each, and what to do when none is. Rejects with {@link MtaStsError}
   * (`MTASTS_INVALID_DOMAIN`, or a temporary `MTASTS_DNS_TEMPORARY` when the MX lookup fails).
   */
  plan(domain: string, mxHosts?: ReadonlyArray<string | MxRecord>, options?: PlanOptions): Promise<DeliveryPlan>;
  /**
   * Checks TLS with an MX host against RFC 8461 §4.2: a `TLSSocket` after STARTTLS, session info, or just the peer
   * certificate (its chain is then verified against the engine's trust roots). `null`: no STARTTLS.
   */
  verifyTls(mxHost: string, evidence: TLSSocket | TlsSessionInfo | CertificateEvidence | null | undefined): TlsVerification;
  /** TLS options for connecting to an MX host (strict: abort the handshake on any validation failure). */
  tlsOptions(mxHost: string, strict?: boolean): MxTlsOptions;
  /** Refetches every cached policy that is due (older than the refresh threshold), for schedulers. */
  refreshDue(): Promise<number>;
  /** Drops a domain's cached policy and backoff state (operator action; never done automatically on failure). */
  forget(domain: string): Promise<void>;
  readonly resolver: DnsResolver;
  readonly store: PolicyStore;
  /** Releases the default dispatcher's sockets and cancels the default resolver's outstanding DNS queries. */
  close(): Promise<void>;
}

interface FetchFailure {
  at: number;
  id: string;
  error: MtaStsError;
}

const DAY_MS = 86_400_000;
/** Age, as a fraction of max_age, after which `refreshDue()` refetches a cached policy. */
const DEFAULT_REFRESH_FRACTION = 0.5;

/** Creates the engine. */
export function createMtaSts(options: MtaStsOptions = {}): MtaSts {
  validateOptions(options);
  const now = options.now ?? Date.now;
  const logger = options.logger ?? silentLogger;
  const dnsTimeoutMs = options.dnsTimeoutMs ?? 10_000;
  // Single flight and short reuse of MX/A/AAAA answers per name; close() cancels the default resolver's queries.
  const resolver = shareAnswers(options.resolver ?? createDefaultResolver({ ...(options.dnsServers ? { dnsServers: options.dnsServers } : {}), deadlineMs: dnsTimeoutMs }), { answerTtlMs: options.dnsAnswerCacheMs ?? 5_000, cancelOnClose: options.resolver === undefined });
  const extraCa = options.ca === undefined ? undefined : Array.isArray(options.ca) ? [...(options.ca as ReadonlyArray<string | Buffer>)] : [options.ca as string | Buffer];
  // Computed once: every MX connection shares the same array (no allocation per connection).
  const trustRoots = buildTrustRoots(extraCa, options.systemRoots ?? true);
  const fetchTimeoutMs = options.fetchTimeoutMs ?? 60_000;
  const maxPolicyBytes = options.maxPolicyBytes ?? 65_536;
  const requireTextPlain = options.requireTextPlain ?? true;
  const store = options.store ?? new MemoryPolicyStore();
  const backoffMs = options.fetchBackoffMs ?? 300_000;
  const txtCheckIntervalMs = options.txtCheckIntervalMs ?? 0;
  const refreshAfterFraction = options.refreshAfterFraction ?? 0;
  const refreshIntervalMs = options.refreshIntervalMs ?? 3_600_000;
  const maxMxHosts = options.maxMxHosts ?? 16;
  // Created on the first fetch: building its TLS context (Node's ~140 roots plus `ca`) takes tens of milliseconds.
  let ownDispatcher: Dispatcher | undefined;
  const dispatcher = (): Dispatcher =>
    options.dispatcher ??
    (ownDispatcher ??= createPolicyAgent({
      ca: trustRoots,
      lookup: createResolverLookup(resolver, dnsTimeoutMs) as never,
      checkServerIdentity: strictCheckServerIdentity,
      connectTimeoutMs: Math.min(fetchTimeoutMs, 30_000),
    }));

  // Bounded: attacker-chosen domains cannot grow these without limit.
  const failures = new LRUCache<string, FetchFailure>({ max: 10_000 });
  // Only needed when TXT re-checks are spaced out (an evicted entry just means one more TXT query).
  const lastTxtCheck = txtCheckIntervalMs > 0 ? new LRUCache<string, number>({ max: 10_000 }) : undefined;
  const inflight = new Map<string, Promise<PolicyLookup>>();
  const refreshing = new Set<string>();

  async function readStore(domain: string): Promise<CachedPolicy | undefined> {
    try {
      const entry = await store.get(domain);
      if (entry === undefined || entry === null) return undefined;
      if (!isCachedPolicy(entry)) {
        // A shared store can hold anything (another version, a truncated write): never trust a malformed entry.
        logger.warn?.('mta-sts: policy store returned a malformed entry; ignoring it', { domain });
        return undefined;
      }
      return entry;
    } catch (error) {
      logger.warn?.('mta-sts: policy store get failed; continuing without cache', { domain, error: String(error) });
      return undefined;
    }
  }

  async function writeStore(domain: string, entry: CachedPolicy): Promise<void> {
    try {
      await store.set(domain, entry);
      startRefreshTimer();
    } catch (error) {
      logger.warn?.('mta-sts: policy store set failed', { domain, error: String(error) });
    }
  }

  function toPolicy(entry: CachedPolicy): MtaStsPolicy {
    const p = entry.policy;
    return { version: p.version, mode: p.mode, mx: p.mx, maxAge: p.maxAge, id: entry.id, text: entry.text, fetchedAt: entry.fetchedAt, expiresAt: entry.expiresAt };
  }

  function statusFor(error: MtaStsError): PolicyStatus {
    if (error.code === 'MTASTS_DNS_TEMPORARY') return 'temp-error';
    if (error.code === 'MTASTS_FETCH_BACKOFF') return statusFor((error.cause as MtaStsError | undefined) ?? error);
    return error.resultType === 'sts-policy-invalid' ? 'invalid' : 'fetch-error';
  }

  /** §3.3: a failed discovery keeps an unexpired cached policy; without one, the domain has no usable policy. */
  function fallback(domain: string, cached: CachedPolicy | undefined, error: MtaStsError | undefined, status: PolicyStatus, txtId?: string): PolicyLookup {
    const result: PolicyLookup = cached && now() < cached.expiresAt ? { domain, status: 'policy', policy: toPolicy(cached), source: 'stale-cache' } : { domain, status, source: 'fetched' };
    if (error) result.error = error;
    if (txtId !== undefined) result.txtId = txtId;
    if (result.source === 'stale-cache') logger.info?.('mta-sts: discovery failed, keeping cached policy', { domain, error: error?.code ?? 'no-record' });
    return result;
  }

  async function fetchAndStore(domain: string, record: StsTxtRecord, cached: CachedPolicy | undefined): Promise<PolicyLookup> {
    const failure = failures.get(domain);
    // §3.3 (B12): do not refetch more often than the backoff after a failure for the same id.
    if (failure && failure.id === record.id && now() - failure.at < backoffMs) {
      const error = new MtaStsError('MTASTS_FETCH_BACKOFF', `policy fetch for ${domain} failed ${Math.round((now() - failure.at) / 1000)} s ago; next attempt after ${Math.round(backoffMs / 1000)} s`, { domain, cause: failure.error, resultType: failure.error.resultType ?? 'sts-policy-fetch-error', details: { lastCode: failure.error.code } });
      return fallback(domain, cached, error, statusFor(failure.error), record.id);
    }
    try {
      const fetched = await fetchPolicy(domain, {
        dispatcher: dispatcher(),
        timeoutMs: fetchTimeoutMs,
        maxBytes: maxPolicyBytes,
        requireTextPlain,
        ...(options.policyPort !== undefined ? { port: options.policyPort } : {}),
      });
      failures.delete(domain);
      const fetchedAt = now();
      // §3.3: cache until max_age expires. §10.2: max_age 0 / mode none replace a cached policy (withdrawal).
      const entry: CachedPolicy = { domain, id: record.id, policy: fetched.policy, text: fetched.text, fetchedAt, expiresAt: fetchedAt + fetched.policy.maxAge * 1000 };
      await writeStore(domain, entry);
      logger.debug?.('mta-sts: policy fetched', { domain, id: record.id, mode: fetched.policy.mode, maxAge: fetched.policy.maxAge, ms: fetched.elapsedMs });
      return { domain, status: 'policy', policy: toPolicy(entry), source: 'fetched', txtId: record.id };
    } catch (error) {
      const err = isMtaStsError(error) ? error : new MtaStsError('MTASTS_FETCH_FAILED', String(error), { domain, cause: error });
      failures.set(domain, { at: now(), id: record.id, error: err });
      logger.warn?.('mta-sts: policy fetch failed', { domain, code: err.code, message: err.message });
      // §3.3 (C2): a failed refetch keeps the cached policy.
      return fallback(domain, cached, err, statusFor(err), record.id);
    }
  }

  async function discover(domain: string, refresh: boolean): Promise<PolicyLookup> {
    const cached = await readStore(domain);
    const fresh = cached !== undefined && now() < cached.expiresAt;
    if (fresh && !refresh && lastTxtCheck) {
      const checked = lastTxtCheck.get(domain);
      if (checked !== undefined && now() - checked < txtCheckIntervalMs) return { domain, status: 'policy', policy: toPolicy(cached), source: 'cache', txtId: cached.id };
    }
    // §3.1: the TXT record at _mta-sts.<domain> (CNAMEs are followed by the resolver). §4.1: never a parent domain.
    const name = `_mta-sts.${domain}`;
    const answer = await queryDns(() => resolver.resolveTxt(name), { name, type: 'TXT', domain }, dnsTimeoutMs);
    if (answer.kind === 'error') return fallback(domain, cached, answer.error, 'temp-error'); // §3.3: SERVFAIL is not "no policy"
    lastTxtCheck?.set(domain, now());
    if (answer.kind === 'not-found') return fallback(domain, cached, undefined, 'none'); // §3.3 (C3): keep a cached policy
    let record: StsTxtRecord | undefined;
    try {
      record = selectStsTxtRecord(answer.value);
    } catch (error) {
      const err = isMtaStsError(error) ? new MtaStsError(error.code, error.message, { domain, cause: error.cause }) : new MtaStsError('MTASTS_TXT_INVALID', String(error), { domain });
      return fallback(domain, cached, err, 'invalid'); // §3.1: not exactly one valid record: no usable record
    }
    if (record === undefined) return fallback(domain, cached, undefined, 'none');
    // §3.3 (C2): same id and still fresh: the cached policy is current.
    if (fresh && cached.id === record.id && !refresh) {
      maybeRefreshInBackground(domain, cached);
      return { domain, status: 'policy', policy: toPolicy(cached), source: 'cache', txtId: record.id };
    }
    return fetchAndStore(domain, record, cached);
  }

  /** §5.1 / §10.2 (C5): refetch policies of domains mailed often before they expire, off the delivery path. */
  function maybeRefreshInBackground(domain: string, cached: CachedPolicy): void {
    if (refreshAfterFraction <= 0 || refreshing.has(domain)) return;
    const age = now() - cached.fetchedAt;
    const threshold = Math.min(cached.policy.maxAge * 1000 * refreshAfterFraction, DAY_MS);
    if (age < threshold) return;
    refreshing.add(domain);
    void lookup(domain, true).finally(() => refreshing.delete(domain));
  }

  /**
   * The answer without I/O, when there is one: a fresh policy in the in-memory store whose TXT record was checked
   * less than `txtCheckIntervalMs` ago (the same answer `discover` gives, without its promises). Other stores may be
   * asynchronous and are left to `discover`.
   */
  const memoryStore = store.constructor === MemoryPolicyStore ? (store as MemoryPolicyStore) : undefined; // synchronous
  function checkedRecently(domain: string): PolicyLookup | undefined {
    const checked = lastTxtCheck?.get(domain);
    if (checked === undefined || !memoryStore || now() - checked >= txtCheckIntervalMs) return undefined;
    const entry = memoryStore.get(domain);
    if (entry === undefined || !isCachedPolicy(entry) || now() >= entry.expiresAt) return undefined;
    return { domain, status: 'policy', policy: toPolicy(entry), source: 'cache', txtId: entry.id };
  }

  function lookup(domain: string, refresh: boolean): Promise<PolicyLookup> {
    const key = refresh ? `${domain}\0refresh` : domain;
    let pending = inflight.get(key);
    if (!pending) {
      // C7: one discovery per domain at a time, shared by every concurrent caller.
      pending = discover(domain, refresh)
        .catch((error: unknown) => fallback(domain, undefined, isMtaStsError(error) ? error : new MtaStsError('MTASTS_FETCH_FAILED', `unexpected failure: ${String(error)}`, { domain, cause: error }), 'fetch-error'))
        .finally(() => inflight.delete(key));
      inflight.set(key, pending);
    }
    return pending;
  }

  async function getPolicy(domainInput: string, opts: GetPolicyOptions = {}): Promise<PolicyLookup> {
    let domain: string;
    try {
      domain = normalizeDomain(domainInput);
    } catch (error) {
      return { domain: typeof domainInput === 'string' ? domainInput : '', status: 'invalid', source: 'fetched', error: error as MtaStsError };
    }
    const hit = opts.refresh === true ? undefined : checkedRecently(domain);
    if (hit) return hit; // perf (bench/README.md): a cached lookup without I/O skips the discovery machinery
    const pending = lookup(domain, opts.refresh === true);
    const signal = opts.signal;
    if (!signal) return pending;
    if (signal.aborted) return { domain, status: 'temp-error', source: 'fetched', error: new MtaStsError('MTASTS_ABORTED', 'policy lookup aborted', { domain, cause: signal.reason }) };
    // The shared discovery keeps running for other callers; only this caller stops waiting.
    return new Promise<PolicyLookup>((resolve) => {
      const onAbort = () => resolve({ domain, status: 'temp-error', source: 'fetched', error: new MtaStsError('MTASTS_ABORTED', 'policy lookup aborted', { domain, cause: signal.reason }) });
      signal.addEventListener('abort', onAbort, { once: true });
      void pending.then((result) => {
        signal.removeEventListener('abort', onAbort);
        resolve(result);
      });
    });
  }

  async function plan(domainInput: string, mxHosts?: ReadonlyArray<string | MxRecord>, opts: PlanOptions = {}): Promise<DeliveryPlan> {
    const domain = normalizeDomain(domainInput);
    const given = mxHosts?.map((mx, index) => (typeof mx === 'string' ? { exchange: mx, priority: index } : mx));
    // Policy and MX lookups run concurrently.
    const [policyLookup, mx] = await Promise.all([
      getPolicy(domain, opts.signal ? { signal: opts.signal } : {}),
      given ? Promise.resolve(classifyMxRecords(given)) : lookupMx(resolver, domain, dnsTimeoutMs, opts.signal),
    ]);
    if (mx.kind === 'error') throw mx.error;
    const candidates = mx.kind === 'ok' || mx.kind === 'implicit' ? orderMxHosts(mx.records, maxMxHosts) : [];
    return buildPlan({ domain, lookup: policyLookup, mx: candidates, nullMx: mx.kind === 'null-mx', domainNotFound: mx.kind === 'nxdomain', implicitMx: mx.kind === 'implicit', ca: trustRoots, requireTlsEverywhere: options.requireTlsEverywhere === true });
  }

  async function refreshDue(): Promise<number> {
    if (!store.domains) return 0;
    let domains: Iterable<string>;
    try {
      domains = await store.domains();
    } catch (error) {
      logger.warn?.('mta-sts: policy store listing failed', { error: String(error) });
      return 0;
    }
    let refreshed = 0;
    for (const domain of domains) {
      const cached = await readStore(domain);
      if (!cached || now() >= cached.expiresAt) continue;
      const threshold = Math.min(cached.policy.maxAge * 1000 * (refreshAfterFraction || DEFAULT_REFRESH_FRACTION), DAY_MS);
      if (now() - cached.fetchedAt < threshold) continue;
      const result = await lookup(domain, true);
      if (result.source === 'fetched' && result.status === 'policy') refreshed++;
    }
    return refreshed;
  }

  // §5.1 / §10.2 (C5): the proactive refresh timer, started with the first cached policy; never keeps Node alive.
  let refreshTimer: NodeJS.Timeout | undefined;
  let refreshRunning = false;
  let closed = false;
  function startRefreshTimer(): void {
    if (refreshTimer || closed || refreshIntervalMs <= 0) return;
    refreshTimer = setInterval(() => {
      if (refreshRunning) return;
      refreshRunning = true;
      refreshDue()
        .catch((error: unknown) => logger.warn?.('mta-sts: proactive refresh failed', { error: String(error) }))
        .finally(() => (refreshRunning = false));
    }, refreshIntervalMs);
    refreshTimer.unref();
  }

  let trustStore: TrustStore | undefined; // parsed on first use of certificate-only verification
  return {
    getPolicy,
    plan,
    verifyTls: (mxHost, evidence) => {
      const host = normalizeDomainOrUndefined(mxHost);
      if (host === undefined) return { ok: false, resultType: 'validation-failure', reason: `not a valid MX host name: ${JSON.stringify(String(mxHost).slice(0, 80))}` };
      return verifyTls(host, evidence, (trustStore ??= new TrustStore(trustRoots ?? tls.rootCertificates)));
    },
    tlsOptions: (mxHost: string, strict = true) => mxTlsOptions(normalizeDomain(mxHost), trustRoots, strict),
    refreshDue,
    async forget(domainInput: string) {
      const domain = normalizeDomain(domainInput);
      failures.delete(domain);
      lastTxtCheck?.delete(domain);
      await store.delete(domain);
    },
    resolver,
    store,
    async close() {
      closed = true;
      if (refreshTimer) clearInterval(refreshTimer);
      refreshTimer = undefined;
      resolver.close();
      if (ownDispatcher) await ownDispatcher.close();
    },
  };
}

/** Numeric options and their bounds; a bad value is a configuration error, reported before anything runs. */
const NUMERIC_OPTIONS: ReadonlyArray<[keyof MtaStsOptions, number, number]> = [
  ['dnsTimeoutMs', 1, 600_000],
  ['dnsAnswerCacheMs', 0, 300_000],
  ['fetchTimeoutMs', 1, 600_000],
  ['maxPolicyBytes', 1, 16 * 1024 * 1024],
  ['fetchBackoffMs', 0, 7 * 86_400_000],
  ['txtCheckIntervalMs', 0, 86_400_000],
  ['refreshAfterFraction', 0, 1],
  ['refreshIntervalMs', 0, 7 * 86_400_000],
  ['maxMxHosts', 1, 1000],
  ['policyPort', 1, 65_535],
];

function validateOptions(options: MtaStsOptions): void {
  if (typeof options !== 'object' || options === null) throw new MtaStsError('MTASTS_INVALID_OPTIONS', 'createMtaSts() options must be an object');
  for (const [name, min, max] of NUMERIC_OPTIONS) {
    const value = options[name];
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
      throw new MtaStsError('MTASTS_INVALID_OPTIONS', `option ${name} must be a number from ${min} to ${max}, got ${JSON.stringify(value)}`, { details: { option: name } });
    }
  }
  if (options.resolver !== undefined && (typeof options.resolver !== 'object' || options.resolver === null || typeof options.resolver.resolveTxt !== 'function' || typeof options.resolver.resolveMx !== 'function')) {
    throw new MtaStsError('MTASTS_INVALID_OPTIONS', 'option resolver must have resolveTxt, resolveMx, resolve4 and resolve6 methods', { details: { option: 'resolver' } });
  }
}

/** Shape check of a stored entry (stores may be shared, external and older or newer than this library). */
function isCachedPolicy(value: unknown): value is CachedPolicy {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Partial<CachedPolicy>;
  const p = v.policy;
  return (
    typeof v.id === 'string' &&
    typeof v.text === 'string' &&
    typeof v.fetchedAt === 'number' &&
    typeof v.expiresAt === 'number' &&
    typeof p === 'object' &&
    p !== null &&
    (p.mode === 'enforce' || p.mode === 'testing' || p.mode === 'none') &&
    Array.isArray(p.mx) &&
    p.mx.every((m) => typeof m === 'string') &&
    typeof p.maxAge === 'number'
  );
}
