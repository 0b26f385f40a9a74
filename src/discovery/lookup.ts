/**
 * A `lookup` function for `net.connect` / `tls.connect` / undici that resolves host names through the library's
 * {@link DnsResolver} instead of the operating system, so the policy host and MX hosts are found with the same
 * resolver (and the same test DNS server) as the TXT and MX records.
 */
import type { LookupAddress, LookupOptions } from 'node:dns';
import { isIP } from 'node:net';
import { queryDns, type DnsResolver } from './resolver.js';

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** Resolves the A and AAAA records of `host` through the resolver (IPv4 addresses first). Rejects with an `ENOTFOUND`-style error. */
export async function resolveAddresses(resolver: DnsResolver, host: string, deadlineMs: number, family?: 0 | 4 | 6): Promise<LookupAddress[]> {
  const ipFamily = isIP(host);
  if (ipFamily !== 0) return [{ address: host, family: ipFamily }];
  // A and AAAA are asked at the same time: one round trip, not two.
  const [a, aaaa] = await Promise.all([
    family !== 6 ? queryDns(() => resolver.resolve4(host), { name: host, type: 'A' }, deadlineMs) : undefined,
    family !== 4 ? queryDns(() => resolver.resolve6(host), { name: host, type: 'AAAA' }, deadlineMs) : undefined,
  ]);
  const out: LookupAddress[] = [];
  let lastError: Error | undefined;
  if (a?.kind === 'ok') for (const address of a.value) out.push({ address, family: 4 });
  else if (a?.kind === 'error') lastError = a.error;
  if (aaaa?.kind === 'ok') for (const address of aaaa.value) out.push({ address, family: 6 });
  else if (aaaa?.kind === 'error') lastError ??= aaaa.error;
  if (out.length === 0) {
    const error = new Error(`could not resolve ${host}${lastError ? `: ${lastError.message}` : ''}`) as NodeJS.ErrnoException & { hostname?: string };
    error.code = lastError ? 'EAI_AGAIN' : 'ENOTFOUND';
    error.hostname = host;
    throw error;
  }
  return out;
}

/** Builds a `lookup` option for Node sockets backed by the resolver. */
export function createResolverLookup(resolver: DnsResolver, deadlineMs: number) {
  return function lookup(hostname: string, options: LookupOptions | number | LookupCallback, callback?: LookupCallback): void {
    const cb = (typeof options === 'function' ? options : callback) as LookupCallback;
    const opts: LookupOptions = typeof options === 'object' && options !== null ? options : typeof options === 'number' ? { family: options } : {};
    const family = opts.family === 4 || opts.family === 6 ? opts.family : 0;
    resolveAddresses(resolver, hostname, deadlineMs, family).then(
      (addresses) => {
        if (opts.all) cb(null, addresses);
        else {
          const first = addresses[0]!;
          cb(null, first.address, first.family);
        }
      },
      (error: NodeJS.ErrnoException) => cb(error, opts.all ? [] : ''),
    );
  };
}
