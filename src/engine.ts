/**
 * The MTA-STS sender engine (RFC 8461 §3–§5).
 *
 * `createMtaSts()` answers, for a recipient domain, "is there a policy, which MX hosts may I use, and with which
 * TLS requirements?". It wires four units, each in its own module:
 * - the two-tier policy cache (`cache/tiered.ts`): a bounded local copy always in front of an optional shared or
 *   persistent store, so a known policy survives a store outage, a restart (with a persistent store) and a fleet;
 * - discovery (`engine/discovery.ts`): TXT first, fetch only for a new id, single flight, the fetch backoff, fleet
 *   leases; an unexpired cached policy applies whenever discovery does not complete (§3.3, §10.2);
 * - the refresher (`engine/refresher.ts`): refresh in use, off the delivery path, let go of what is unused (§5.1);
 * - the planner (`engine/planner.ts` + `plan/plan.ts`): which MX hosts, with which TLS requirements (§4, §5).
 *
 * Every seam is injected: resolver, dispatcher, store, clock and logger.
 */
import type { Dispatcher } from 'undici';
import type { TLSSocket } from 'node:tls';
import { MemoryPolicyStore, DEFAULT_MEMORY_STORE_MAX, DEFAULT_MEMORY_STORE_MAX_BYTES, type PolicyStore } from './cache/store.js';
import { TieredPolicyCache } from './cache/tiered.js';
import { createResolverLookup } from './discovery/lookup.js';
import { createPolicyAgent, fetchPolicy, type FetchedPolicy } from './discovery/fetch-policy.js';
import { createDefaultResolver, type DnsResolver, type MxRecord } from './discovery/resolver.js';
import { shareAnswers } from './discovery/shared-answers.js';
import { normalizeDomain, normalizeDomainOrUndefined } from './domain.js';
import { MtaStsError } from './errors.js';
import { silentLogger, type Logger } from './logger.js';
import type { DeliveryPlan } from './plan/plan.js';
import { validateEngineOptions } from './option-specs.js';
import { buildTrustRoots, mxTlsOptions, type MxTlsOptions } from './tls/connect-options.js';
import { strictCheckServerIdentity } from './tls/host-identity.js';
import { verifyTls, type TlsSessionInfo, type TlsVerification } from './tls/verify.js';
import type { PolicyLookup } from './types.js';
import { Discovery } from './engine/discovery.js';
import { EngineEvents, type MtaStsEventName, type MtaStsListener } from './engine/events.js';
import { planDelivery } from './engine/planner.js';
import { Refresher } from './engine/refresher.js';
import { safeLogger } from './engine/safe-logger.js';
import { createGetPolicy, isDue, refreshOne, type GetPolicyOptions } from './engine/lookups.js';

/** Options of {@link createMtaSts}. Every option has a default; none is required. */
export interface MtaStsOptions {
  /** DNS resolver for TXT, MX, A and AAAA. Default: a `node:dns` Resolver (using `dnsServers` when given). */
  resolver?: DnsResolver;
  /** Shortcut: DNS servers (`ip` or `ip:port`) for the default resolver. Default: the system's. */
  dnsServers?: readonly string[];
  /** Deadline for one DNS query, in ms (the default resolver's own retries end by it too). Default 10000. */
  dnsTimeoutMs?: number;
  /**
   * Reuse positive MX, A and AAAA answers for at most this long, in ms, and never beyond their TTL (RFC 1035 §3.2.1,
   * RFC 2181 §8: a TTL 0 answer is never reused); concurrent queries for a name always share one query in flight.
   * A/AAAA answers without a TTL (from a `resolver` that reports none) are not reused. `node:dns` reports no MX TTL:
   * an MX answer is then reused for at most this long, and asked for again at once when it disagrees with the
   * policy in force (the policy id changed since, or no MX host matches the policy). Default 5000; 0: no reuse.
   */
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
  /**
   * The second cache tier: a persistent or shared store (SQLite, Redis) implementing {@link PolicyStore}. The engine
   * always keeps its own bounded in-memory copy in front of it. A {@link MemoryPolicyStore} given here becomes that
   * local copy itself (no second tier). Default: none (local memory only).
   */
  store?: PolicyStore;
  /** Deadline of every call to `store`, in ms; a call past it counts as a store failure (`store-error`). Default 1000. */
  storeTimeoutMs?: number;
  /** Most policies in the local in-memory tier. Default 100000. */
  cacheMaxEntries?: number;
  /** Most bytes (estimated) in the local in-memory tier. Default 67108864 (64 MiB). */
  cacheMaxBytes?: number;
  /**
   * Fleet: when another member holds the `fetch:<domain>` lease for a cold domain, wait at most this long for its
   * result in `store` before fetching ourselves (a dead holder never blocks delivery longer), in ms. Default 2000.
   */
  fleetWaitMs?: number;
  /** Clock, epoch ms. Default `Date.now`. */
  now?: () => number;
  /** After a failed fetch, no new fetch for the same domain and TXT id for this long, in ms. Default 300000 (RFC 8461 §3.3). */
  fetchBackoffMs?: number;
  /** Re-check the TXT record of a domain with a fresh cached policy at most this often, in ms. Default 0: on every lookup. */
  txtCheckIntervalMs?: number;
  /**
   * How often the refresher walks the cached policies (RFC 8461 §5.1 / §10.2: refresh before expiry, off the
   * delivery path), in ms. Each pass spreads its work over the interval with jitter: the TXT id is re-checked and the
   * policy refetched only when the id changed or the policy nears expiry (half its max_age gone, or less than 1.5
   * intervals left). The timer starts with the first cached policy and never keeps the process alive.
   * Default 3600000 (hourly); 0 disables.
   */
  refreshIntervalMs?: number;
  /** Most domains refreshed at the same time. Default 4. */
  refreshConcurrency?: number;
  /** Drop a cached policy not used for delivery for this long, in ms (refresh does not count as use). Default 2592000000 (30 days). */
  purgeUnusedAfterMs?: number;
  /**
   * Also refetch, in the background, a cached policy that a lookup returns once it is older than this fraction of its
   * max_age (at most one day). Default 0 (off: the refresher does it), so lookups never cause a fetch while the
   * cached policy is current.
   */
  refreshAfterFraction?: number;
  /** Most MX hosts considered per domain. Default 16. */
  maxMxHosts?: number;
  /** Require STARTTLS for domains without a policy too. Default false (opportunistic TLS, RFC 3207). */
  requireTlsEverywhere?: boolean;
  /** Where the engine logs (warnings, debug). Default: nowhere. */
  logger?: Logger;

  // ---- FOR TESTS ONLY ----
  /**
   * FOR TESTS ONLY: the HTTPS port of policy hosts (RFC 8461 §3.3 fixes 443), for a loopback test world. Default 443.
   * Named like the CLI's `--https-port` and the reporter's `httpsPort`.
   */
  httpsPort?: number;
}

export type { GetPolicyOptions } from './engine/lookups.js';
export type { DiscoveryTraceStep, DiscoveryTracer, TxtTraceStep, FetchTraceStep, CacheTraceStep } from './engine/trace.js';

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
   * (`MTASTS_INVALID_DOMAIN`, or a temporary `MTASTS_DNS_TEMPORARY` / `MTASTS_ABORTED` when the MX lookup fails).
   */
  plan(domain: string, mxHosts?: ReadonlyArray<string | MxRecord>, options?: PlanOptions): Promise<DeliveryPlan>;
  /**
   * Checks a TLS session with an MX host against RFC 8461 §4.2: the `TLSSocket` after STARTTLS (made with
   * `tlsOptions()`), or its {@link TlsSessionInfo}; `null`: no STARTTLS. The chain verdict is the handshake's
   * (OpenSSL's); a bare certificate is not accepted (it is refused with `validation-failure`).
   */
  verifyTls(mxHost: string, session: TLSSocket | TlsSessionInfo | null | undefined): TlsVerification;
  /** TLS options for connecting to an MX host (strict: abort the handshake on any validation failure). */
  tlsOptions(mxHost: string, strict?: boolean): MxTlsOptions;
  /** Runs one refresh pass now, without spreading it out (for schedulers); resolves with the number of policies fetched. */
  refreshDue(): Promise<number>;
  /** Drops a domain's cached policy (both tiers) and backoff state (operator action; never done automatically on failure). */
  forget(domain: string): Promise<void>;
  /** Subscribes to an engine event (see {@link MtaStsEvents}: `store-error`); returns the function that unsubscribes. */
  on<E extends MtaStsEventName>(event: E, listener: MtaStsListener<E>): () => void;
  /**
   * The engine's resolver: concurrent queries for a name share one query in flight, and positive MX/A/AAAA answers
   * are reused for at most `dnsAnswerCacheMs`, never beyond their TTL (RFC 1035 §3.2.1).
   */
  readonly resolver: DnsResolver;
  /** The configured `store` (the second tier), or the local in-memory tier when no second tier is configured. */
  readonly store: PolicyStore;
  /** Stops the refresher, releases the default dispatcher's sockets and cancels the default resolver's outstanding DNS queries. */
  close(): Promise<void>;
}

const DAY_MS = 86_400_000;

/** Creates the engine. */
export function createMtaSts(options: MtaStsOptions = {}): MtaSts {
  validateOptions(options);
  const s = settingsOf(options);
  const events = new EngineEvents(s.logger);
  const cache = createCache(options, s, (event) => events.emit('store-error', event));
  const fetcher = createFetcher(options, s);
  const refresher: Refresher = new Refresher({
    intervalMs: s.refreshIntervalMs,
    concurrency: Math.max(1, Math.floor(s.refreshConcurrency)),
    purgeUnusedAfterMs: s.purgeUnusedAfterMs,
    now: s.now,
    logger: s.logger,
    candidates: () => cache.local.usage(),
    purge: (domain) => {
      cache.local.delete(domain);
      discovery.forget(domain);
    },
    refreshOne: (domain) => refreshOne(cache, discovery, s, domain),
  });
  const discovery: Discovery = new Discovery({
    cache,
    resolver: s.resolver,
    fetch: fetcher.fetch,
    now: s.now,
    logger: s.logger,
    dnsTimeoutMs: s.dnsTimeoutMs,
    backoffMs: s.backoffMs,
    txtCheckIntervalMs: s.txtCheckIntervalMs,
    fetchLeaseMs: s.fetchTimeoutMs + 5_000,
    fleetWaitMs: s.fleetWaitMs,
    isDue: (entry) => isDue(entry, s.now(), s.refreshIntervalMs),
    onCached: () => refresher.start(),
  });
  const lookup = createGetPolicy(discovery, s);
  // After close() nothing is fetched any more (the dispatcher is gone): a lookup would fail and plan mode `none` for
  // every domain not cached, silently. So a closed engine answers from its cache only, and plan() rejects (a
  // temporary MTASTS_ABORTED: defer), loudly, rather than deliver unprotected (RFC 8461 §5.1).
  let closed = false;
  const closedError = (domain: string) =>
    new MtaStsError('MTASTS_ABORTED', `the MTA-STS engine was closed; ${domain} cannot be looked up (close the engine only after every transport, guard and hooks using it)`, { domain, details: { reason: 'closed' } });
  const getPolicy: MtaSts['getPolicy'] = (domain, opts = {}) => (closed ? lookup(domain, { ...opts, signal: AbortSignal.abort(closedError(String(domain))) }) : lookup(domain, opts));
  return {
    getPolicy,
    plan: (domain, mxHosts, opts = {}) => (closed ? Promise.reject(closedError(String(domain))) : planDelivery({ ...s, getPolicy }, domain, mxHosts, opts.signal)),
    verifyTls: (mxHost, session) => {
      const host = normalizeDomainOrUndefined(mxHost);
      if (host === undefined) return { ok: false, resultType: 'validation-failure', reason: `not a valid MX host name: ${JSON.stringify(String(mxHost).slice(0, 80))}` };
      return verifyTls(host, session);
    },
    tlsOptions: (mxHost: string, strict = true) => mxTlsOptions(normalizeDomain(mxHost), s.trustRoots, strict),
    refreshDue: () => refresher.run(0),
    async forget(domainInput: string) {
      const domain = normalizeDomain(domainInput);
      discovery.forget(domain);
      await cache.delete(domain);
    },
    on: (event, listener) => events.on(event, listener),
    resolver: s.resolver,
    store: cache.shared ?? cache.local,
    async close() {
      closed = true;
      refresher.close();
      s.resolver.close();
      await fetcher.close();
    },
  };
}

type Settings = ReturnType<typeof settingsOf>;

/** Every option with its default applied. */
function settingsOf(options: MtaStsOptions) {
  const dnsTimeoutMs = options.dnsTimeoutMs ?? 10_000;
  // Single flight and short reuse (never beyond the TTL) of MX/A/AAAA answers per name; close() cancels the default
  // resolver's queries.
  const ownResolver = options.resolver === undefined;
  const resolver = shareAnswers(options.resolver ?? createDefaultResolver({ ...(options.dnsServers ? { dnsServers: options.dnsServers } : {}), deadlineMs: dnsTimeoutMs }), { answerTtlMs: options.dnsAnswerCacheMs ?? 5_000, cancelOnClose: ownResolver });
  const extraCa = options.ca === undefined ? undefined : Array.isArray(options.ca) ? [...(options.ca as ReadonlyArray<string | Buffer>)] : [options.ca as string | Buffer];
  return {
    now: options.now ?? Date.now,
    logger: safeLogger(options.logger ?? silentLogger),
    resolver,
    dnsTimeoutMs,
    // Computed once: every MX connection shares the same array (no allocation per connection).
    trustRoots: buildTrustRoots(extraCa, options.systemRoots ?? true),
    fetchTimeoutMs: options.fetchTimeoutMs ?? 60_000,
    maxPolicyBytes: options.maxPolicyBytes ?? 65_536,
    requireTextPlain: options.requireTextPlain ?? true,
    storeTimeoutMs: options.storeTimeoutMs ?? 1_000,
    fleetWaitMs: options.fleetWaitMs ?? 2_000,
    backoffMs: options.fetchBackoffMs ?? 300_000,
    txtCheckIntervalMs: options.txtCheckIntervalMs ?? 0,
    refreshAfterFraction: options.refreshAfterFraction ?? 0,
    refreshIntervalMs: options.refreshIntervalMs ?? 3_600_000,
    refreshConcurrency: options.refreshConcurrency ?? 4,
    purgeUnusedAfterMs: options.purgeUnusedAfterMs ?? 30 * DAY_MS,
    maxMxHosts: options.maxMxHosts ?? 16,
    requireTlsEverywhere: options.requireTlsEverywhere === true,
  };
}

/** The two tiers: the local bounded copy always, the configured store behind it when there is one. */
function createCache(options: MtaStsOptions, s: Settings, onStoreError: ConstructorParameters<typeof TieredPolicyCache>[0]['onStoreError']): TieredPolicyCache {
  const given = options.store;
  if (given !== undefined && (typeof given !== 'object' || given === null || typeof given.get !== 'function' || typeof given.set !== 'function' || typeof given.delete !== 'function')) {
    throw new MtaStsError('MTASTS_INVALID_OPTIONS', 'option store must have get, set and delete methods (see PolicyStore)', { details: { option: 'store' } });
  }
  const localGiven = given instanceof MemoryPolicyStore;
  if (localGiven && (options.cacheMaxEntries !== undefined || options.cacheMaxBytes !== undefined)) {
    throw new MtaStsError('MTASTS_INVALID_OPTIONS', 'options cacheMaxEntries / cacheMaxBytes size the local tier the engine creates; with a MemoryPolicyStore as store, size that store instead', { details: { option: 'cacheMaxEntries' } });
  }
  const local = localGiven ? given : new MemoryPolicyStore({ max: Math.floor(options.cacheMaxEntries ?? DEFAULT_MEMORY_STORE_MAX), maxSizeBytes: Math.floor(options.cacheMaxBytes ?? DEFAULT_MEMORY_STORE_MAX_BYTES) });
  return new TieredPolicyCache({ local, shared: localGiven ? undefined : given, storeTimeoutMs: s.storeTimeoutMs, maxPolicyBytes: s.maxPolicyBytes, now: s.now, logger: s.logger, onStoreError });
}

/** The policy fetch (RFC 8461 §3.3) with the engine's dispatcher, created on first use. */
function createFetcher(options: MtaStsOptions, s: Settings): { fetch: (domain: string) => Promise<FetchedPolicy>; close: () => Promise<void> } {
  // Created on the first fetch: building its TLS context (Node's ~140 roots plus `ca`) takes tens of milliseconds.
  let own: Dispatcher | undefined;
  const dispatcher = (): Dispatcher =>
    options.dispatcher ??
    (own ??= createPolicyAgent({
      ca: s.trustRoots,
      lookup: createResolverLookup(s.resolver, s.dnsTimeoutMs) as never,
      checkServerIdentity: strictCheckServerIdentity,
      connectTimeoutMs: Math.min(s.fetchTimeoutMs, 30_000),
    }));
  return {
    fetch: (domain) =>
      fetchPolicy(domain, {
        dispatcher: dispatcher(),
        timeoutMs: s.fetchTimeoutMs,
        maxBytes: s.maxPolicyBytes,
        requireTextPlain: s.requireTextPlain,
        ...(options.httpsPort !== undefined ? { port: options.httpsPort } : {}),
      }),
    close: async () => {
      if (own) await own.close();
    },
  };
}

/**
 * Every option is checked before anything runs (types, ranges, unknown keys with a "did you mean"): a bad `ca`,
 * resolver or dispatcher would otherwise make every fetch fail and leave `enforce` domains unprotected.
 */
function validateOptions(options: MtaStsOptions): void {
  validateEngineOptions(options);
}
