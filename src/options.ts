/**
 * Option validation shared by every factory (`createMtaSts`, `createMtaStsTransport`, `guardTransport`,
 * `createMtaStsHooks`, `createTlsRptReporter`, the Haraka plugin).
 *
 * A misconfiguration must fail loudly when the object is created, never later as bounced mail or as a policy that
 * is silently not enforced (a `ca` that is not PEM makes every policy fetch fail, and `enforce` domains then go out
 * with opportunistic TLS). So each factory describes all of its options as an {@link OptionSpec} and calls
 * {@link validateOptions}: every key must be known (a typo gets a "did you mean"), and every value must have the
 * expected type and range. All problems of one call are reported together in one {@link MtaStsError} with code
 * `MTASTS_INVALID_OPTIONS`, naming each option, the value given and what was expected.
 *
 * Values are described, never dumped: objects by their keys, long strings cut, URL credentials hidden.
 */
import { isIP } from 'node:net';
import { MtaStsError } from './errors.js';

/** Why a value was refused: what was expected, and optionally a hint for this particular value. */
export interface OptionFailure {
  expected: string;
  hint?: string;
}

/** Where a rule reports nested problems (objects of options inside options). */
export interface RuleContext {
  /** The option's path, e.g. `retry.attempts`. */
  path: string;
  /** Name of the factory, for messages. */
  factory: string;
  issues: OptionIssue[];
}

/** Checks one option value (never `undefined`: an absent option takes its default). Returns a failure, or nothing. */
export type OptionRule = (value: unknown, context: RuleContext) => OptionFailure | string | undefined;

/** Every option a factory accepts, with its rule. */
export type OptionSpec = Readonly<Record<string, OptionRule>>;

/** One problem found in an options object. */
export interface OptionIssue {
  /** The option's path (`ca`, `retry.attempts`). */
  option: string;
  /** A short description of the value given. */
  value: string;
  /** What was expected (or why the option is not accepted here). */
  expected: string;
  hint?: string;
}

/**
 * Checks `options` against `spec` and returns every problem (empty when the options are fine). `undefined` values
 * are accepted for known options (the default applies); unknown keys are problems whatever their value.
 */
export function checkOptions(factory: string, options: unknown, spec: OptionSpec, path = ''): OptionIssue[] {
  const issues: OptionIssue[] = [];
  if (options === undefined) return issues;
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    issues.push({ option: path || 'options', value: describeValue(options), expected: 'an object of options' });
    return issues;
  }
  const known = Object.keys(spec);
  for (const key of Object.keys(options)) {
    const option = path ? `${path}.${key}` : key;
    const rule = Object.prototype.hasOwnProperty.call(spec, key) ? spec[key] : undefined;
    const value = (options as Record<string, unknown>)[key];
    if (!rule) {
      const similar = suggest(key, known);
      issues.push({ option, value: describeValue(value), expected: 'no such option', hint: similar.length > 0 ? `did you mean ${orList(similar.map((s) => (path ? `${path}.${s}` : s)))}?` : `known options: ${known.join(', ')}` });
      continue;
    }
    if (value === undefined) continue;
    const failure = rule(value, { path: option, factory, issues });
    if (failure === undefined) continue;
    const { expected, hint } = typeof failure === 'string' ? { expected: failure, hint: undefined } : failure;
    issues.push({ option, value: describeValue(value), expected, ...(hint ? { hint } : {}) });
  }
  return issues;
}

/**
 * Throws one `MTASTS_INVALID_OPTIONS` {@link MtaStsError} listing every problem of `options`, or returns. The
 * error's `details` name the first problem (`option`, `value`, `expected`) and count them (`problems`).
 */
export function validateOptions(factory: string, options: unknown, spec: OptionSpec): void {
  const issues = checkOptions(factory, options, spec);
  if (issues.length === 0) return;
  throw invalidOptionsError(factory, issues);
}

/** The error for a list of problems (also for factories that find extra problems themselves). */
export function invalidOptionsError(factory: string, issues: readonly OptionIssue[]): MtaStsError {
  const lines = issues.map(formatIssue);
  const message = issues.length === 1 ? `${factory}: ${lines[0]}` : `${factory}: ${issues.length} invalid options: ${lines.join('; ')}`;
  const first = issues[0]!;
  return new MtaStsError('MTASTS_INVALID_OPTIONS', `${message}. Fix the configuration.`, {
    details: { option: first.option, value: first.value, expected: first.expected, problems: issues.length },
  });
}

function formatIssue(issue: OptionIssue): string {
  const head = issue.expected === 'no such option' ? `unknown option ${issue.option}` : `option ${issue.option} must be ${issue.expected}, got ${issue.value}`;
  return issue.hint ? `${head} (${issue.hint})` : head;
}

// ---------------------------------------------------------------------------------------------------------------
// Rules

/** A number in `[min, max]`; `integer` also requires a whole number. NaN and infinities are never accepted. */
export function num(min: number, max: number, opts: { integer?: boolean; unit?: string } = {}): OptionRule {
  const unit = opts.unit ? ` (${opts.unit})` : '';
  const expected = `${opts.integer ? 'an integer' : 'a number'} from ${min} to ${max}${unit}`;
  return (value) => (typeof value === 'number' && Number.isFinite(value) && value >= min && value <= max && (!opts.integer || Number.isInteger(value)) ? undefined : expected);
}

/** `true` or `false`. */
export const bool: OptionRule = (value) => (typeof value === 'boolean' ? undefined : 'true or false');

/** A function. */
export function fn(what = 'a function'): OptionRule {
  return (value) => (typeof value === 'function' ? undefined : what);
}

/**
 * A clock: a function returning epoch milliseconds as a finite number. It is called once at creation: a clock that
 * returns a `Date`, a string or NaN makes every expiry comparison false (RFC 8461 §3.3: every cached policy would
 * look expired, and a DNS outage would then switch `enforce` off), so it is refused here, not discovered later.
 */
export const clock: OptionRule = (value) => {
  const expected = 'a function returning epoch ms';
  if (typeof value !== 'function') return expected;
  let sample: unknown;
  try {
    sample = (value as () => unknown)();
  } catch (error) {
    return { expected, hint: `it threw: ${String(error).slice(0, 100)}` };
  }
  if (typeof sample === 'number' && Number.isFinite(sample)) return undefined;
  const got = sample instanceof Date ? 'a Date (use () => Date.now() or date.getTime())' : typeof sample === 'number' ? String(sample) : `a ${typeof sample}`;
  return { expected, hint: `it returned ${got}; epoch ms is a finite number, e.g. Date.now()` };
};

/** A string, not empty unless `allowEmpty`. */
export function str(what = 'a non-empty string', allowEmpty = false): OptionRule {
  return (value) => (typeof value === 'string' && (allowEmpty || value.trim() !== '') ? undefined : what);
}

/** One of the given strings. */
export function oneOf(...values: string[]): OptionRule {
  return (value) => (typeof value === 'string' && values.includes(value) ? undefined : `one of ${values.map((v) => JSON.stringify(v)).join(', ')}`);
}

/** Any of the given rules. */
export function anyOf(expected: string, ...rules: OptionRule[]): OptionRule {
  return (value, context) => {
    for (const rule of rules) {
      const scratch: RuleContext = { ...context, issues: [] };
      if (rule(value, scratch) === undefined) {
        context.issues.push(...scratch.issues);
        return undefined;
      }
    }
    return expected;
  };
}

/** An object (or function object) with the given methods; `optional` ones must be functions when present. */
export function methods(what: string, required: readonly string[], optional: readonly string[] = []): OptionRule {
  const expected = `${what} with ${listMethods(required)}`;
  return (value) => {
    if ((typeof value !== 'object' && typeof value !== 'function') || value === null) return expected;
    const v = value as Record<string, unknown>;
    const missing = required.filter((m) => typeof v[m] !== 'function');
    const bad = optional.filter((m) => v[m] !== undefined && typeof v[m] !== 'function');
    if (missing.length > 0) return { expected, hint: `missing ${missing.map((m) => `${m}()`).join(', ')}` };
    if (bad.length > 0) return { expected: `${expected}; ${bad.join(', ')} must be a function when present` };
    return undefined;
  };
}

function listMethods(names: readonly string[]): string {
  const list = names.map((n) => `${n}()`);
  if (list.length <= 1) return `a ${list[0] ?? ''} method`;
  return `${list.slice(0, -1).join(', ')} and ${list[list.length - 1]} methods`;
}

/** A logger: an object whose `debug`, `info`, `warn`, `error` (each optional) are functions (console, pino, ...). */
export const logger: OptionRule = methods('a logger (an object like console or pino)', [], ['debug', 'info', 'warn', 'error']);

/** A nested options object, checked against its own spec (problems are reported under `parent.key`). */
export function nested(spec: OptionSpec): OptionRule {
  return (value, context) => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'an object of options';
    context.issues.push(...checkOptions(context.factory, value, spec, context.path));
    return undefined;
  };
}

/** A plain object (no inner checks: options handed on to another library, e.g. Nodemailer's DKIM settings). */
export const plainObject: OptionRule = (value) => (typeof value === 'object' && value !== null && !Array.isArray(value) ? undefined : 'an object');

/** Refuses an option that this factory does not take, with the reason and what to use instead. */
export function notHere(why: string): OptionRule {
  return () => ({ expected: 'not set', hint: why });
}

const PEM_CERTIFICATE = /-----BEGIN (?:TRUSTED )?CERTIFICATE-----[\s\S]+?-----END (?:TRUSTED )?CERTIFICATE-----/;

/** PEM certificate text: a string or Buffer with `-----BEGIN CERTIFICATE-----`, or an array of them (trust roots). */
export const pemCertificates: OptionRule = (value) => {
  const expected = 'PEM certificate text (a string or Buffer containing "-----BEGIN CERTIFICATE-----"), or an array of them';
  const items = Array.isArray(value) ? value : [value];
  if (Array.isArray(value) && value.length === 0) return undefined;
  for (const [index, item] of items.entries()) {
    const at = Array.isArray(value) ? ` (element ${index}: ${describeValue(item)})` : '';
    if (typeof item !== 'string' && !Buffer.isBuffer(item)) return { expected, ...(at ? { hint: `not a string or Buffer${at}` } : {}) };
    const text = typeof item === 'string' ? item : item.toString('latin1');
    if (PEM_CERTIFICATE.test(text)) continue;
    const trimmed = text.trim();
    if (looksLikePath(trimmed)) {
      return { expected, hint: `${JSON.stringify(trimmed.slice(0, 120))} looks like a file path, where the certificate's PEM text is expected: read the file, e.g. fs.readFileSync(path, 'utf8')${at}` };
    }
    return { expected, hint: `no PEM certificate found${at}` };
  }
  return undefined;
};

function looksLikePath(text: string): boolean {
  return text.length > 0 && text.length < 4096 && !text.includes('\n') && (/^(?:[./~]|[A-Za-z]:[\\/])/.test(text) || /\.(?:pem|crt|cer|der|ca-bundle)$/i.test(text));
}

/** DNS servers: an array of `ip`, `ip:port` or `[ipv6]:port` strings. */
export const dnsServerList: OptionRule = (value) => {
  const expected = 'an array of DNS server addresses ("ip", "ip:port" or "[ipv6]:port")';
  if (typeof value === 'string') return { expected, hint: `wrap it in an array: [${JSON.stringify(value)}]` };
  if (!Array.isArray(value)) return expected;
  for (const item of value) {
    if (typeof item !== 'string' || !isServerAddress(item)) return { expected, hint: `${describeValue(item)} is not an IP address with an optional port` };
  }
  return undefined;
};

function isServerAddress(text: string): boolean {
  if (isIP(text) !== 0) return true;
  const bracketed = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text);
  if (bracketed) return isIP(bracketed[1]!) === 6 && isPort(bracketed[2]!);
  const v4 = /^([^:]+):(\d{1,5})$/.exec(text);
  return v4 !== null && isIP(v4[1]!) === 4 && isPort(v4[2]!);
}

function isPort(text: string): boolean {
  const port = Number(text);
  return Number.isInteger(port) && port >= 1 && port <= 65_535;
}

/** An IP address (e.g. a local address to bind to). */
export const ipAddress: OptionRule = (value) => (typeof value === 'string' && isIP(value) !== 0 ? undefined : 'an IP address');

/** A TCP port. */
export const port: OptionRule = num(1, 65_535, { integer: true });

// ---------------------------------------------------------------------------------------------------------------
// Descriptions and suggestions

/** A short, safe description of a value for an error message (objects by their keys, credentials hidden). */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'undefined':
      return 'undefined';
    case 'number':
    case 'boolean':
    case 'bigint':
      return String(value);
    case 'string': {
      const safe = value.replace(/\/\/[^/@\s]*@/g, '//***@');
      return JSON.stringify(safe.length > 80 ? `${safe.slice(0, 77)}...` : safe);
    }
    case 'function':
      return 'a function';
    case 'symbol':
      return 'a symbol';
    default:
      break;
  }
  if (Array.isArray(value)) return value.length <= 4 ? `[${value.map(describeValue).join(', ')}]` : `an array of ${value.length} elements`;
  if (Buffer.isBuffer(value)) return `a Buffer of ${value.length} bytes`;
  const keys = Object.keys(value as object);
  const ctor = (value as { constructor?: { name?: unknown } }).constructor?.name;
  const kind = typeof ctor === 'string' && ctor !== 'Object' && ctor !== '' ? `a ${ctor}` : 'an object';
  if (keys.length === 0) return kind === 'an object' ? '{}' : kind;
  return `${kind} with keys ${keys.slice(0, 6).join(', ')}${keys.length > 6 ? ', ...' : ''}`;
}

/**
 * Known names close to an unknown one: the same ignoring case, a small edit distance (a typo, a missing `s`), or
 * names containing it or contained in it (`timeout` -> `dnsTimeoutMs`, `fetchTimeoutMs`; `storePath` ->
 * `store`). At most three.
 */
export function suggest(unknown: string, known: readonly string[]): string[] {
  const u = unknown.toLowerCase();
  const limit = Math.max(1, Math.min(3, Math.floor(u.length / 3)));
  const scored = known
    .map((name) => {
      const n = name.toLowerCase();
      const distance = editDistance(u, n);
      if (distance <= limit) return { name, score: distance };
      if (u.length >= 4 && n.includes(u)) return { name, score: 10 + n.length - u.length };
      if (n.length >= 4 && u.includes(n)) return { name, score: 10 + u.length - n.length };
      return undefined;
    })
    .filter((s): s is { name: string; score: number } => s !== undefined)
    .sort((a, b) => a.score - b.score || a.name.localeCompare(b.name));
  return scored.slice(0, 3).map((s) => s.name);
}

/** Optimal string alignment distance (Levenshtein plus adjacent transpositions). */
function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3) return 4;
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

/** `a`, `a or b`, `a, b or c`. */
function orList(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} or ${items[items.length - 1]}`;
}
