/**
 * The MTA-STS policy file (RFC 8461 §3.2).
 *
 * A policy is a small text file of `key: value` lines served at
 * `https://mta-sts.<domain>/.well-known/mta-sts.txt`: `version: STSv1`, a `mode` (`enforce` refuses delivery to
 * MX hosts that are not listed or cannot be validated; `testing` only reports; `none` withdraws a policy),
 * `max_age` (how long a sender caches it, in seconds) and one `mx` line per allowed MX host pattern.
 * Parsing is pure; fetching lives in discovery.
 */
import { MtaStsError } from '../errors.js';
import { normalizeDomainOrUndefined } from '../domain.js';

export type PolicyMode = 'enforce' | 'testing' | 'none';

/** A parsed policy. */
export interface StsPolicy {
  version: 'STSv1';
  mode: PolicyMode;
  /** `mx` patterns, normalised (lower case A-labels, no trailing dot), in file order, duplicates removed. */
  mx: string[];
  /** Seconds, 0..31557600. */
  maxAge: number;
  /** Extension fields, ignored by the library (§3.2). */
  extensions: Array<{ name: string; value: string }>;
}

/** §3.2: "max_age ... maximum value of 31557600" (one year). */
export const MAX_MAX_AGE = 31_557_600;

const KEY = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/;
const CR = 13;

/** WSP (RFC 5234): space or horizontal tab. */
function isWsp(c: number): boolean {
  return c === 32 || c === 9;
} // §3.2 sts-policy-ext-name
const MAX_AGE = /^[0-9]{1,10}$/; // §3.2 sts-policy-max-age-value = 1*10(DIGIT)

export interface ParsePolicyOptions {
  /** Largest text accepted, in UTF-16 code units. Default 65536 (the fetch limit is enforced on bytes). */
  maxLength?: number;
}

/**
 * Parses policy text. Throws `MTASTS_POLICY_INVALID` when the text does not conform; per §3.3 such a policy is
 * treated exactly like a failed fetch (keep using the cached policy).
 *
 * Decisions where the RFC leaves room:
 * - A `max_age` above 31557600 does not conform and makes the policy invalid (no silent clamping).
 * - Blank lines are tolerated; any other line without `key: value` shape is invalid.
 * - An `mx` pattern that is not a domain or `*.` + domain makes the policy invalid (§3.2 ABNF).
 */
export function parsePolicy(text: string, options: ParsePolicyOptions = {}): StsPolicy {
  if (typeof text !== 'string') throw invalid('policy is not text');
  const maxLength = options.maxLength ?? 65_536;
  if (text.length > maxLength) throw invalid(`policy longer than ${maxLength} characters`);
  let version: string | undefined;
  let mode: string | undefined;
  let maxAgeText: string | undefined;
  const mx: string[] = [];
  const seenMx = new Set<string>();
  const extensions: StsPolicy['extensions'] = [];
  // One pass over the text with index arithmetic: no per-line arrays or regex replacements.
  for (let lineStart = 0, n = 1; lineStart < text.length; n++) {
    // §3.2: lines end in LF or CRLF.
    let lineEnd = text.indexOf('\n', lineStart);
    if (lineEnd === -1) lineEnd = text.length;
    const next = lineEnd + 1;
    if (lineEnd > lineStart && text.charCodeAt(lineEnd - 1) === CR) lineEnd--;
    // Whitespace around the line is tolerated (§3.2 allows *WSP before the terminator).
    let a = lineStart;
    let b = lineEnd;
    while (a < b && isWsp(text.charCodeAt(a))) a++;
    while (b > a && isWsp(text.charCodeAt(b - 1))) b--;
    lineStart = next;
    if (a === b) continue;
    const colon = text.indexOf(':', a);
    if (colon === -1 || colon >= b || colon === a) throw invalid(`line ${n} is not "key: value"`);
    let keyEnd = colon;
    while (keyEnd > a && isWsp(text.charCodeAt(keyEnd - 1))) keyEnd--;
    let valueStart = colon + 1;
    while (valueStart < b && isWsp(text.charCodeAt(valueStart))) valueStart++;
    const key = text.slice(a, keyEnd);
    const value = text.slice(valueStart, b);
    if (!KEY.test(key)) throw invalid(`line ${n} has an invalid key ${JSON.stringify(key.slice(0, 40))}`);
    // Field names and values are case-sensitive (%s in the §3.2 ABNF).
    switch (key) {
      case 'version':
        version ??= value; // §3.2: if a field other than mx appears more than once, the first one wins
        break;
      case 'mode':
        mode ??= value;
        break;
      case 'max_age':
        maxAgeText ??= value;
        break;
      case 'mx': {
        const pattern = normalizeMxPattern(value);
        if (pattern === undefined) throw invalid(`line ${n}: invalid mx pattern ${JSON.stringify(value.slice(0, 80))}`); // §3.2
        if (!seenMx.has(pattern)) {
          seenMx.add(pattern);
          mx.push(pattern);
        }
        break;
      }
      default:
        extensions.push({ name: key, value }); // §3.2: unknown fields are ignored
    }
  }
  // §3.2: version is required and must be STSv1.
  if (version === undefined) throw invalid('missing version');
  if (version !== 'STSv1') throw invalid(`unsupported version ${JSON.stringify(version.slice(0, 40))}`);
  if (mode === undefined) throw invalid('missing mode');
  if (mode !== 'enforce' && mode !== 'testing' && mode !== 'none') throw invalid(`invalid mode ${JSON.stringify(mode.slice(0, 40))}`);
  if (maxAgeText === undefined) throw invalid('missing max_age');
  if (!MAX_AGE.test(maxAgeText)) throw invalid(`invalid max_age ${JSON.stringify(maxAgeText.slice(0, 40))}`);
  const maxAge = Number(maxAgeText);
  if (maxAge > MAX_MAX_AGE) throw invalid(`max_age ${maxAge} exceeds the maximum ${MAX_MAX_AGE}`); // §3.2
  // §3.2: mx is required unless the mode is none.
  if (mode !== 'none' && mx.length === 0) throw invalid(`mode ${mode} requires at least one mx`);
  return { version: 'STSv1', mode, mx, maxAge, extensions };
}

/**
 * Normalises an `mx` pattern: a domain name or `*.` followed by a domain (RFC 8461 §3.2), lower-cased. U-labels are
 * not accepted (the ABNF's `Domain` is ASCII).
 * Returns `undefined` when the value is not a valid pattern.
 */
export function normalizeMxPattern(value: string): string | undefined {
  if (typeof value !== 'string' || value.length === 0 || value.length > 260) return undefined;
  // §3.2: `mx` values are RFC 5321 `Domain`s, ASCII only: an internationalised name must be in A-label form.
  if (!/^[\x21-\x7e]+$/.test(value)) return undefined;
  // A `Domain` has no trailing dot (RFC 5321 §4.1.2), unlike the MX host names it is matched against.
  if (value.endsWith('.')) return undefined;
  if (value.startsWith('*.')) {
    const rest = normalizeDomainOrUndefined(value.slice(2));
    return rest === undefined ? undefined : `*.${rest}`;
  }
  if (value.includes('*')) return undefined;
  return normalizeDomainOrUndefined(value);
}

function invalid(why: string): MtaStsError {
  return new MtaStsError('MTASTS_POLICY_INVALID', `invalid MTA-STS policy: ${why} (RFC 8461 §3.2)`);
}
