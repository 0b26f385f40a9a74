/**
 * Builds the network seams `mta-sts check` uses from CLI options: one resolver (system or `--dns-server`), one
 * policy-fetch dispatcher resolving through it and trusting `--ca` in addition to Node's roots, the same roots for
 * MX TLS. The same construction as the engine's defaults, so the CLI sees what the library would see.
 */
import { createResolverLookup } from '../discovery/lookup.js';
import { createPolicyAgent } from '../discovery/fetch-policy.js';
import { createDefaultResolver, type DnsResolver } from '../discovery/resolver.js';
import { buildTrustRoots } from '../tls/connect-options.js';
import { strictCheckServerIdentity } from '../tls/host-identity.js';
import type { CheckContext } from './check.js';

export interface CheckSetup {
  /** `ip` or `ip:port`; empty: the system's resolvers. */
  dnsServers: readonly string[];
  /** Extra trust anchors (PEM text). */
  ca: readonly string[];
  timeoutMs: number;
  probe: boolean;
  smtpPort?: number;
  policyPort?: number;
  /** Replaces the resolver (tests, embedding). */
  resolver?: DnsResolver;
}

export interface CheckRuntime {
  ctx: CheckContext;
  close(): Promise<void>;
}

export function createCheckRuntime(setup: CheckSetup): CheckRuntime {
  // c-ares gets a per-try timeout; queryDns enforces the overall deadline of each query.
  const resolver =
    setup.resolver ??
    createDefaultResolver({
      ...(setup.dnsServers.length > 0 ? { dnsServers: setup.dnsServers } : {}),
      timeoutMs: Math.max(100, Math.floor(setup.timeoutMs / 2)),
      tries: 2,
    });
  const trustRoots = buildTrustRoots(setup.ca.length > 0 ? [...setup.ca] : undefined, true);
  const agent = createPolicyAgent({
    ca: trustRoots,
    lookup: createResolverLookup(resolver, setup.timeoutMs) as never,
    checkServerIdentity: strictCheckServerIdentity,
    connectTimeoutMs: setup.timeoutMs,
  });
  const ctx: CheckContext = {
    resolver,
    dispatcher: agent,
    trustRoots,
    timeoutMs: setup.timeoutMs,
    probe: setup.probe,
    ...(setup.smtpPort !== undefined ? { smtpPort: setup.smtpPort } : {}),
    ...(setup.policyPort !== undefined ? { policyPort: setup.policyPort } : {}),
  };
  return {
    ctx,
    async close() {
      await agent.close().catch(() => undefined);
    },
  };
}
