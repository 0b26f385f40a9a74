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
}

/** The resolver interface. `node:dns/promises` `Resolver` satisfies it as is. */
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
  /** Per-try timeout handed to c-ares. Default 5000 ms. */
  timeoutMs?: number;
  /** Tries per query. Default 2. */
  tries?: number;
}

/** A `node:dns` resolver, optionally with explicit servers. */
export function createDefaultResolver(options: DefaultResolverOptions = {}): DnsResolver {
  const resolver = new NodeResolver({ timeout: options.timeoutMs ?? 5000, tries: options.tries ?? 2 });
  if (options.dnsServers && options.dnsServers.length > 0) resolver.setServers([...options.dnsServers]);
  return resolver;
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
