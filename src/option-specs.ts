/**
 * The option specs of the engine (`createMtaSts`) and of the TLS reporter (`createTlsRptReporter`), checked with
 * the generic validator of `options.ts`. The integrations (hooks, transport, guard, Haraka) extend the engine's spec
 * with their own options, so an engine option passed through them is checked by the same rule.
 *
 * Adding an option to a factory means adding it here too: an option missing from its spec is refused as unknown.
 */
import { assertPeer } from './peers.js';
import { anyOf, bool, checkOptions, clock, describeValue, invalidOptionsError, dnsServerList, fn, logger, methods, nested, num, pemCertificates, plainObject, port, str, validateOptions, type OptionIssue, type OptionRule, type OptionSpec } from './options.js';

const DAY_MS = 86_400_000;

/** A DNS resolver seam (RFC 8461 §3.1 TXT, §4 MX, A and AAAA). */
export const resolverRule: OptionRule = methods('a DNS resolver', ['resolveTxt', 'resolveMx', 'resolve4', 'resolve6']);

/** An undici Dispatcher (an `Agent`, a `Pool`, ...). */
export const dispatcherRule: OptionRule = methods('an undici Dispatcher (e.g. new Agent())', ['dispatch']);

/** Options of `createMtaSts()`. */
export const ENGINE_OPTION_SPEC: OptionSpec = Object.freeze({
  resolver: resolverRule,
  dnsServers: dnsServerList,
  dnsTimeoutMs: num(1, 600_000, { unit: 'ms' }),
  dnsAnswerCacheMs: num(0, 300_000, { unit: 'ms' }),
  ca: pemCertificates,
  systemRoots: bool,
  dispatcher: dispatcherRule,
  fetchTimeoutMs: num(1, 600_000, { unit: 'ms' }),
  maxPolicyBytes: num(1, 16 * 1024 * 1024, { integer: true, unit: 'bytes' }),
  requireTextPlain: bool,
  store: methods('a policy store', ['get', 'set', 'delete'], ['domains', 'tryLock', 'unlock', 'getFetchFailure', 'setFetchFailure']),
  storeTimeoutMs: num(1, 600_000, { unit: 'ms' }),
  cacheMaxEntries: num(1, 100_000_000, { integer: true }),
  cacheMaxBytes: num(1024 * 1024, 1024 ** 4, { integer: true, unit: 'bytes' }),
  fleetWaitMs: num(0, 600_000, { unit: 'ms' }),
  refreshConcurrency: num(1, 1000, { integer: true }),
  purgeUnusedAfterMs: num(60_000, 10 * 365 * DAY_MS, { unit: 'ms' }),
  now: clock,
  fetchBackoffMs: num(0, 7 * DAY_MS, { unit: 'ms' }),
  txtCheckIntervalMs: num(0, DAY_MS, { unit: 'ms' }),
  refreshIntervalMs: num(0, 7 * DAY_MS, { unit: 'ms' }),
  refreshAfterFraction: num(0, 1),
  maxMxHosts: num(1, 1000, { integer: true }),
  requireTlsEverywhere: bool,
  logger,
  // FOR TESTS ONLY
  httpsPort: port,
});

/** Validates the options of `createMtaSts()` (throws `MTASTS_INVALID_OPTIONS`). */
export function validateEngineOptions(options: unknown): void {
  validateOptions('createMtaSts()', options, ENGINE_OPTION_SPEC);
}

/** Options of `createMtaStsHooks()` (and of the integrations built on the hooks): the engine's, plus the hooks' own. */
export const HOOKS_OPTION_SPEC: OptionSpec = Object.freeze({
  ...ENGINE_OPTION_SPEC,
  mtaSts: methods('an MTA-STS engine (createMtaSts())', ['getPolicy', 'plan']),
  recorder: methods('a TLS-RPT recorder', ['record']),
  plaintextFallback: bool,
});

/**
 * Engine options the hooks themselves use, so they still take effect alongside a shared `mtaSts` engine: the logger,
 * TLS for every domain, the address-lookup deadline and the clock.
 */
const USED_WITH_SHARED_ENGINE: ReadonlySet<string> = new Set(['logger', 'requireTlsEverywhere', 'dnsTimeoutMs', 'now']);

/**
 * Options that would be silently unused, as problems: engine options given alongside a shared `mtaSts` engine (it
 * was created with its own: `{ mtaSts, ca }` would leave the `ca` unused and every policy fetch failing), and, with
 * `hooks` given, the options those hooks were created with (engine options, `mtaSts`, `recorder`, `logger`). An
 * option that is not used must not look as if it were: a misconfiguration fails at creation, never as unprotected
 * or bounced mail.
 */
export function unusedOptionIssues(options: unknown): OptionIssue[] {
  if (typeof options !== 'object' || options === null) return [];
  const given = options as Record<string, unknown>;
  const issues: OptionIssue[] = [];
  const present = (key: string) => Object.prototype.hasOwnProperty.call(given, key) && given[key] !== undefined;
  if (present('hooks')) {
    for (const key of Object.keys(HOOKS_OPTION_SPEC)) {
      if (key === 'plaintextFallback' || !present(key)) continue;
      issues.push({ option: key, value: describeValue(given[key]), expected: 'not set together with hooks', hint: `the hooks given as hooks were created with their own engine, recorder and logger; pass ${key} to createMtaStsHooks() (or to createMtaSts()) instead` });
    }
  } else if (present('mtaSts')) {
    for (const key of Object.keys(ENGINE_OPTION_SPEC)) {
      if (USED_WITH_SHARED_ENGINE.has(key) || !present(key)) continue;
      issues.push({ option: key, value: describeValue(given[key]), expected: 'not set together with mtaSts', hint: `the engine given as mtaSts was created with its own options; pass ${key} to createMtaSts() instead` });
    }
  }
  return issues;
}

/**
 * Validates the options of an integration built on the hooks (hooks, transport, guard): every option against
 * `spec`, and no option that a shared `mtaSts` engine or given `hooks` would leave unused. Throws one
 * `MTASTS_INVALID_OPTIONS` listing every problem.
 */
export function validateIntegrationOptions(factory: string, options: unknown, spec: OptionSpec): void {
  const issues = checkOptions(factory, options, spec);
  // An option already refused for its value is not reported twice.
  const reported = new Set(issues.map((issue) => issue.option));
  issues.push(...unusedOptionIssues(options).filter((issue) => !reported.has(issue.option)));
  if (issues.length > 0) throw invalidOptionsError(factory, issues);
}

/** The options of `options` that `spec` knows (for integrations that hand part of their options on). */
export function pickOptions<T extends object>(options: object, spec: OptionSpec): T {
  return Object.fromEntries(Object.entries(options).filter(([key]) => Object.prototype.hasOwnProperty.call(spec, key))) as T;
}

/** A Nodemailer transporter (`sendMail`), options for `nodemailer.createTransport`, or a connection URL. */
const mailTransportRule: OptionRule = anyOf(
  'a Nodemailer transporter (with sendMail()), SMTP transport options, or an smtp:// / smtps:// URL',
  methods('a transporter', ['sendMail'], ['close']),
  plainObject,
  (value) => (typeof value === 'string' && /^smtps?:\/\//i.test(value) ? undefined : 'a URL'),
);

/** Options of `createTlsRptReporter()`. */
export const TLSRPT_REPORTER_OPTION_SPEC: OptionSpec = Object.freeze({
  organizationName: str(),
  contactInfo: str('an e-mail address'),
  submitter: str('a domain name'),
  store: anyOf('a TLS-RPT store, or the path of its SQLite database file', methods('a TLS-RPT store', ['merge', 'list', 'get', 'setDelivery', 'delete'], ['close', 'subscribe', 'settle', 'mergeMany', 'claim', 'release']), str('a file path')),
  resolver: resolverRule,
  mailTransport: mailTransportRule,
  keepUndeliverable: bool,
  mailFrom: str('an e-mail address'),
  dkim: plainObject,
  transportSignsDkim: bool,
  dispatcher: dispatcherRule,
  ca: pemCertificates,
  httpsTimeoutMs: num(1, 600_000, { unit: 'ms' }),
  sendTimeoutMs: num(1, 3_600_000, { unit: 'ms' }),
  sendConcurrency: num(1, 64, { integer: true }),
  maxDestinationsPerReport: num(1, 1000, { integer: true }),
  allowInternalDestinations: bool,
  dnsTimeoutMs: num(1, 600_000, { unit: 'ms' }),
  now: clock,
  random: fn('a function returning a number in [0, 1)'),
  delayMs: num(0, DAY_MS, { unit: 'ms' }),
  jitterMs: num(0, DAY_MS, { unit: 'ms' }),
  retry: nested({
    attempts: num(1, 1000, { integer: true }),
    baseDelayMs: num(0, 7 * DAY_MS, { unit: 'ms' }),
    maxAgeMs: num(0, 30 * DAY_MS, { unit: 'ms' }),
  }),
  limits: nested({
    maxDomainsPerDay: num(1, Number.MAX_SAFE_INTEGER, { integer: true }),
    maxPoliciesPerDomain: num(1, Number.MAX_SAFE_INTEGER, { integer: true }),
    maxFailureDetailsPerPolicy: num(1, Number.MAX_SAFE_INTEGER, { integer: true }),
    maxFieldLength: num(1, Number.MAX_SAFE_INTEGER, { integer: true }),
    maxPolicyStringLength: num(1, Number.MAX_SAFE_INTEGER, { integer: true }),
  }),
  flushDelayMs: num(0, DAY_MS, { unit: 'ms' }),
  maxUnflushedOutcomes: num(1, 10_000_000, { integer: true }),
  checkIntervalMs: num(10, DAY_MS, { unit: 'ms' }),
  maxReportBytes: num(1, 1024 * 1024 * 1024, { integer: true, unit: 'bytes' }),
  logger,
  onEvent: fn(),
  // FOR TESTS ONLY
  httpsPort: port,
});

/** Options of `createSqliteTlsRptStore()`. */
export const SQLITE_TLSRPT_STORE_OPTION_SPEC: OptionSpec = Object.freeze({
  path: str('a file path'),
  readOnly: bool,
  reportLockMs: num(1000, DAY_MS, { integer: true, unit: 'ms' }),
  retentionMs: num(DAY_MS / 24, 30 * DAY_MS, { integer: true, unit: 'ms' }),
  busyTimeoutMs: num(0, 600_000, { integer: true, unit: 'ms' }),
  now: clock,
  logger,
});

/** Validates the options of `createSqliteTlsRptStore()` (throws `MTASTS_INVALID_OPTIONS`; `path` is required). */
export function validateSqliteTlsRptStoreOptions(options: unknown): void {
  const factory = 'createSqliteTlsRptStore()';
  const issues = checkOptions(factory, options, SQLITE_TLSRPT_STORE_OPTION_SPEC);
  const given = (typeof options === 'object' && options !== null ? options : {}) as Record<string, unknown>;
  if (given.path === undefined) issues.push({ option: 'path', value: 'undefined', expected: 'a file path (required)' });
  if (issues.length > 0) throw invalidOptionsError(factory, issues);
}

const REQUIRED_REPORTER_OPTIONS = ['organizationName', 'contactInfo', 'submitter'] as const;
const REQUIRED_REPORTER_WHAT = { organizationName: 'a non-empty string', contactInfo: 'an e-mail address', submitter: 'a domain name' } as const;

/**
 * Validates the options of `createTlsRptReporter()` (throws `MTASTS_INVALID_OPTIONS`), and, when reports are to be
 * sent by mail (`mailTransport`), checks that Nodemailer is installed (throws `MTASTS_MISSING_PEER`): composing
 * report mail needs it (RFC 8460 §5.3), and finding out when the first report is due, a day later, is too late.
 */
export function validateReporterOptions(options: unknown): void {
  const factory = 'createTlsRptReporter()';
  const issues = checkOptions(factory, options, TLSRPT_REPORTER_OPTION_SPEC);
  const given = (typeof options === 'object' && options !== null ? options : {}) as Record<string, unknown>;
  for (const name of REQUIRED_REPORTER_OPTIONS) {
    if (given[name] === undefined) issues.push({ option: name, value: 'undefined', expected: `${REQUIRED_REPORTER_WHAT[name]} (required)` });
  }
  if (issues.length > 0) throw invalidOptionsError(factory, issues);
  if (given.mailTransport !== undefined) assertPeer('nodemailer', `${factory} with mailTransport (TLS reports by mail, RFC 8460 §5.3)`);
}
