/**
 * The MTA-STS TXT record (RFC 8461 §3.1).
 *
 * A domain announces that it has a policy with a TXT record at `_mta-sts.<domain>` such as
 * `v=STSv1; id=20160831085700Z;`. The `id` changes whenever the policy changes, so a sender that has a cached
 * policy only refetches the policy file when the id it sees in DNS differs from the id it fetched for.
 * Parsing is pure and separate from the lookup so tools can validate records on their own.
 */
import { MtaStsError } from '../errors.js';

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

const ID = /^[A-Za-z0-9]{1,32}$/; // §3.1 sts-id = %s"id=" 1*32(ALPHA / DIGIT)
const EXT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/; // §3.1 sts-ext-name
const EXT_VALUE = /^[\x21-\x3a\x3c\x3e-\x7e]+$/; // §3.1 sts-ext-value: VCHAR except ";" and "="

/**
 * True when the TXT text is an STS record at all, i.e. it begins with exactly `v=STSv1;`. RFC 8461 §3.1: records
 * that do not begin so are discarded (they do not count towards "exactly one"); `v=STSv1 ;` and a bare `v=STSv1`
 * do not begin so.
 */
export function isStsTxtRecord(text: string): boolean {
  return text.startsWith('v=STSv1;'); // §3.1: version first, exact case, immediately followed by ";"
}

/**
 * Parses the text of one STS TXT record (its character-strings already concatenated, §3.1).
 * Throws `MTASTS_TXT_INVALID` for a record that begins with `v=STSv1` but does not conform.
 */
export function parseStsTxtRecord(text: string): StsTxtRecord {
  if (typeof text !== 'string') throw invalid('record is not a string');
  if (text.length > MAX_TXT_RECORD_LENGTH) throw invalid(`record longer than ${MAX_TXT_RECORD_LENGTH} characters`);
  if (!isStsTxtRecord(text)) throw invalid('record does not begin with "v=STSv1;"');
  // §3.1 sts-sep = *WSP ";" *WSP. Fields are "name=value"; a trailing separator is allowed.
  const fields = text.split(';');
  let id: string | undefined;
  const extensions: StsTxtRecord['extensions'] = [];
  for (let i = 1; i < fields.length; i++) {
    const field = trimWsp(fields[i] ?? '');
    if (field === '') {
      if (i === fields.length - 1) break; // optional trailing ";"
      throw invalid('empty field');
    }
    const eq = field.indexOf('=');
    if (eq <= 0) throw invalid(`field without "=": ${JSON.stringify(field.slice(0, 40))}`);
    const name = trimWsp(field.slice(0, eq));
    const value = trimWsp(field.slice(eq + 1));
    if (name === 'id') {
      // §3.1: the id is required and is 1*32(ALPHA / DIGIT). The first occurrence counts.
      if (id !== undefined) continue;
      if (!ID.test(value)) throw invalid(`invalid id ${JSON.stringify(value.slice(0, 40))}: must be 1-32 letters and digits`);
      id = value;
    } else {
      // §3.1: extension fields are allowed and ignored, but must be well-formed.
      if (!EXT_NAME.test(name) || !EXT_VALUE.test(value)) throw invalid(`malformed field ${JSON.stringify(field.slice(0, 40))}`);
      extensions.push({ name, value });
    }
  }
  if (id === undefined) throw invalid('missing id field'); // §3.1
  return { version: 'STSv1', id, extensions };
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
    if (!isStsTxtRecord(text)) continue; // §3.1: non-STS records are ignored
    count++;
    found = text;
  }
  if (count === 0 || found === undefined) return undefined;
  if (count > 1) throw new MtaStsError('MTASTS_TXT_MULTIPLE', `found ${count} STS TXT records; exactly one is required (RFC 8461 §3.1)`);
  return parseStsTxtRecord(found);
}

function trimWsp(s: string): string {
  return s.replace(/^[ \t]+|[ \t]+$/g, '');
}

function invalid(why: string): MtaStsError {
  return new MtaStsError('MTASTS_TXT_INVALID', `invalid MTA-STS TXT record: ${why} (RFC 8461 §3.1)`);
}
