/**
 * Cold discovery of N policies, one implementation per process (argv[2]: JSON parameters, `impl` one of
 * `baseline`, `mailauth`, `ours`). The baseline and mailauth trust the test root through `NODE_EXTRA_CA_CERTS` (Node's
 * roots plus it, what an application does), this library through its `ca` option (also added to Node's roots). Each domain is discovered once: TXT query, policy host address, HTTPS GET with a
 * certificate check, parse. Prints policies/s, CPU ms per policy and peak RSS.
 */
import https from 'node:https';
import { Resolver } from 'node:dns/promises';
import type { LookupFunction } from 'node:net';
import { benchDomain, cpuMs, params, peakRssMb, pool, report, type ChildParams } from './common.js';

interface ColdParams extends ChildParams {
  impl: 'baseline' | 'mailauth' | 'ours';
  domains: number;
  concurrency: number;
}

const p = params<ColdParams>();

/** What an implementation does per domain, and how it releases its connections (inside the measured window). */
interface Implementation {
  discover(domain: string): Promise<boolean>;
  close(): Promise<void>;
}

/** Builds the implementation; `discover` resolves true when a policy was obtained. */
async function implementation(): Promise<Implementation> {
  if (p.impl === 'baseline') {
    // The floor: a TXT query and an HTTPS GET through undici, no rules at all.
    const { Agent, request } = await import('undici');
    const resolver = new Resolver({ timeout: 2500, tries: 2 });
    resolver.setServers([p.dnsServer]);
    const lookup: LookupFunction = (hostname, options, callback) => {
      resolver.resolve4(hostname).then(
        (addresses) => (options.all ? callback(null, addresses.map((address) => ({ address, family: 4 }))) : callback(null, addresses[0]!, 4)),
        (error: NodeJS.ErrnoException) => callback(error, ''),
      );
    };
    // Trust: Node's roots plus the test root through NODE_EXTRA_CA_CERTS (set by the parent), as an app would.
    const agent = new Agent({ connect: { lookup } });
    return {
      async discover(domain) {
        const txt = await resolver.resolveTxt(`_mta-sts.${domain}`);
        if (!txt.some((r) => r.join('').startsWith('v=STSv1'))) return false;
        const { statusCode, body } = await request(`https://mta-sts.${domain}:${p.httpsPort}/.well-known/mta-sts.txt`, { dispatcher: agent });
        const text = await body.text();
        return statusCode === 200 && text.includes('version: STSv1');
      },
      close: () => agent.close(),
    };
  }
  if (p.impl === 'mailauth') {
    // mailauth dials port 443 with https.request and the global agent: point that agent at the world's port and CA.
    const port = p.httpsPort;
    class WorldAgent extends https.Agent {
      override createConnection(options: https.RequestOptions, callback?: unknown) {
        // @ts-expect-error Node's Agent.createConnection is untyped here
        return super.createConnection({ ...options, port }, callback);
      }
    }
    https.globalAgent = new WorldAgent(); // trusts the test root through NODE_EXTRA_CA_CERTS, like the baseline
    const resolver = new Resolver({ timeout: 2500, tries: 2 });
    resolver.setServers([p.dnsServer]);
    type GetPolicy = (d: string, known: unknown, o: unknown) => Promise<{ status: string }>;
    const mod = (await import('mailauth/lib/mta-sts.js')) as unknown as { getPolicy?: GetPolicy; default: { getPolicy: GetPolicy } };
    const getPolicy = mod.getPolicy ?? mod.default.getPolicy;
    const resolve = (name: string, type: string) => resolver.resolve(name, type as 'TXT');
    return {
      discover: async (domain) => (await getPolicy(domain, null, { resolver: resolve })).status === 'found',
      close: async () => https.globalAgent.destroy(),
    };
  }
  const { createMtaSts } = await import('../../src/index.js');
  const mta = createMtaSts({ dnsServers: [p.dnsServer], ca: [p.caPem], httpsPort: p.httpsPort });
  return {
    async discover(domain) {
      const result = await mta.getPolicy(domain);
      if (result.status !== 'policy') throw Object.assign(new Error(result.error?.message ?? result.status), { code: result.error?.code ?? result.status });
      return true;
    },
    close: () => mta.close(),
  };
}

const impl = await implementation();
let ok = 0;
let failed = 0;
const reasons: Record<string, number> = {};
const cpu0 = cpuMs();
const t0 = performance.now();
await pool(p.domains, p.concurrency, async (i) => {
  try {
    if (await impl.discover(benchDomain(i))) ok++;
    else failed++;
  } catch (error) {
    failed++;
    const reason = `${(error as { code?: string }).code ?? ''} ${String((error as Error).message).replace(/d\d+\.bench\.test/g, '<d>').slice(0, 120)}`;
    reasons[reason] = (reasons[reason] ?? 0) + 1;
  }
});
// Every implementation releases its connections inside the window: an idle keep-alive socket is closed sooner or
// later, and leaving that out would favour whoever closes later.
await impl.close();
const wallMs = performance.now() - t0;
const cpu = cpuMs() - cpu0;
const mem = process.memoryUsage();
let liveHeapMb: number | undefined;
const gc = (globalThis as { gc?: () => void }).gc;
if (gc) {
  gc();
  liveHeapMb = process.memoryUsage().heapUsed / 2 ** 20;
  if (process.env.BENCH_HEAP_SNAPSHOT) (await import('node:v8')).writeHeapSnapshot(process.env.BENCH_HEAP_SNAPSHOT);
}
report({ impl: p.impl, ok, failed, reasons, wallMs, policiesPerS: (ok / wallMs) * 1000, cpuMsPerPolicy: cpu / Math.max(1, ok), peakRssMb: peakRssMb(), heapTotalMb: mem.heapTotal / 2 ** 20, externalMb: mem.external / 2 ** 20, liveHeapMb });
process.exit(0);
