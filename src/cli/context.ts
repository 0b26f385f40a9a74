/**
 * Builds what `mta-sts check` runs on from CLI options: the library's engine (`createMtaSts`), with the resolver
 * (system or `--dns-server`), the extra trust anchors (`--ca`) and the deadlines the options give, so the CLI sees
 * exactly what the library would. The trace of each check comes from the engine itself (`getPolicy`'s `trace`).
 */
import { createMtaSts, type MtaSts } from '../engine.js';
import { MemoryPolicyStore } from '../cache/store.js';
import { createDefaultResolver, type DnsResolver } from '../discovery/resolver.js';
import type { CheckContext } from './check.js';

export interface CheckSetup {
  /** `ip` or `ip:port`; empty: the system's resolvers. */
  dnsServers: readonly string[];
  /** Extra trust anchors (PEM text). */
  ca: readonly string[];
  timeoutMs: number;
  probe: boolean;
  /** Count "would fail under enforce" (testing policies) as problems. */
  testingAsEnforce?: boolean;
  /** FOR TESTS: SMTP port of MX hosts (25). */
  smtpPort?: number;
  /** FOR TESTS: HTTPS port of policy hosts (443). */
  httpsPort?: number;
  /** Replaces the resolver (tests, embedding). */
  resolver?: DnsResolver;
}

export interface CheckRuntime {
  ctx: CheckContext;
  close(): Promise<void>;
}

/** Policies held by the check's engine (each domain of a run is checked once). */
const MAX_CACHED_POLICIES = 100_000;

export function createCheckRuntime(setup: CheckSetup): CheckRuntime {
  // c-ares gets a per-try timeout; the engine enforces the overall deadline of each query.
  const resolver =
    setup.resolver ??
    createDefaultResolver({
      ...(setup.dnsServers.length > 0 ? { dnsServers: setup.dnsServers } : {}),
      timeoutMs: Math.max(100, Math.floor(setup.timeoutMs / 2)),
      tries: 2,
    });
  const engine: MtaSts = createMtaSts({
    resolver,
    ...(setup.ca.length > 0 ? { ca: [...setup.ca] } : {}),
    dnsTimeoutMs: setup.timeoutMs,
    fetchTimeoutMs: setup.timeoutMs,
    // A check looks at each domain once: nothing to refresh, nothing to back off from.
    store: new MemoryPolicyStore({ max: MAX_CACHED_POLICIES }),
    refreshIntervalMs: 0,
    fetchBackoffMs: 0,
    ...(setup.httpsPort !== undefined ? { httpsPort: setup.httpsPort } : {}),
  });
  const ctx: CheckContext = {
    engine,
    timeoutMs: setup.timeoutMs,
    probe: setup.probe,
    ...(setup.testingAsEnforce ? { testingAsEnforce: true } : {}),
    ...(setup.smtpPort !== undefined ? { smtpPort: setup.smtpPort } : {}),
    ...(setup.httpsPort !== undefined ? { httpsPort: setup.httpsPort } : {}),
  };
  return {
    ctx,
    async close() {
      await engine.close().catch(() => undefined);
    },
  };
}
