/**
 * The DNS seam. Everything the library looks up in DNS goes through a {@link DnsResolver}, so tests, fleets and
 * users with their own resolver (DNSSEC-validating, DoH, cached) swap it without patching modules.
 *
 * The default is a `node:dns` `Resolver` (c-ares), optionally pointed at `dnsServers`. Errors are classified into
 * "the name has no such record" (NXDOMAIN / NODATA: an authoritative negative answer) and "temporary" (SERVFAIL,
 * REFUSED, timeout, network): RFC 8461 §3.3 requires that only the former ever mean "no policy published".
 */
import { Resolver as NodeResolver } from 'node:dns/promises';
import { MtaStsError } from '../errors.js';

export interface MxRecord {
  exchange: string;
  priority: number;
  /**
   * The record's TTL in seconds, when the resolver reports it (`node:dns` does not for MX). With it, the engine
   * reuses the answer no longer than the TTL (RFC 1035 §3.2.1); see the engine's `dnsAnswerCacheMs`.
   */
  ttl?: number;
}

/** An A or AAAA record with its TTL in seconds: what `node:dns` answers to `resolve4(name, { ttl: true })`. */
export interface AddressWithTtl {
  address: string;
  ttl: number;
}

/**
 * The resolver interface. `node:dns/promises` `Resolver` satisfies it as is.
 *
 * TTLs (RFC 1035 §3.2.1): the engine reuses a positive answer no longer than its TTL. It asks `resolve4` and
 * `resolve6` with a second argument `{ ttl: true }` and takes `{ address, ttl }` records as `node:dns` answers
 * them; a resolver that ignores the argument and answers plain addresses gets its A/AAAA answers shared only while
 * a query is in flight, never reused after it. MX records may carry `ttl` (see {@link MxRecord}).
 */
export interface DnsResolver {
  /** TXT records; each record is the list of its character-strings (RFC 1035), to be concatenated. */
  resolveTxt(name: string): Promise<string[][]>;
  resolveMx(name: string): Promise<MxRecord[]>;
  resolve4(name: string): Promise<string[]>;
  resolve6(name: string): Promise<string[]>;
}

export interface DefaultResolverOptions {
  /** DNS servers as `ip` or `ip:port` (`[ipv6]:port`). Default: the system's. */
  dnsServers?: readonly string[];
  /**
   * Overall deadline of one query, in ms. c-ares retries in the background after a caller stops waiting, so its own
   * per-try timeout and tries are derived from this deadline (`caresSchedule`): no query outlives it, and a
   * process whose DNS server never answers exits when the deadline passes. Default 10000, or `timeoutMs × 2^tries`
   * when `timeoutMs` is given.
   */
  deadlineMs?: number;
  /** Per-try timeout handed to c-ares, in ms (overrides the schedule derived from `deadlineMs`). */
  timeoutMs?: number;
  /** Tries per server (overrides the schedule derived from `deadlineMs`). Default 2. */
  tries?: number;
}

/** The default resolver: a {@link DnsResolver} whose outstanding queries can be cancelled. */
export interface DefaultResolver extends DnsResolver {
  /** Cancels every outstanding query (they reject with `ECANCELLED`, a temporary failure); call it on shutdown. */
  cancel(): void;
  /** The servers queried, as `ip` / `ip:port`. */
  getServers(): string[];
}

/** Tries per server of the default resolver: one retransmission, like a stub resolver. */
const DEFAULT_TRIES = 2;

/**
 * The c-ares schedule that fits a query into `deadlineMs`. c-ares tries each of `servers` in turn, `tries` rounds,
 * the per-try timeout growing every round (measured with c-ares 1.34: a never-answered query with 2 tries on one
 * server ends after 3–4× the per-try timeout), so the timeout is the deadline divided by `servers × 2^tries`.
 */
export function caresSchedule(deadlineMs: number, servers: number, tries = DEFAULT_TRIES): { timeout: number; tries: number } {
  return { timeout: Math.max(1, Math.floor(deadlineMs / (Math.max(1, servers) * 2 ** tries))), tries };
}

/**
 * A `node:dns` resolver, optionally with explicit servers, whose queries end by `deadlineMs` and can be cancelled.
 *
 * c-ares keeps retrying a query after its caller stopped waiting, and its schedule is only approximately bounded
 * (it adapts to server latency and adds jitter). So besides configuring c-ares from the deadline, each query is
 * raced against the deadline here, and once no caller waits for any query any more, the abandoned ones are
 * cancelled: a process whose DNS server never answers exits when the deadline passes, not seconds later.
 */
export function createDefaultResolver(options: DefaultResolverOptions = {}): DefaultResolver {
  const tries = options.tries ?? DEFAULT_TRIES;
  const explicit = options.dnsServers && options.dnsServers.length > 0 ? [...options.dnsServers] : undefined;
  // With an explicit c-ares schedule, the deadline defaults to the longest that schedule can take on one server.
  const deadlineMs = options.deadlineMs ?? (options.timeoutMs !== undefined ? options.timeoutMs * 2 ** tries : 10_000);
  // The number of servers is known only once they are set (the system's come from resolv.conf).
  const servers = explicit ?? new NodeResolver().getServers();
  const inner = new NodeResolver(options.timeoutMs !== undefined ? { timeout: options.timeoutMs, tries } : caresSchedule(deadlineMs, servers.length, tries));
  if (explicit) inner.setServers(explicit);
  return new DeadlineResolver(inner, deadlineMs);
}

/** Races each c-ares query against the deadline; cancels abandoned queries once nobody waits for an answer. */
class DeadlineResolver implements DefaultResolver {
  /** Queries whose caller still waits. */
  private waiting = 0;

  constructor(
    private readonly inner: NodeResolver,
    private readonly deadlineMs: number,
  ) {}

  resolveTxt(name: string): Promise<string[][]> {
    return this.run(this.inner.resolveTxt(name), name);
  }
  resolveMx(name: string): Promise<MxRecord[]> {
    return this.run(this.inner.resolveMx(name), name);
  }
  resolve4(name: string): Promise<string[]>;
  resolve4(name: string, options: { ttl: true }): Promise<AddressWithTtl[]>;
  resolve4(name: string, options?: { ttl: true }): Promise<string[] | AddressWithTtl[]> {
    return this.run<string[] | AddressWithTtl[]>(options?.ttl === true ? this.inner.resolve4(name, { ttl: true }) : this.inner.resolve4(name), name);
  }
  resolve6(name: string): Promise<string[]>;
  resolve6(name: string, options: { ttl: true }): Promise<AddressWithTtl[]>;
  resolve6(name: string, options?: { ttl: true }): Promise<string[] | AddressWithTtl[]> {
    return this.run<string[] | AddressWithTtl[]>(options?.ttl === true ? this.inner.resolve6(name, { ttl: true }) : this.inner.resolve6(name), name);
  }
  getServers(): string[] {
    return this.inner.getServers();
  }
  cancel(): void {
    this.inner.cancel();
  }

  private run<T>(query: Promise<T>, name: string): Promise<T> {
    this.waiting++;
    return new Promise<T>((resolve, reject) => {
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        this.waiting--;
        reject(Object.assign(new Error(`query for ${name} timed out after ${this.deadlineMs} ms`), { code: 'ETIMEOUT', hostname: name }));
        if (this.waiting === 0) this.inner.cancel(); // nobody waits: stop c-ares retrying in the background
      }, this.deadlineMs);
      timer.unref();
      const settle = (): boolean => {
        if (timedOut) return false;
        clearTimeout(timer);
        this.waiting--;
        return true;
      };
      query.then(
        (value) => settle() && resolve(value),
        (error: unknown) => settle() && reject(error),
      );
    });
  }
}

/** Node / c-ares codes for an authoritative "no such name" or "no such record". */
const NOT_FOUND_CODES = new Set(['ENOTFOUND', 'ENODATA', 'NXDOMAIN', 'ENONAME']);

/** True when the error is an authoritative negative answer (NXDOMAIN or NODATA), not a temporary failure. */
export function isDnsNotFound(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && NOT_FOUND_CODES.has(code);
}

/** `not-found.nxdomain` is true when the name does not exist at all (NXDOMAIN), false for NODATA. */
export type DnsAnswer<T> = { kind: 'ok'; value: T } | { kind: 'not-found'; nxdomain: boolean } | { kind: 'error'; error: MtaStsError };

/**
 * Runs one DNS query with an overall deadline (a custom resolver may never settle) and classifies the outcome.
 * Never throws.
 */
export async function queryDns<T>(
  run: () => Promise<T>,
  what: { name: string; type: string; domain?: string },
  deadlineMs: number,
  signal?: AbortSignal,
): Promise<DnsAnswer<T>> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    const guard = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new MtaStsError('MTASTS_DNS_TEMPORARY', `DNS ${what.type} query for ${what.name} timed out after ${deadlineMs} ms`, { domain: what.domain, details: { name: what.name, type: what.type, reason: 'timeout' } })), deadlineMs);
      timer.unref?.();
      if (signal) {
        onAbort = () => reject(new MtaStsError('MTASTS_ABORTED', `DNS ${what.type} query for ${what.name} aborted`, { domain: what.domain, cause: signal.reason }));
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
      }
    });
    const value = await Promise.race([run(), guard]);
    return { kind: 'ok', value };
  } catch (error) {
    if (error instanceof MtaStsError) return { kind: 'error', error };
    if (isDnsNotFound(error)) return { kind: 'not-found', nxdomain: (error as { code?: unknown }).code !== 'ENODATA' };
    const code = (error as { code?: unknown } | null)?.code;
    return {
      kind: 'error',
      error: new MtaStsError('MTASTS_DNS_TEMPORARY', `DNS ${what.type} query for ${what.name} failed: ${typeof code === 'string' ? code : String(error)}`, {
        domain: what.domain,
        cause: error,
        details: { name: what.name, type: what.type, reason: typeof code === 'string' ? code : 'error' },
      }),
    };
  } finally {
    if (timer) clearTimeout(timer);
    if (signal && onAbort) signal.removeEventListener('abort', onAbort);
  }
}
