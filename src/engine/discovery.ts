/**
 * Policy discovery with the cache (RFC 8461 §3.1–§3.3, §5.1, §10.2).
 *
 * One discovery per domain and mode at a time (single flight). The `_mta-sts` TXT record is checked first; the
 * policy is fetched only when no unexpired policy is cached for the id it names, after asking tier 2 (a fleet member
 * may have fetched it already) and the fleet's `fetch:<domain>` lease (a member holding it is waited for, briefly,
 * never indefinitely). Whenever discovery does not complete successfully — a DNS or HTTPS error, a timeout, a
 * backoff, an exception of ours — an unexpired cached policy applies (§3.3, §10.2: an attacker who blocks
 * discovery cannot switch a known policy off).
 */
import { queryDns, type DnsAnswer, type DnsResolver } from '../discovery/resolver.js';
import type { FetchedPolicy } from '../discovery/fetch-policy.js';
import { MtaStsError } from '../errors.js';
import type { Logger } from '../logger.js';
import { selectStsTxtRecord, type StsTxtRecord } from '../policy/txt-record.js';
import { isUnexpired, toPolicy } from '../cache/entry.js';
import type { PolicyStoreEntry } from '../cache/store.js';
import type { TieredPolicyCache } from '../cache/tiered.js';
import type { PolicyLookup, PolicyStatus } from '../types.js';
import { FetchBackoff } from './backoff.js';
import { emitTrace, type DiscoveryTraceStep, type DiscoveryTracer } from './trace.js';

/**
 * How a discovery runs. `used`: a delivery-path use (renews recency and last use). `fetch`: when to fetch the
 * policy although an unexpired one is cached for the TXT id: never (`changed`), when it nears expiry (`due`), or
 * always (`always`).
 */
export interface DiscoveryMode {
  used: boolean;
  fetch: 'changed' | 'due' | 'always';
}

export interface DiscoveryOptions {
  cache: TieredPolicyCache;
  resolver: DnsResolver;
  fetch: (domain: string) => Promise<FetchedPolicy>;
  now: () => number;
  logger: Logger;
  dnsTimeoutMs: number;
  backoffMs: number;
  txtCheckIntervalMs: number;
  /** Lease time of `fetch:<domain>`, in ms (longer than one fetch). */
  fetchLeaseMs: number;
  /** How long to wait for a fleet member holding `fetch:<domain>`, in ms. */
  fleetWaitMs: number;
  /** `due` mode: is this cached policy due for a refetch? */
  isDue: (entry: PolicyStoreEntry) => boolean;
  /** Called after a policy entered tier 1 (starts the refresh timer). */
  onCached: () => void;
}

type TxtOutcome = { kind: 'record'; record: StsTxtRecord } | { kind: 'failed'; status: PolicyStatus; error?: MtaStsError };

/** The observers of one discovery in flight; absent (nothing built, nothing allocated) when nobody traces it. */
type Tracers = DiscoveryTracer[] | undefined;

const FLEET_POLL_MS = 100;

export class Discovery {
  readonly #o: DiscoveryOptions;
  readonly #backoff: FetchBackoff;
  readonly #inflight = new Map<string, Promise<PolicyLookup>>();
  /** Observers by discovery key, only while a traced discovery is in flight. */
  readonly #tracers = new Map<string, DiscoveryTracer[]>();

  constructor(options: DiscoveryOptions) {
    this.#o = options;
    this.#backoff = new FetchBackoff(options.cache, options.backoffMs, options.now);
  }

  /**
   * Discovers the policy of a normalised domain. Never rejects: failures are in the result. `trace` observes the
   * steps (a caller joining a discovery in flight sees the steps from then on).
   */
  lookup(domain: string, mode: DiscoveryMode, trace?: DiscoveryTracer): Promise<PolicyLookup> {
    const key = `${domain}\0${mode.fetch}\0${mode.used}`;
    if (trace) {
      const list = this.#tracers.get(key);
      if (list) list.push(trace);
      else this.#tracers.set(key, [trace]);
    }
    let pending = this.#inflight.get(key);
    if (!pending) {
      // One discovery per domain and mode at a time, shared by every concurrent caller.
      pending = this.#discover(domain, mode, key)
        .catch((error: unknown) => this.#afterCrash(domain, error, mode.used))
        .finally(() => {
          this.#inflight.delete(key);
          this.#tracers.delete(key);
        });
      this.#inflight.set(key, pending);
    }
    return pending;
  }

  /**
   * The answer when discovery cannot complete (caller's abort, an exception of ours): the unexpired cached policy
   * when there is one (§3.3), else `status` with `error`.
   */
  async fallback(domain: string, error: MtaStsError | undefined, status: PolicyStatus, used: boolean, txtId?: string, key?: string, decision: 'fallback' | 'backoff' = 'fallback'): Promise<PolicyLookup> {
    const known = await this.#o.cache.known(domain, used);
    const tracers = key === undefined ? undefined : this.#tracers.get(key);
    if (tracers) emitTrace(tracers, { step: 'cache', decision, source: known ? 'stale-cache' : 'fetched', ...(txtId !== undefined ? { id: txtId } : {}), ...(known ? { expiresAt: known.expiresAt } : {}) });
    const result: PolicyLookup = {
      domain,
      ...(known ? { status: 'policy', policy: toPolicy(known), source: 'stale-cache' } : { status, source: 'fetched' }),
      ...(error ? { error } : {}),
      ...(txtId !== undefined ? { txtId } : {}),
    };
    if (known) this.#o.logger.info?.('mta-sts: discovery did not complete, keeping the cached policy (RFC 8461 §3.3)', { domain, error: error?.code ?? 'no-record' });
    return Object.freeze(result);
  }

  /**
   * The answer without I/O, when there is one: a policy unexpired in the local tier whose TXT record was checked
   * less than `txtCheckIntervalMs` ago, and no delivery-path discovery in flight for the domain. It is the answer
   * `lookup(domain, { used: true, fetch: 'changed' }, trace)` gives (the same frozen result, source `cache`, the use
   * recorded for the refresher, a `cache` step for `trace`), built synchronously, without the promises of a
   * discovery (perf: bench/README.md, cached lookups). Undefined: call `lookup`.
   */
  answerFromCache(domain: string, trace?: DiscoveryTracer): PolicyLookup | undefined {
    if (!this.#txtCheckedRecently(domain)) return undefined;
    // A discovery in flight (e.g. fetching a new id) is joined by `lookup`, as before.
    if (this.#inflight.size > 0 && this.#inflight.has(`${domain}\0changed\0true`)) return undefined;
    const { cache, now } = this.#o;
    const local = cache.peek(domain);
    if (!isUnexpired(local, now())) return undefined;
    cache.touch(domain);
    return cached(local, 'cache', local.id, trace ? [trace] : undefined);
  }

  forget(domain: string): void {
    this.#backoff.clear(domain);
    this.#lastTxtCheck.delete(domain);
  }

  readonly #lastTxtCheck = new Map<string, number>();

  async #discover(domain: string, mode: DiscoveryMode, key: string): Promise<PolicyLookup> {
    const { cache, now } = this.#o;
    if (mode.used) cache.touch(domain);
    const local = cache.peek(domain);
    const fresh = isUnexpired(local, now());
    if (fresh && mode.fetch === 'changed' && this.#txtCheckedRecently(domain)) return cached(local, 'cache', local.id, this.#tracers.get(key));
    const txt = await this.#queryTxt(domain, key);
    if (txt.kind === 'failed') return this.fallback(domain, txt.error, txt.status, mode.used, undefined, key);
    const { record } = txt;
    // §3.3: same id and still unexpired: the cached policy is current (unless a refetch is due or forced).
    if (fresh && local.id === record.id && (mode.fetch === 'changed' || (mode.fetch === 'due' && !this.#o.isDue(local)))) return cached(local, 'cache', record.id, this.#tracers.get(key));
    if (mode.fetch !== 'always') {
      // Tier 2 first: a fleet member (or this host before a restart) may hold the policy for this id already.
      const shared = await cache.readShared(domain);
      if (isUnexpired(shared, now()) && shared.id === record.id && !(mode.fetch === 'due' && this.#o.isDue(shared)) && !(fresh && local.id === record.id && shared.fetchedAt <= local.fetchedAt)) {
        cache.adopt(domain, shared, mode.used);
        this.#o.onCached();
        return cached(shared, 'cache', record.id, this.#tracers.get(key), 'shared');
      }
    }
    return this.#fetchAndStore(domain, record, mode.used, key);
  }

  #txtCheckedRecently(domain: string): boolean {
    if (this.#o.txtCheckIntervalMs <= 0) return false;
    const at = this.#lastTxtCheck.get(domain);
    return at !== undefined && this.#o.now() - at < this.#o.txtCheckIntervalMs;
  }

  /** §3.1: the TXT record at `_mta-sts.<domain>` (CNAMEs followed by the resolver). §4.1: never a parent domain. */
  async #queryTxt(domain: string, key: string): Promise<TxtOutcome> {
    const name = `_mta-sts.${domain}`;
    const started = this.#tracers.has(key) ? performance.now() : 0;
    const answer = await queryDns(() => this.#o.resolver.resolveTxt(name), { name, type: 'TXT', domain }, this.#o.dnsTimeoutMs);
    const result = this.#judgeTxt(domain, answer);
    const tracers: Tracers = this.#tracers.get(key);
    if (tracers) {
      emitTrace(tracers, {
        step: 'txt',
        name,
        records: answer.kind === 'ok' ? answer.value.map((r) => r.join('')) : [],
        outcome: result.kind === 'record' ? 'record' : answer.kind === 'error' ? 'dns-error' : result.status === 'invalid' ? 'invalid' : 'none',
        ...(result.kind === 'record' ? { id: result.record.id } : result.error ? { error: result.error } : {}),
        elapsedMs: started === 0 ? 0 : Math.round(performance.now() - started),
      });
    }
    return result;
  }

  #judgeTxt(domain: string, answer: DnsAnswer<string[][]>): TxtOutcome {
    if (answer.kind === 'error') return { kind: 'failed', status: 'temp-error', error: answer.error }; // §3.3: SERVFAIL is not "no policy"
    if (this.#o.txtCheckIntervalMs > 0) {
      if (this.#lastTxtCheck.size >= 10_000) this.#lastTxtCheck.clear(); // bounded: an eviction only costs one query
      this.#lastTxtCheck.set(domain, this.#o.now());
    }
    if (answer.kind === 'not-found') return { kind: 'failed', status: 'none' };
    try {
      const record = selectStsTxtRecord(answer.value);
      return record === undefined ? { kind: 'failed', status: 'none' } : { kind: 'record', record };
    } catch (error) {
      // §3.1: not exactly one valid record: no usable record.
      const err = error instanceof MtaStsError ? new MtaStsError(error.code, error.message, { domain, cause: error.cause }) : new MtaStsError('MTASTS_TXT_INVALID', String(error), { domain });
      return { kind: 'failed', status: 'invalid', error: err };
    }
  }

  async #fetchAndStore(domain: string, record: StsTxtRecord, used: boolean, key: string): Promise<PolicyLookup> {
    // §3.3: no refetch for the same id within the backoff after a failure (this process's or the fleet's).
    const backoff = await this.#backoff.check(domain, record.id);
    if (backoff) return this.fallback(domain, backoff, statusFor(backoff), used, record.id, key, 'backoff');
    const lease = `fetch:${domain}`;
    const lock = await this.#o.cache.tryLock(lease, this.#o.fetchLeaseMs);
    const started = this.#tracers.has(key) ? performance.now() : 0;
    try {
      if (lock === 'busy') {
        const waited = await this.#waitForFleet(domain, record.id, used, key);
        if (waited) return waited;
      }
      const fetched = await this.#o.fetch(domain);
      const tracers: Tracers = this.#tracers.get(key);
      if (tracers) emitTrace(tracers, { step: 'fetch', url: fetched.url, ok: true, status: fetched.status, ...(fetched.contentType !== undefined ? { contentType: fetched.contentType } : {}), bytes: fetched.bytes, elapsedMs: fetched.elapsedMs });
      this.#backoff.clear(domain);
      const fetchedAt = this.#o.now();
      // §3.3: cache until max_age expires. §10.2: max_age 0 / mode none replace a cached policy (withdrawal).
      const entry: PolicyStoreEntry = { domain, id: record.id, policy: fetched.policy, text: fetched.text, fetchedAt, expiresAt: fetchedAt + fetched.policy.maxAge * 1000 };
      await this.#o.cache.save(domain, entry, used);
      this.#o.onCached();
      this.#o.logger.debug?.('mta-sts: policy fetched', { domain, id: record.id, mode: fetched.policy.mode, maxAge: fetched.policy.maxAge, ms: fetched.elapsedMs });
      if (tracers) emitTrace(tracers, { step: 'cache', decision: 'fetched', source: 'fetched', id: record.id, expiresAt: entry.expiresAt });
      return Object.freeze({ domain, status: 'policy', policy: toPolicy(entry), source: 'fetched', txtId: record.id });
    } catch (error) {
      const err = error instanceof MtaStsError ? error : new MtaStsError('MTASTS_FETCH_FAILED', String(error), { domain, cause: error });
      const tracers: Tracers = this.#tracers.get(key);
      if (tracers) emitTrace(tracers, fetchFailureStep(err, started === 0 ? 0 : Math.round(performance.now() - started)));
      await this.#backoff.record(domain, record.id, err);
      this.#o.logger.warn?.('mta-sts: policy fetch failed', { domain, code: err.code, message: err.message });
      return this.fallback(domain, err, statusFor(err), used, record.id, key); // §3.3: a failed refetch keeps the cached policy
    } finally {
      if (lock === 'held') void this.#o.cache.unlock(lease);
    }
  }

  /**
   * Another member holds `fetch:<domain>`: poll tier 2 for its result, at most `fleetWaitMs` (a dead holder must not
   * block delivery). Returns the adopted policy, a backoff when the holder failed, or undefined to fetch ourselves.
   */
  async #waitForFleet(domain: string, id: string, used: boolean, key: string): Promise<PolicyLookup | undefined> {
    const { cache, now } = this.#o;
    const deadline = Date.now() + this.#o.fleetWaitMs;
    while (Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(FLEET_POLL_MS, Math.max(1, deadline - Date.now()))));
      const shared = await cache.readShared(domain, false);
      if (isUnexpired(shared, now()) && shared.id === id) {
        cache.adopt(domain, shared, used);
        this.#o.onCached();
        return cached(shared, 'cache', id, this.#tracers.get(key), 'shared');
      }
      const backoff = await this.#backoff.check(domain, id);
      if (backoff) return this.fallback(domain, backoff, statusFor(backoff), used, id, key, 'backoff');
    }
    return undefined;
  }

  async #afterCrash(domain: string, error: unknown, used: boolean): Promise<PolicyLookup> {
    const err = error instanceof MtaStsError ? error : new MtaStsError('MTASTS_FETCH_FAILED', `unexpected failure: ${String(error)}`, { domain, cause: error });
    this.#o.logger.error?.('mta-sts: discovery failed unexpectedly', { domain, error: String(error) });
    try {
      return await this.fallback(domain, err, 'fetch-error', used);
    } catch {
      try {
        const local = this.#o.cache.peek(domain);
        if (isUnexpired(local, this.#o.now())) return Object.freeze({ domain, status: 'policy', policy: toPolicy(local), source: 'stale-cache', error: err });
      } catch {
        // Nothing more to try: no known policy can be shown to apply.
      }
      return Object.freeze({ domain, status: 'fetch-error', source: 'fetched', error: err });
    }
  }
}

/** The `cache` result of each frozen entry, built once: every caller of {@link cached} passes the entry's own id. */
const cacheResults = new WeakMap<PolicyStoreEntry, PolicyLookup>();

function cached(entry: PolicyStoreEntry, source: 'cache', txtId: string, tracers: Tracers, decision: 'cached' | 'shared' = 'cached'): PolicyLookup {
  if (tracers) emitTrace(tracers, { step: 'cache', decision, source, id: txtId, expiresAt: entry.expiresAt });
  const known = cacheResults.get(entry);
  if (known && known.txtId === txtId) return known;
  const result: PolicyLookup = Object.freeze({ domain: entry.domain, status: 'policy', policy: toPolicy(entry), source, txtId });
  if (Object.isFrozen(entry) && txtId === entry.id) cacheResults.set(entry, result);
  return result;
}

/** The fetch step of a failed fetch, from the error's details (url, HTTP status, content type, bytes). */
function fetchFailureStep(error: MtaStsError, elapsedMs: number): DiscoveryTraceStep {
  const d = error.details;
  return {
    step: 'fetch',
    url: typeof d.url === 'string' ? d.url : '',
    ok: false,
    ...(typeof d.status === 'number' ? { status: d.status } : {}),
    ...(typeof d.contentType === 'string' ? { contentType: d.contentType } : {}),
    ...(typeof d.bytes === 'number' ? { bytes: d.bytes } : {}),
    elapsedMs,
    errorCode: error.code,
    error,
  };
}

/** The lookup status of a failed fetch (a backoff reports the failure it stands for). */
export function statusFor(error: MtaStsError): PolicyStatus {
  if (error.code === 'MTASTS_DNS_TEMPORARY') return 'temp-error';
  if (error.code === 'MTASTS_FETCH_BACKOFF') return error.cause instanceof MtaStsError ? statusFor(error.cause) : 'fetch-error';
  return error.resultType === 'sts-policy-invalid' ? 'invalid' : 'fetch-error';
}

