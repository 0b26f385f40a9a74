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
import { Cursor, isAlphaDigit, isExtNameChar } from './abnf.js';

export type PolicyMode = 'enforce' | 'testing' | 'none';

/**
 * The fields of a policy file (RFC 8461 §3.2), as {@link parsePolicy} returns them: what the domain published,
 * without the TXT `id` or any time. The policy in force for a domain is an `ActivePolicy`; a store keeps a
 * `PolicyStoreEntry`.
 */
export interface PolicyFile {
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

/** Default of {@link ParsePolicyOptions.maxBytes}: RFC 8461 §3.3 suggests accepting policies up to 64 KiB. */
export const DEFAULT_MAX_POLICY_BYTES = 65_536;

export interface ParsePolicyOptions {
  /**
   * Largest policy accepted, in UTF-8 bytes. Default 65536 (RFC 8461 §3.3). The engine passes its
   * `maxPolicyBytes`, so raising that option raises this limit too.
   */
  maxBytes?: number;
}

/**
 * Parses policy text. Throws `MTASTS_POLICY_INVALID` when the text does not conform; per §3.3 such a policy is
 * treated exactly like a failed fetch (keep using the cached policy).
 *
 * The parser follows the §3.2 ABNF one function per rule:
 *
 *     sts-policy-record      = sts-policy-field *WSP *(sts-policy-term sts-policy-field *WSP) [sts-policy-term]
 *     sts-policy-field       = sts-policy-version / sts-policy-mode / sts-policy-max-age / sts-policy-mx /
 *                              sts-policy-extension
 *     sts-policy-field-delim = ":" *WSP
 *     sts-policy-ext-name    = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
 *     sts-policy-ext-value   = sts-policy-vchar [*(%x20 / sts-policy-vchar) sts-policy-vchar]
 *     sts-policy-term        = LF / CRLF
 *
 * Field names and values are case-sensitive (%s). Decisions where the RFC leaves room (the library's full list:
 * docs/conformance.md, "Decisions where the RFC leaves a choice"):
 * - A field other than `mx` that appears more than once: the first occurrence counts, later ones are ignored
 *   (§3.2), though each line must still be a well-formed field.
 * - A `max_age` above 31557600 does not conform and makes the policy invalid (no silent clamping).
 * - Blank (or whitespace-only) lines are tolerated; any other line that is not `name:` value is invalid, including
 *   whitespace before the name or before the `:` (the ABNF allows whitespace only after `:` and at the line end).
 * - An `mx` pattern that is not a domain or `*.` + domain makes the policy invalid (§3.2 ABNF).
 *
 * @throws {MtaStsError} `MTASTS_POLICY_INVALID`; `MTASTS_INVALID_OPTIONS` for a `maxBytes` that is not a positive integer.
 */
export function parsePolicy(text: string, options: ParsePolicyOptions = {}): PolicyFile {
  if (typeof text !== 'string') throw invalid('policy is not text');
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_POLICY_BYTES;
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) {
    throw new MtaStsError('MTASTS_INVALID_OPTIONS', `parsePolicy: maxBytes must be a positive integer (bytes), got ${String(maxBytes)}`);
  }
  // A UTF-16 code unit is at least one UTF-8 byte and at most three: count bytes only when it can matter.
  if (text.length > maxBytes || (text.length * 3 > maxBytes && Buffer.byteLength(text, 'utf8') > maxBytes)) {
    throw invalid(`policy larger than ${maxBytes} bytes`);
  }
  return stsPolicyRecord(new Cursor(text, invalid));
}

/** What the fields of a policy said so far. */
interface PolicyFields {
  version?: 'STSv1';
  mode?: PolicyMode;
  maxAge?: number;
  mx: string[];
  mxSeen: Set<string>;
  extensions: PolicyFile['extensions'];
  /** Names of the non-`mx` fields seen: later occurrences are ignored (§3.2). */
  seen: Set<string>;
}

/** §3.2 `sts-policy-record = sts-policy-field *WSP *(sts-policy-term sts-policy-field *WSP) [sts-policy-term]`. */
function stsPolicyRecord(cursor: Cursor): PolicyFile {
  const fields: PolicyFields = { mx: [], mxSeen: new Set(), extensions: [], seen: new Set() };
  for (let line = 1; !cursor.done; line++) {
    if (blankLine(cursor)) continue;
    stsPolicyField(cursor, fields, line);
    cursor.skipWsp();
    if (!cursor.done && !stsPolicyTerm(cursor)) cursor.fail(`line ${line}: unexpected ${cursor.near()} after the value`);
  }
  return requiredFields(fields);
}

/** Tolerated (a decision, see {@link parsePolicy}): an empty or whitespace-only line, with its terminator. */
function blankLine(cursor: Cursor): boolean {
  const start = cursor.pos;
  cursor.skipWsp();
  if (stsPolicyTerm(cursor)) return true;
  if (cursor.done) return true;
  cursor.pos = start;
  return false;
}

/** §3.2 `sts-policy-term = LF / CRLF`. */
function stsPolicyTerm(cursor: Cursor): boolean {
  return cursor.tryTake('\n') || cursor.tryTake('\r\n');
}

/**
 * §3.2 `sts-policy-field`: a name (every field name, `version`, `mode`, `max_age`, `mx` included, is an
 * `sts-policy-ext-name`), `sts-policy-field-delim`, and a value, which the named field's own rule then narrows.
 */
function stsPolicyField(cursor: Cursor, fields: PolicyFields, line: number): void {
  const name = stsPolicyExtName(cursor, line);
  stsPolicyFieldDelim(cursor, line, name);
  const value = stsPolicyExtValue(cursor, line, name);
  if (name === 'mx') {
    const pattern = stsPolicyMxValue(value) ?? cursor.fail(`line ${line}: invalid mx pattern ${JSON.stringify(value.slice(0, 80))}`);
    if (!fields.mxSeen.has(pattern)) {
      fields.mxSeen.add(pattern);
      fields.mx.push(pattern);
    }
    return;
  }
  if (fields.seen.has(name)) return; // §3.2: "all entries except for the first SHALL be ignored"
  fields.seen.add(name);
  if (name === 'version') fields.version = stsPolicyVersionValue(value) ?? cursor.fail(`line ${line}: unsupported version ${JSON.stringify(value.slice(0, 40))}`);
  else if (name === 'mode') fields.mode = stsPolicyModeValue(value) ?? cursor.fail(`line ${line}: invalid mode ${JSON.stringify(value.slice(0, 40))}`);
  else if (name === 'max_age') fields.maxAge = stsPolicyMaxAgeValue(value) ?? cursor.fail(`line ${line}: invalid max_age ${JSON.stringify(value.slice(0, 40))}: 1 to 10 digits, at most ${MAX_MAX_AGE}`);
  else fields.extensions.push({ name, value }); // §3.2: unknown fields are ignored
}

/** §3.2 `sts-policy-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")`. */
function stsPolicyExtName(cursor: Cursor, line: number): string {
  if (!isAlphaDigit(cursor.peek())) cursor.fail(`line ${line} does not begin with a field name: ${cursor.near()}`);
  const name = cursor.takeWhile(isExtNameChar, 33);
  if (name.length > 32) cursor.fail(`line ${line}: field name longer than 32 characters`);
  return name;
}

/** §3.2 `sts-policy-field-delim = ":" *WSP` (no whitespace before the colon). */
function stsPolicyFieldDelim(cursor: Cursor, line: number, name: string): void {
  if (!cursor.tryTake(':')) cursor.fail(`line ${line}: expected ":" right after ${JSON.stringify(name)}, found ${cursor.near()}`);
  cursor.skipWsp();
}

/** §3.2 `sts-policy-vchar = %x21-7E / UTF8-2 / UTF8-3 / UTF8-4` (the text is already decoded from UTF-8). */
function isPolicyVchar(c: number): boolean {
  return (c >= 0x21 && c <= 0x7e) || c >= 0x80;
}

/** A character inside an `sts-policy-ext-value`: SP or sts-policy-vchar. */
function isPolicyValueChar(c: number): boolean {
  return c === 0x20 || isPolicyVchar(c);
}

/**
 * §3.2 `sts-policy-ext-value = sts-policy-vchar [*(%x20 / sts-policy-vchar) sts-policy-vchar]`: no leading or
 * trailing space (trailing spaces belong to the line's `*WSP`), no tab or other control character inside.
 */
function stsPolicyExtValue(cursor: Cursor, line: number, name: string): string {
  const start = cursor.pos;
  cursor.skipWhile(isPolicyValueChar);
  while (cursor.pos > start && cursor.text.charCodeAt(cursor.pos - 1) === 0x20) cursor.pos--;
  if (cursor.pos === start) cursor.fail(`line ${line}: missing value for ${JSON.stringify(name)}`);
  return cursor.text.slice(start, cursor.pos);
}

/** §3.2 `sts-policy-version-value = %s"STSv1"`. */
function stsPolicyVersionValue(value: string): 'STSv1' | undefined {
  return value === 'STSv1' ? 'STSv1' : undefined;
}

/** §3.2 `sts-policy-mode-value = %s"testing" / %s"enforce" / %s"none"`. */
function stsPolicyModeValue(value: string): PolicyMode | undefined {
  return value === 'enforce' || value === 'testing' || value === 'none' ? value : undefined;
}

/** §3.2 `sts-policy-max-age-value = 1*10(DIGIT)`, and "a maximum value of 31557600" (one year). */
function stsPolicyMaxAgeValue(value: string): number | undefined {
  if (!MAX_AGE_VALUE.test(value)) return undefined;
  const maxAge = Number(value);
  return maxAge <= MAX_MAX_AGE ? maxAge : undefined;
}

const MAX_AGE_VALUE = /^[0-9]{1,10}$/;

/** §3.2 `sts-policy-mx-value = ["*."] Domain`, normalised (see {@link normalizeMxPattern}). */
function stsPolicyMxValue(value: string): string | undefined {
  return normalizeMxPattern(value);
}

/** §3.2: version, mode and max_age are required; mx is required unless the mode is `none`. */
function requiredFields(fields: PolicyFields): PolicyFile {
  const { version, mode, maxAge, mx, extensions } = fields;
  if (version === undefined) throw invalid('missing version');
  if (mode === undefined) throw invalid('missing mode');
  if (maxAge === undefined) throw invalid('missing max_age');
  if (mode !== 'none' && mx.length === 0) throw invalid(`mode ${mode} requires at least one mx`);
  return { version, mode, mx, maxAge, extensions };
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
