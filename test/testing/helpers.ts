/** Small clients for the test-world tests: they reach hosts through the world's own DNS, as the library does. */
import https from 'node:https';
import { Resolver } from 'node:dns/promises';
import type { LookupFunction } from 'node:net';
import type { IncomingHttpHeaders } from 'node:http';
import type { TestWorld } from '../../src/testing/index.js';

/** A `lookup` for net/tls/https that resolves A records through the world's DNS server. */
export function worldLookup(world: TestWorld): LookupFunction {
  const resolver = new Resolver({ timeout: 1000, tries: 1 });
  resolver.setServers(world.dns.servers);
  return (hostname, options, callback) => {
    resolver.resolve4(hostname).then(
      (addresses) => {
        const address = addresses[0] ?? '';
        if (options.all) callback(null, [{ address, family: 4 }]);
        else callback(null, address, 4);
      },
      (error: NodeJS.ErrnoException) => callback(error, ''),
    );
  };
}

export interface FetchResult {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** GET (or another method) over HTTPS, trusting only the world CA. Rejects on TLS/network errors and on `timeoutMs`. */
export function httpsGet(
  world: TestWorld,
  url: string,
  options: { method?: string; body?: string; timeoutMs?: number; agent?: https.Agent; rejectUnauthorized?: boolean } = {},
): Promise<FetchResult> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method: options.method ?? 'GET',
        ca: world.ca.rootPem,
        lookup: worldLookup(world),
        agent: options.agent ?? false,
        rejectUnauthorized: options.rejectUnauthorized ?? true,
        timeout: options.timeoutMs ?? 5000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
        res.on('aborted', () => reject(new Error('response aborted')));
      },
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error('client timeout'), { code: 'CLIENT_TIMEOUT' })));
    req.on('error', reject);
    req.end(options.body);
  });
}

/** The policy URL of `domain` in `world`. */
export function policyUrl(world: TestWorld, domain: string, path = '/.well-known/mta-sts.txt'): string {
  return `https://mta-sts.${domain}:${world.httpsPort}${path}`;
}
