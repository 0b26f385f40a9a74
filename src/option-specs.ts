/**
 * The option specs of the engine (`createMtaSts`) and of the TLS reporter (`createTlsRptReporter`), checked with
 * the generic validator of `options.ts`. The integrations (hooks, transport, guard, Haraka) extend the engine's spec
 * with their own options, so an engine option passed through them is checked by the same rule.
 *
 * Adding an option to a factory means adding it here too: an option missing from its spec is refused as unknown.
 */
import { assertPeer } from './peers.js';
import { anyOf, bool, checkOptions, invalidOptionsError, dnsServerList, fn, logger, methods, nested, num, pemCertificates, plainObject, port, str, validateOptions, type OptionRule, type OptionSpec } from './options.js';

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
  now: fn('a function returning epoch ms'),
  fetchBackoffMs: num(0, 7 * DAY_MS, { unit: 'ms' }),
  txtCheckIntervalMs: num(0, DAY_MS, { unit: 'ms' }),
  refreshIntervalMs: num(0, 7 * DAY_MS, { unit: 'ms' }),
  refreshAfterFraction: num(0, 1),
  maxMxHosts: num(1, 1000, { integer: true }),
  requireTlsEverywhere: bool,
  policyPort: port,
  logger,
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
  store: methods('a TLS-RPT store', ['merge', 'list', 'get', 'setDelivery', 'delete'], ['close', 'subscribe', 'settle']),
  spoolDir: str('a directory path'),
  resolver: resolverRule,
  mailTransport: mailTransportRule,
  keepUndeliverable: bool,
  mailFrom: str('an e-mail address'),
  dkim: plainObject,
  transportSignsDkim: bool,
  dispatcher: dispatcherRule,
  ca: pemCertificates,
  httpsTimeoutMs: num(1, 600_000, { unit: 'ms' }),
  httpsPortOverride: port,
  dnsTimeoutMs: num(1, 600_000, { unit: 'ms' }),
  now: fn('a function returning epoch ms'),
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
});

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
