/**
 * The Haraka plugin: MTA-STS (RFC 8461) and TLS reporting (RFC 8460) for Haraka's outbound delivery.
 *
 * `get_mx` runs before every delivery attempt of every message. The plugin looks up the recipient domain's policy
 * (with a deadline) and:
 * - `enforce`: answers with the policy-listed MX hosts only, in preference order, resolved by the engine's resolver
 *   (`{ exchange: <ip>, from_dns: <MX name> }`, so SNI and the certificate check use the MX name), and installs the
 *   per-message enforcement of {@link installAttempt}. No listed MX host, a lookup error or timeout, missing Haraka
 *   internals or an invalid configuration: DENYSOFT (Haraka defers; never a bounce, RFC 8461 §5.1). A null MX
 *   (RFC 7505) is the one permanent answer (DENY).
 * - `testing`: steps aside (Haraka delivers as without MTA-STS) and observes every TLS session for TLS-RPT.
 * - no policy: steps aside; sessions are observed only when a TLS-RPT recorder is configured.
 * Before Haraka's last attempt (it bounces on the next temporary failure) the policy is refetched (§5.1).
 *
 * Every failure of the plugin itself is caught: a `get_mx` that throws would make Haraka continue without the
 * plugin (fail open), so everything unexpected becomes DENYSOFT.
 */
import { createSqlitePolicyStore, type SqlitePolicyStore } from '../../cache/sqlite-store.js';
import { MemoryPolicyStore, type PolicyStore } from '../../cache/store.js';
import { createDefaultResolver } from '../../discovery/resolver.js';
import { MtaStsError } from '../../errors.js';
import type { MtaStsOptions } from '../../engine.js';
import type { MxCandidate } from '../../plan/plan.js';
import { createTlsRptReporter, type TlsRptReporter } from '../../tlsrpt/scheduler.js';
import type { TlsRptRecorder } from '../../tlsrpt/types.js';
import { createMtaStsHooks, type MtaStsHooks } from '../hooks.js';
import { installAttempt, type Attempt } from './attempt.js';
import { parseHarakaConfig, type HarakaMtaStsConfig } from './config.js';
import { SUPPORTED_HARAKA_RANGE, isLastAttempt, isSupportedHarakaVersion, missingHmailInternals, removeOverrides, type HarakaHmail, type HarakaMx } from './internals.js';
import { harakaLog, libraryLogger, type HarakaLog } from './log.js';

/** Haraka return codes (`haraka-constants`). */
export const HARAKA = Object.freeze({ CONT: 900, DENY: 902, DENYSOFT: 903, OK: 906 });

/** The `next` callback of a Haraka hook. */
export type HarakaNext = (code?: number, message?: unknown) => void;

/** Options of {@link createHarakaPlugin}, for a `plugins/<name>.js` shim; the packaged plugin uses none. */
export interface HarakaPluginOptions {
  /** Where session outcomes go, instead of the `[tlsrpt]` reporter of `mta-sts.ini`. */
  recorder?: TlsRptRecorder;
  /** Extra engine options (resolver, store, dispatcher, ...) over those of `mta-sts.ini`. */
  engine?: Partial<MtaStsOptions>;
  /** The configuration file's lines, instead of reading `config/mta-sts.ini` through Haraka. */
  configLines?: readonly string[];
}

/** The plugin: Haraka copies these enumerable functions onto its plugin object. */
export interface HarakaMtaStsPlugin {
  register(this: unknown): void;
  hook_get_mx(this: unknown, next: HarakaNext, hmail: unknown, domain: string): void;
  shutdown(this: unknown): void;
}

interface Runtime {
  config: HarakaMtaStsConfig;
  hooks: MtaStsHooks;
  reporter: TlsRptReporter | undefined;
  recorder: TlsRptRecorder | undefined;
}

type Answer = [code: number, message?: unknown];

/** The plugin's state: the running engine (replaced on a reload), the last configuration error, Haraka's logger. */
interface PluginState {
  options: HarakaPluginOptions;
  runtime?: Runtime | undefined;
  configError?: MtaStsError | undefined;
  /** The `[engine] policy_db` store, opened once and kept across reloads; closed at shutdown. */
  policyStore?: SqlitePolicyStore | undefined;
  log: HarakaLog;
}

/** What the plugin uses of Haraka's plugin object: its config reader and its hook timeout (seconds). */
type HarakaPluginContext = { config?: { get(name: string, type: string, cb: () => void): unknown }; timeout?: unknown };

/** Creates the plugin (see the module documentation). */
export function createHarakaPlugin(options: HarakaPluginOptions = {}): HarakaMtaStsPlugin {
  const state: PluginState = { options, log: () => undefined };
  return {
    register(this: unknown) {
      const plugin = this as HarakaPluginContext;
      state.log = harakaLog(plugin, () => state.runtime?.config.logLevel ?? 'info');
      loadConfig(state, plugin, true);
      checkHarakaVersion(plugin, state.log);
    },

    hook_get_mx(this: unknown, next: HarakaNext, hmail: unknown, domain: string) {
      getMx(state, next, hmail, domain);
    },

    shutdown() {
      closeRuntime(state.runtime);
      state.runtime = undefined;
      state.policyStore?.close();
      state.policyStore = undefined;
    },
  };
}

/**
 * Reads `mta-sts.ini` and starts an engine for it (Haraka calls again on a change). An invalid file refuses the
 * start; on a reload it keeps the previous engine and defers mail to enforce domains until the file is fixed.
 */
function loadConfig(state: PluginState, plugin: HarakaPluginContext, initial: boolean): void {
  const { options, log } = state;
  const read = (): readonly string[] => {
    if (options.configLines) return options.configLines;
    const lines = plugin.config?.get('mta-sts.ini', 'data', () => loadConfig(state, plugin, false));
    return Array.isArray(lines) ? (lines as string[]) : [];
  };
  try {
    const config = parseHarakaConfig(read());
    const next = buildRuntime(state, config, state.runtime);
    const old = state.runtime;
    state.runtime = next;
    state.configError = undefined;
    closeRuntime(old);
    const pluginTimeoutS = plugin.timeout;
    if (typeof pluginTimeoutS === 'number' && pluginTimeoutS > 0 && config.lookupTimeoutMs >= pluginTimeoutS * 1000) {
      log('warn', `mta-sts: lookup_timeout_ms=${config.lookupTimeoutMs} is not below the plugin timeout (${pluginTimeoutS} s): Haraka will defer slow lookups itself ("plugin timeout")`);
    }
    log('notice', `mta-sts: ${initial ? 'loaded' : 'reloaded'} config/mta-sts.ini (loglevel=${config.logLevel}, lookup_timeout_ms=${config.lookupTimeoutMs}, tlsrpt=${config.tlsrpt || options.recorder ? 'on' : 'off'})`);
  } catch (error) {
    const err = error instanceof MtaStsError ? error : new MtaStsError('MTASTS_INVALID_OPTIONS', `mta-sts.ini: ${(error as Error).message}`, { cause: error });
    if (initial || !state.runtime) {
      // Refuse to start: misconfiguration fails loudly, never as unprotected mail.
      log('crit', `mta-sts: refusing to load: ${err.message}`);
      throw err;
    }
    state.configError = err;
    log('crit', `mta-sts: ${err.message}; keeping the previous engine, and DEFERRING all mail to enforce domains until the file is fixed`);
  }
}

/** The engine (hooks) and the reporter for one configuration. */
function buildRuntime(state: PluginState, config: HarakaMtaStsConfig, previous: Runtime | undefined): Runtime {
  const { options } = state;
  const logger = libraryLogger(state.log);
  const reporter = config.tlsrpt && !options.recorder ? createReporter(config, logger) : undefined;
  const recorder = options.recorder ?? reporter?.recorder;
  const { ca, policyDb, ...engine } = config.engine;
  // A reload keeps the cached policies: never forget an enforce policy because a setting changed.
  const store = options.engine?.store ? undefined : policyStoreFor(state, policyDb, previous?.hooks.mtaSts.store);
  const hooks = createMtaStsHooks({
    ...engine,
    ...(ca !== undefined ? { ca } : {}),
    ...(store ? { store } : {}),
    ...options.engine,
    logger,
    ...(recorder ? { recorder } : {}),
  });
  reporter?.start();
  return { config, hooks, reporter, recorder };
}

/**
 * The `[engine] policy_db` store (RFC 8461 §3.3: policies survive a restart; Haraka's workers share the file). Opened
 * at the first load that names it and kept until shutdown: a reload that names another file keeps the open one (a
 * warning says the change applies at the next restart). A database added by a reload receives the policies the
 * running engine holds in memory, so none is forgotten.
 */
function policyStoreFor(state: PluginState, path: string | undefined, previous: PolicyStore | undefined): PolicyStore | undefined {
  if (state.policyStore) {
    if (state.policyStore.path !== path) state.log('warn', `mta-sts: [engine] policy_db ${path === undefined ? 'removed' : `changed to ${path}`}; still using ${state.policyStore.path} until Haraka restarts`);
    return state.policyStore;
  }
  if (path === undefined) return previous;
  const store = createSqlitePolicyStore({ path, logger: libraryLogger(state.log) });
  if (previous instanceof MemoryPolicyStore) {
    for (const domain of previous.domains()) {
      const entry = previous.peek(domain);
      try {
        if (entry) store.set(domain, entry);
      } catch {
        break; // the database is not writable: the store has logged why; the engine keeps reporting it
      }
    }
  }
  state.policyStore = store;
  return store;
}

function closeRuntime(rt: Runtime | undefined): void {
  if (!rt) return;
  void rt.hooks.close().catch(() => undefined);
  void rt.reporter?.close().catch(() => undefined);
}

/** `get_mx`: answers once; anything unexpected defers (fail closed, RFC 8461 §5.1), never lets Haraka go on without the plugin. */
function getMx(state: PluginState, next: HarakaNext, hmail: unknown, domain: string): void {
  const { log } = state;
  let answered = false;
  const reply = ([code, message]: Answer) => {
    if (answered) return;
    answered = true;
    if (code === HARAKA.CONT) next();
    else next(code, message);
  };
  let uuid: string | undefined;
  try {
    uuid = (hmail as HarakaHmail | undefined)?.todo?.uuid;
    if (typeof hmail === 'object' && hmail !== null) removeOverrides(hmail as HarakaHmail);
    const rt = state.runtime;
    if (!rt) throw new Error('plugin not registered');
    decideWithDeadline(rt, hmail as HarakaHmail, domain, state.configError, log).then(reply, (error: unknown) => {
      log('crit', `mta-sts: domain=${domain} action=defer: ${String((error as Error)?.message ?? error)} (fail closed)`, uuid);
      reply([HARAKA.DENYSOFT, `MTA-STS: could not apply the policy of ${domain}; will retry`]);
    });
  } catch (error) {
    log('crit', `mta-sts: domain=${domain} action=defer: ${String((error as Error)?.message ?? error)} (fail closed)`, uuid);
    reply([HARAKA.DENYSOFT, `MTA-STS: could not apply the policy of ${domain}; will retry`]);
  }
}

/** Logs at CRIT when the running Haraka is outside the supported range (feature detection still decides, per message). */
function checkHarakaVersion(plugin: unknown, log: HarakaLog): void {
  let version: unknown;
  try {
    version = (plugin as { haraka_require?: (name: string) => { version?: unknown } }).haraka_require?.('package.json')?.version;
  } catch {
    return;
  }
  if (typeof version !== 'string') return;
  if (isSupportedHarakaVersion(version)) log('info', `mta-sts: Haraka ${version} (supported: ${SUPPORTED_HARAKA_RANGE})`);
  else log('crit', `mta-sts: Haraka ${version} is outside the supported range ${SUPPORTED_HARAKA_RANGE}; mail to enforce domains is deferred whenever the internals the plugin needs are missing`);
}

function createReporter(config: HarakaMtaStsConfig, logger: ReturnType<typeof libraryLogger>): TlsRptReporter {
  const t = config.tlsrpt!;
  return createTlsRptReporter({
    organizationName: t.organizationName,
    contactInfo: t.contactInfo,
    submitter: t.submitter,
    ...(t.db !== undefined ? { store: t.db } : {}),
    ...(t.mailHost !== undefined ? { mailTransport: { host: t.mailHost, port: t.mailPort ?? 25, secure: t.mailSecure ?? false } } : {}),
    ...(t.mailFrom !== undefined ? { mailFrom: t.mailFrom } : {}),
    ...(t.dkim ? { dkim: t.dkim } : {}),
    ...(t.flushDelayMs !== undefined ? { flushDelayMs: t.flushDelayMs } : {}),
    ...(t.checkIntervalMs !== undefined ? { checkIntervalMs: t.checkIntervalMs } : {}),
    ...(config.engine.dnsServers ? { resolver: createDefaultResolver({ dnsServers: config.engine.dnsServers }) } : {}),
    logger,
  });
}

/** {@link decide} within `lookup_timeout_ms`; past it (or on any error) the caller defers. */
async function decideWithDeadline(rt: Runtime, hmail: HarakaHmail, domain: string, configError: MtaStsError | undefined, log: HarakaLog): Promise<Answer> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      controller.abort();
      reject(new Error(`policy lookup did not finish within ${rt.config.lookupTimeoutMs} ms`));
    }, rt.config.lookupTimeoutMs);
  });
  try {
    return await Promise.race([decide(rt, hmail, domain, configError, log, controller.signal), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

async function decide(rt: Runtime, hmail: HarakaHmail, domain: string, configError: MtaStsError | undefined, log: HarakaLog, signal: AbortSignal): Promise<Answer> {
  const uuid = hmail?.todo?.uuid;
  const missing = missingHmailInternals(hmail);
  if (missing.length === 0 && isLastAttempt(hmail)) {
    // RFC 8461 §5.1: the next temporary failure becomes a bounce: check for an updated policy first.
    log('info', `mta-sts: domain=${domain} last attempt: refreshing the policy first (RFC 8461 §5.1)`, uuid);
    await rt.hooks.mtaSts.getPolicy(domain, { refresh: true, signal });
  }
  const plan = await rt.hooks.planDelivery(domain, { signal });
  if (signal.aborted || plan.lookup.error?.code === 'MTASTS_ABORTED') throw new Error(`policy lookup for ${domain} was aborted`);
  const policyText = plan.lookup.policy ? `policy id ${plan.lookup.policy.id}` : `no policy (${plan.lookup.status})`;
  const defer = (level: 'warn' | 'crit', reason: string): Answer => {
    log(level, `mta-sts: domain=${domain} mode=${plan.mode} action=defer: ${reason}`, uuid);
    return [HARAKA.DENYSOFT, `MTA-STS: ${reason}`];
  };
  if (plan.mode !== 'enforce') {
    const observe = plan.mode === 'testing' || rt.recorder !== undefined;
    if (missing.length === 0) installAttempt(hmail, attempt(rt, log, domain, uuid, plan, false), observe);
    else if (plan.mode === 'testing') log('warn', `mta-sts: domain=${domain} mode=testing: Haraka internals missing (${missing.join(', ')}); TLS results not recorded`, uuid);
    log('debug', `mta-sts: domain=${domain} mode=${plan.mode} action=deliver: ${policyText}; Haraka delivers as without MTA-STS`, uuid);
    if (rt.config.mxPort === undefined) return [HARAKA.CONT];
    const entries = await mxEntries(rt, plan.allowed, log, uuid);
    return entries.length > 0 ? [HARAKA.OK, entries] : [HARAKA.CONT];
  }
  if (configError) return defer('crit', `config/mta-sts.ini is invalid (${configError.message}); deferring enforce domains until it is fixed`);
  if (missing.length > 0) return defer('crit', `Haraka internals missing (${missing.join(', ')}): this Haraka is not supported (${SUPPORTED_HARAKA_RANGE}); cannot enforce, deferring`);
  if (plan.allowed.length === 0) {
    if (plan.nullMx) {
      log('warn', `mta-sts: domain=${domain} mode=enforce action=bounce: null MX (RFC 7505)`, uuid);
      return [HARAKA.DENY, `${domain} accepts no mail (null MX, RFC 7505)`];
    }
    return defer('warn', `${plan.noCandidate?.reason ?? `no MX host of ${domain} is permitted`} (RFC 8461 §5.1: deferred, never bounced)`);
  }
  const entries = await mxEntries(rt, plan.allowed, log, uuid);
  if (signal.aborted) throw new Error(`policy lookup for ${domain} was aborted`);
  if (entries.length === 0) return defer('warn', `no address for any MX host permitted by the policy of ${domain}`);
  installAttempt(hmail, attempt(rt, log, domain, uuid, plan, true), true);
  const skipped = plan.candidates.filter((c) => !c.allowed).map((c) => c.host);
  log('info', `mta-sts: domain=${domain} mode=enforce action=deliver: ${policyText}; MX ${plan.allowed.map((c) => c.host).join(', ')}${skipped.length ? `; not in the policy, never contacted: ${skipped.join(', ')}` : ''}`, uuid);
  return [HARAKA.OK, entries];
}

function attempt(rt: Runtime, log: HarakaLog, domain: string, uuid: string | undefined, plan: Attempt['plan'], enforce: boolean): Attempt {
  return { ctx: { hooks: rt.hooks, log, starttlsTimeoutMs: rt.config.starttlsTimeoutMs }, domain, uuid, plan, enforce };
}

/** Haraka MX entries for candidates, in preference order, one per address (the engine's resolver; §4.2 names). */
async function mxEntries(rt: Runtime, candidates: readonly MxCandidate[], log: HarakaLog, uuid: string | undefined): Promise<HarakaMx[]> {
  const resolved = await Promise.all(
    candidates.map(async (c) => {
      try {
        return { c, addresses: await rt.hooks.addressesFor(c) };
      } catch (error) {
        log('warn', `mta-sts: MX ${c.host}: address lookup failed: ${String((error as Error)?.message ?? error)}`, uuid);
        return { c, addresses: [] as string[] };
      }
    }),
  );
  const port = rt.config.mxPort ?? 25;
  return resolved.flatMap(({ c, addresses }) => addresses.map((ip) => ({ exchange: ip, from_dns: c.host, priority: c.priority, port })));
}
