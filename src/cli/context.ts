/**
 * Builds what `mta-sts check` runs on from CLI options: the library's engine (`createMtaSts`), with the resolver
 * (system or `--dns-server`), the extra trust anchors (`--ca`) and the deadlines the options give, so the CLI sees
 * exactly what the library would. The resolver handed to the engine records the TXT answers it returns, so the
 * trace can show the records the engine judged.
 */
import { createMtaSts, type MtaSts } from '../engine.js';
import { MemoryPolicyStore } from '../cache/store.js';
import { createDefaultResolver, type DnsResolver } from '../discovery/resolver.js';
import type { CheckContext, TxtAnswers } from './check.js';

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

/** Most TXT answers remembered (one per checked domain; a run checks each domain once). */
const MAX_RECORDED_ANSWERS = 100_000;

/** A resolver that remembers the last TXT answer per name (bounded) and otherwise delegates. */
function recordingResolver(inner: DnsResolver): { resolver: DnsResolver; answers: TxtAnswers } {
  const answers = new Map<string, string[][]>();
  const resolver: DnsResolver = {
    async resolveTxt(name) {
      const records = await inner.resolveTxt(name);
      if (answers.size >= MAX_RECORDED_ANSWERS) answers.delete(answers.keys().next().value as string);
      answers.set(name.toLowerCase(), records);
      return records;
    },
    resolveMx: (name) => inner.resolveMx(name),
    resolve4: (name) => inner.resolve4(name),
    resolve6: (name) => inner.resolve6(name),
  };
  return { resolver, answers: { get: (name) => answers.get(name.toLowerCase()) } };
}

export function createCheckRuntime(setup: CheckSetup): CheckRuntime {
  // c-ares gets a per-try timeout; the engine enforces the overall deadline of each query.
  const base =
    setup.resolver ??
    createDefaultResolver({
      ...(setup.dnsServers.length > 0 ? { dnsServers: setup.dnsServers } : {}),
      timeoutMs: Math.max(100, Math.floor(setup.timeoutMs / 2)),
      tries: 2,
    });
  const { resolver, answers } = recordingResolver(base);
  const engine: MtaSts = createMtaSts({
    resolver,
    ...(setup.ca.length > 0 ? { ca: [...setup.ca] } : {}),
    dnsTimeoutMs: setup.timeoutMs,
    fetchTimeoutMs: setup.timeoutMs,
    // A check looks at each domain once: nothing to refresh, nothing to back off from.
    store: new MemoryPolicyStore({ max: MAX_RECORDED_ANSWERS }),
    refreshIntervalMs: 0,
    fetchBackoffMs: 0,
    ...(setup.httpsPort !== undefined ? { httpsPort: setup.httpsPort } : {}),
  });
  const ctx: CheckContext = {
    engine,
    txtAnswers: answers,
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
