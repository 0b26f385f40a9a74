/**
 * The MTA-STS TXT record (RFC 8461 §3.1).
 *
 * A domain announces that it has a policy with a TXT record at `_mta-sts.<domain>` such as
 * `v=STSv1; id=20160831085700Z;`. The `id` changes whenever the policy changes, so a sender that has a cached
 * policy only refetches the policy file when the id it sees in DNS differs from the id it fetched for.
 *
 * The parser follows the §3.1 ABNF one function per rule:
 *
 *     sts-text-record = sts-version 1*(sts-field-delim sts-field) [sts-field-delim]
 *     sts-field       = sts-id / sts-extension
 *     sts-field-delim = *WSP ";" *WSP
 *     sts-version     = %s"v=STSv1"
 *     sts-id          = %s"id=" 1*32(ALPHA / DIGIT)
 *     sts-extension   = sts-ext-name "=" sts-ext-value
 *     sts-ext-name    = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
 *     sts-ext-value   = 1*(%x21-3A / %x3C / %x3E-7E)
 *
 * Decisions where the RFC leaves room (the library's full list: docs/conformance.md, "Decisions where the RFC leaves
 * a choice"): a field named `id` is the sts-id and must be valid wherever it appears; when
 * it appears more than once, the first one counts (§3.2: "all entries except for the first SHALL be ignored");
 * whitespace after the last field is tolerated. Parsing is pure and separate from the lookup.
 */
import { MtaStsError } from '../errors.js';
import { Cursor, fieldDelim, isAlphaDigit, isExtNameChar, isTxtExtValueChar } from './abnf.js';

/** A parsed `_mta-sts` TXT record. */
export interface StsTxtRecord {
  /** Always `STSv1`. */
  version: 'STSv1';
  /** 1–32 characters of `[A-Za-z0-9]`. */
  id: string;
  /** Extension fields (`name=value`), in order; ignored by the library (§3.1). */
  extensions: Array<{ name: string; value: string }>;
}

/** Longest TXT text the parser accepts. Real records are under 100 bytes; this bounds the work per record. */
export const MAX_TXT_RECORD_LENGTH = 4096;

/**
 * True when the TXT text is an STS record at all: it begins with `sts-version sts-field-delim`, i.e. `v=STSv1`
 * (exact case) then optional whitespace and `;` (RFC 8461 §3.1). Other records are discarded and do not count
 * towards "exactly one"; `v=STSv1 ; id=1` is an STS record, a bare `v=STSv1` or `v=STSv10;` is not.
 */
export function isStsTxtRecord(text: string): boolean {
  if (typeof text !== 'string') return false;
  const cursor = new Cursor(text, invalid);
  return stsVersion(cursor) && stsFieldDelim(cursor);
}

/**
 * Parses the text of one STS TXT record (its character-strings already concatenated, §3.1).
 * Throws `MTASTS_TXT_INVALID` for a record that does not conform to the §3.1 ABNF or has no `id`.
 */
export function parseStsTxtRecord(text: string): StsTxtRecord {
  if (typeof text !== 'string') throw invalid('record is not a string');
  if (text.length > MAX_TXT_RECORD_LENGTH) throw invalid(`record longer than ${MAX_TXT_RECORD_LENGTH} characters`);
  return stsTextRecord(new Cursor(text, invalid));
}

/** §3.1 `sts-text-record = sts-version 1*(sts-field-delim sts-field) [sts-field-delim]`. */
function stsTextRecord(cursor: Cursor): StsTxtRecord {
  if (!stsVersion(cursor)) cursor.fail('record does not begin with "v=STSv1"');
  const record: { id?: string; extensions: StsTxtRecord['extensions'] } = { extensions: [] };
  let fields = 0;
  while (stsFieldDelim(cursor)) {
    if (cursor.done) break; // the optional trailing sts-field-delim
    stsField(cursor, record);
    fields++;
  }
  if (fields === 0 && cursor.done) cursor.fail('no field after "v=STSv1"');
  cursor.skipWsp(); // tolerated: whitespace after the last field (invisible in most DNS tools)
  if (!cursor.done) cursor.fail(`expected ";" between fields, found ${cursor.near()}`);
  if (record.id === undefined) cursor.fail('missing id field'); // §3.1: sts-id is required
  return { version: 'STSv1', id: record.id, extensions: record.extensions };
}

/** §3.1 `sts-version = %s"v=STSv1"` (case-sensitive). */
function stsVersion(cursor: Cursor): boolean {
  return cursor.tryTake('v=STSv1');
}

/** §3.1 `sts-field-delim = *WSP ";" *WSP` (the same rule as RFC 8460 §3 `field-delim`). Leaves the cursor unchanged when there is no ";". */
function stsFieldDelim(cursor: Cursor): boolean {
  return fieldDelim(cursor);
}

/** §3.1 `sts-field = sts-id / sts-extension`: the name decides which. */
function stsField(cursor: Cursor, record: { id?: string; extensions: StsTxtRecord['extensions'] }): void {
  const name = stsExtName(cursor);
  if (!cursor.tryTake('=')) cursor.fail(`expected "=" after field name ${JSON.stringify(name)}, found ${cursor.near()}`);
  if (name === 'id') {
    const id = stsIdValue(cursor);
    record.id ??= id; // the first id counts; later ones are ignored (§3.2)
  } else {
    record.extensions.push({ name, value: stsExtValue(cursor) });
  }
}

/** §3.1 `sts-id = %s"id=" 1*32(ALPHA / DIGIT)`: the part after `id=`, which must end the field. */
function stsIdValue(cursor: Cursor): string {
  const id = cursor.takeWhile(isAlphaDigit, 33);
  const next = cursor.peek();
  if (id.length === 0 || id.length > 32 || (!cursor.done && next !== 0x3b && next !== 0x20 && next !== 0x09)) {
    cursor.fail(`invalid id ${JSON.stringify(id + cursor.takeWhile(isTxtExtValueChar, 40))}: must be 1-32 letters and digits`);
  }
  return id;
}

/** §3.1 `sts-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")`. */
function stsExtName(cursor: Cursor): string {
  if (!isAlphaDigit(cursor.peek())) cursor.fail(`expected a field name, found ${cursor.near()}`);
  const name = cursor.takeWhile(isExtNameChar, 33);
  if (name.length > 32) cursor.fail(`field name longer than 32 characters: ${JSON.stringify(name)}`);
  return name;
}

/** §3.1 `sts-ext-value = 1*(%x21-3A / %x3C / %x3E-7E)` (no space, ";" or "="). */
function stsExtValue(cursor: Cursor): string {
  const value = cursor.takeWhile(isTxtExtValueChar);
  if (value.length === 0) cursor.fail(`expected a field value, found ${cursor.near()}`);
  return value;
}

/**
 * Selects the STS record among all TXT records at `_mta-sts.<domain>` (each given as its list of
 * character-strings). Returns `undefined` when there is none; throws `MTASTS_TXT_MULTIPLE` when there is more
 * than one (§3.1: the domain then has no usable record) and `MTASTS_TXT_INVALID` when the one record is malformed.
 */
export function selectStsTxtRecord(records: ReadonlyArray<ReadonlyArray<string> | string>): StsTxtRecord | undefined {
  let found: string | undefined;
  let count = 0;
  for (const record of records) {
    // §3.1: a record split into several strings is concatenated without separators.
    const text = typeof record === 'string' ? record : record.join('');
    if (!isStsTxtRecord(text)) continue; // §3.1: non-STS records are discarded
    count++;
    found = text;
  }
  if (count === 0 || found === undefined) return undefined;
  if (count > 1) throw new MtaStsError('MTASTS_TXT_MULTIPLE', `found ${count} STS TXT records; exactly one is required (RFC 8461 §3.1)`);
  return parseStsTxtRecord(found);
}

function invalid(why: string): MtaStsError {
  return new MtaStsError('MTASTS_TXT_INVALID', `invalid MTA-STS TXT record: ${why} (RFC 8461 §3.1)`);
}
