/**
 * Discovery of a domain's TLS reporting policy (RFC 8460 §3).
 *
 * A domain that wants TLS reports publishes a TXT record at `_smtp._tls.<domain>` such as
 * `v=TLSRPTv1; rua=mailto:tlsrpt@example.com,https://reports.example.com/v1`. The record must begin with
 * `v=TLSRPTv1`; records that do not are discarded, and unless exactly one record remains the sender MUST assume
 * the domain does not implement TLSRPT. A record split into several character-strings is their concatenation
 * without spaces. `rua` holds one or more comma-separated `mailto:` or `https:` URIs, in which commas, `!` and
 * `;` are percent-encoded. Unknown fields are ignored, but must be syntactically valid.
 *
 * {@link parseTlsRptRecord} is pure and throws only {@link TlsRptError}. {@link lookupTlsRptRecord} asks DNS through
 * the injected {@link DnsResolver}: NXDOMAIN / NODATA mean "no record" (`undefined`), SERVFAIL and timeouts are a
 * temporary error (`TLSRPT_DNS_TEMPORARY`), never "no record".
 */
import { normalizeDomainOrUndefined } from '../domain.js';
import { createDefaultResolver, queryDns, type DnsResolver } from '../discovery/resolver.js';
import { Cursor, fieldDelim, isAlphaDigit, isExtNameChar, isTxtExtValueChar, isWsp, wspDelimiter } from '../policy/abnf.js';
import { TlsRptError } from './errors.js';

/** A destination the report can be sent to. `uri` is the URI as published. */
export type TlsRptDestination =
  | { kind: 'mailto'; uri: string; /** The decoded addr-spec. */ address: string }
  | { kind: 'https'; uri: string; /** The parsed URL (`URL.href`). */ url: string };

/** A `rua` URI that was skipped, and why. */
export interface TlsRptIgnoredUri {
  uri: string;
  reason: string;
}

/** A parsed TLSRPT policy record. */
export interface TlsRptRecord {
  version: 'TLSRPTv1';
  /** Supported destinations, in published order. Never empty. */
  rua: TlsRptDestination[];
  /** `rua` URIs with another scheme or an invalid syntax, skipped (the valid ones are kept). */
  ignored: TlsRptIgnoredUri[];
  /** Unknown fields (§3: ignored, but they had to be syntactically valid). */
  extensions: Record<string, string>;
  /** The record text (character-strings concatenated). */
  raw: string;
}

/** Longest record text accepted; far above anything real (a TXT RR holds at most 65535 bytes). */
const MAX_RECORD_LENGTH = 65_535;

// RFC 3986 URI characters without "," "!" and ";" (§3: they MUST be percent-encoded) and without whitespace.
const URI_CHARS = /^[A-Za-z0-9\-._~:/?#[\]@$&'()*+=%]+$/;
const BAD_PERCENT = /%(?![0-9A-Fa-f]{2})/;
const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):/;
const LOCAL_PART = /^[^\s@<>(),;:\\"[\]]+$|^"(?:[^"\\\r\n]|\\.)+"$/;

/**
 * True when a TXT record text is a TLSRPT record candidate: it begins with `tlsrpt-version` followed by a
 * `field-delim` (`*WSP ";"`) or by nothing (RFC 8460 §3). Other records at `_smtp._tls` are discarded.
 */
export function isTlsRptRecordCandidate(txt: string): boolean {
  if (typeof txt !== 'string') return false;
  const cursor = new Cursor(txt, invalid);
  if (!tlsrptVersion(cursor)) return false;
  cursor.skipWsp();
  return cursor.done || cursor.peek() === 0x3b;
}

/**
 * Parses one TLSRPT record (RFC 8460 §3), one function per rule of the ABNF:
 *
 *     tlsrpt-record    = tlsrpt-version 1*(field-delim tlsrpt-field) [field-delim]
 *     field-delim      = *WSP ";" *WSP
 *     tlsrpt-field     = tlsrpt-rua / tlsrpt-extension
 *     tlsrpt-version   = %s"v=TLSRPTv1"
 *     tlsrpt-rua       = %s"rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)
 *     tlsrpt-uri       = URI  ; with "," "!" and ";" percent-encoded
 *     tlsrpt-extension = tlsrpt-ext-name "=" tlsrpt-ext-value
 *     tlsrpt-ext-name  = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
 *     tlsrpt-ext-value = 1*(%x21-3A / %x3C / %x3E-7E)
 *
 * - `rua` must appear exactly once; each URI is percent-decoded as its scheme requires (`mailto:` addresses are
 *   decoded, `https:` URLs are kept encoded); URIs of other schemes, or invalid ones, are listed in `ignored` and
 *   the valid ones kept;
 * - unknown fields are ignored but must be well-formed (the first occurrence of a name is kept);
 * - whitespace after the last field is tolerated (it is invisible in most DNS tools).
 *
 * Pure; throws nothing but {@link TlsRptError}.
 *
 * @throws {TlsRptError} `TLSRPT_RECORD_INVALID` when the record is malformed or has no supported `rua` URI.
 */
export function parseTlsRptRecord(txt: string): TlsRptRecord {
  if (typeof txt !== 'string') throw invalid('the record is not a string');
  if (txt.length > MAX_RECORD_LENGTH) throw invalid(`the record is longer than ${MAX_RECORD_LENGTH} characters`);
  return tlsrptRecord(new Cursor(txt, invalid));
}

/** What the fields of a record said so far. */
interface RecordFields {
  rua?: string[];
  extensions: Record<string, string>;
}

/** §3 `tlsrpt-record = tlsrpt-version 1*(field-delim tlsrpt-field) [field-delim]`. */
function tlsrptRecord(cursor: Cursor): TlsRptRecord {
  // §3: records that do not begin with "v=TLSRPTv1" are not TLSRPT records.
  if (!tlsrptVersion(cursor)) cursor.fail('the record does not begin with v=TLSRPTv1');
  const fields: RecordFields = { extensions: {} };
  let count = 0;
  while (fieldDelim(cursor)) {
    if (cursor.done) break; // the optional trailing field-delim
    tlsrptField(cursor, fields);
    count++;
  }
  cursor.skipWsp();
  if (!cursor.done) cursor.fail(`expected ";" between fields, found ${cursor.near()}`);
  if (count === 0) cursor.fail('the record has no fields after v=TLSRPTv1');
  if (fields.rua === undefined) cursor.fail('the record has no rua field'); // §3: the record MUST include tlsrpt-rua
  return { version: 'TLSRPTv1', ...destinations(fields.rua), extensions: fields.extensions, raw: cursor.text };
}

/** §3 `tlsrpt-version = %s"v=TLSRPTv1"` (case-sensitive). */
function tlsrptVersion(cursor: Cursor): boolean {
  return cursor.tryTake('v=TLSRPTv1');
}

/** §3 `tlsrpt-field = tlsrpt-rua / tlsrpt-extension`: the name decides which. */
function tlsrptField(cursor: Cursor, fields: RecordFields): void {
  const name = tlsrptExtName(cursor);
  if (!cursor.tryTake('=')) cursor.fail(`malformed field ${JSON.stringify(name)}: expected "=", found ${cursor.near()}`);
  if (name === 'rua') {
    // §3: %s"rua=" is case-sensitive; it is required and may appear once.
    if (fields.rua !== undefined) cursor.fail('the record has more than one rua field');
    fields.rua = tlsrptRuaValue(cursor);
    return;
  }
  // §3: unknown fields SHALL be ignored, but only when syntactically valid.
  const value = tlsrptExtValue(cursor, name);
  if (!Object.prototype.hasOwnProperty.call(fields.extensions, name)) fields.extensions[name] = value;
}

/** §3 `tlsrpt-rua` after `rua=`: `tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)`; each URI as published, maybe empty. */
function tlsrptRuaValue(cursor: Cursor): string[] {
  const uris = [tlsrptUri(cursor)];
  while (wspDelimiter(cursor, ',')) uris.push(tlsrptUri(cursor));
  return uris;
}

/**
 * §3 `tlsrpt-uri`: the characters up to whitespace, "," or ";" (which a URI must percent-encode). Whether they
 * form a supported URI is judged per URI by {@link parseRuaUri}, so one bad URI does not hide the good ones.
 */
function tlsrptUri(cursor: Cursor): string {
  return cursor.takeWhile(isUriTokenChar);
}

/** Not a separator of `tlsrpt-rua` or `tlsrpt-record`: neither ",", ";" nor WSP. */
function isUriTokenChar(c: number): boolean {
  return c !== 0x2c && c !== 0x3b && !isWsp(c);
}

/** §3 `tlsrpt-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")`. */
function tlsrptExtName(cursor: Cursor): string {
  if (!isAlphaDigit(cursor.peek())) cursor.fail(`malformed field: expected a field name, found ${cursor.near()}`);
  const name = cursor.takeWhile(isExtNameChar, 33);
  if (name.length > 32) cursor.fail(`field name longer than 32 characters: ${quote(name)}`);
  return name;
}

/** §3 `tlsrpt-ext-value = 1*(%x21-3A / %x3C / %x3E-7E)`: ends the field. */
function tlsrptExtValue(cursor: Cursor, name: string): string {
  const value = cursor.takeWhile(isTxtExtValueChar);
  const next = cursor.peek();
  if (value.length === 0 || (!cursor.done && next !== 0x3b && !isWsp(next))) {
    cursor.fail(`field ${name} has an invalid value ${quote(value + cursor.text.slice(cursor.pos, cursor.pos + 40))}`);
  }
  return value;
}

/** Sorts the `rua` URIs into supported destinations and ignored ones; at least one must be supported (§3). */
function destinations(uris: readonly string[]): Pick<TlsRptRecord, 'rua' | 'ignored'> {
  const rua: TlsRptDestination[] = [];
  const ignored: TlsRptIgnoredUri[] = [];
  for (const uri of uris) {
    const result = parseRuaUri(uri);
    if ('reason' in result) ignored.push({ uri, reason: result.reason });
    else rua.push(...result.destinations);
  }
  if (rua.length === 0) {
    throw invalid(`the record has no supported rua URI (${ignored.map((i) => `${quote(i.uri)}: ${i.reason}`).join('; ')})`, {
      ignored: ignored.length,
    });
  }
  return { rua, ignored };
}

function parseRuaUri(uri: string): { destinations: TlsRptDestination[] } | { reason: string } {
  if (uri === '') return { reason: 'empty URI' };
  // §3: commas, exclamation points and semicolons inside a URI MUST be percent-encoded.
  if (!URI_CHARS.test(uri) || BAD_PERCENT.test(uri)) return { reason: 'not a valid URI (unencoded or invalid characters)' };
  const scheme = SCHEME.exec(uri)?.[1]?.toLowerCase();
  if (scheme === undefined) return { reason: 'not an absolute URI' };
  // §3: two URI schemes are supported, "mailto" and "https".
  if (scheme === 'mailto') return parseMailto(uri);
  if (scheme === 'https') {
    // RFC 3986: an https URI has an authority ("//" host); WHATWG URL parsing would invent one for "https:///x".
    if (!/^https:\/\/[^/?#]/i.test(uri)) return { reason: 'https URL without a host' };
    let url: URL;
    try {
      url = new URL(uri);
    } catch {
      return { reason: 'not a valid https URL' };
    }
    if (url.hostname === '') return { reason: 'https URL without a host' };
    return { destinations: [{ kind: 'https', uri, url: url.href }] };
  }
  return { reason: `unsupported scheme ${scheme}` };
}

function parseMailto(uri: string): { destinations: TlsRptDestination[] } | { reason: string } {
  // RFC 6068: mailto:addr-spec *("," addr-spec) [ "?" hfields ]; the hfields are not used for reports.
  const body = uri.slice('mailto:'.length);
  const to = body.split('?', 1)[0] ?? '';
  if (to === '') return { reason: 'mailto URI without an address' };
  const destinations: TlsRptDestination[] = [];
  // The list separator is a literal ",", which §3 requires to be encoded as %2C inside a tlsrpt-uri.
  for (const encoded of to.split(/%2C/i)) {
    let address: string;
    try {
      address = decodeURIComponent(encoded);
    } catch {
      return { reason: 'invalid percent-encoding in mailto URI' };
    }
    const at = address.lastIndexOf('@');
    if (at <= 0) return { reason: `not an e-mail address: ${quote(address)}` };
    const local = address.slice(0, at);
    const domain = normalizeDomainOrUndefined(address.slice(at + 1));
    if (!LOCAL_PART.test(local) || domain === undefined) return { reason: `not an e-mail address: ${quote(address)}` };
    destinations.push({ kind: 'mailto', uri, address: `${local}@${domain}` });
  }
  return { destinations };
}

/**
 * Applies the RFC 8460 §3 selection rules to the TXT records found at `_smtp._tls.<domain>`: each record's
 * character-strings are concatenated without spaces, records not beginning with `v=TLSRPTv1` are discarded, and
 * exactly one must remain.
 *
 * @returns the parsed record, or `undefined` when no record is a TLSRPT record.
 * @throws {TlsRptError} `TLSRPT_RECORD_MULTIPLE` when more than one remains, `TLSRPT_RECORD_INVALID` when the one
 *   that remains does not parse.
 */
export function selectTlsRptRecord(records: ReadonlyArray<string | readonly string[]>, domain?: string): TlsRptRecord | undefined {
  // §3: multiple strings of one record are concatenated without adding spaces.
  const texts = records.map((r) => (typeof r === 'string' ? r : r.join('')));
  // §3: records that do not begin with "v=TLSRPTv1" are discarded.
  const candidates = texts.filter(isTlsRptRecordCandidate);
  if (candidates.length === 0) return undefined;
  // §3: if the number of resulting records is not one, senders MUST assume the domain does not implement TLSRPT.
  if (candidates.length > 1) {
    throw new TlsRptError('TLSRPT_RECORD_MULTIPLE', `${candidates.length} TLSRPT records${domain ? ` for ${domain}` : ''}; RFC 8460 §3 requires exactly one`, {
      domain,
      details: { count: candidates.length },
    });
  }
  try {
    return parseTlsRptRecord(candidates[0] as string);
  } catch (error) {
    if (error instanceof TlsRptError && domain) throw new TlsRptError(error.code, `${domain}: ${error.message}`, { domain, cause: error, details: error.details });
    throw error;
  }
}

/** Options of {@link lookupTlsRptRecord}. */
export interface LookupTlsRptRecordOptions {
  /** DNS seam. Default: a `node:dns` resolver with the system's servers. */
  resolver?: DnsResolver;
  signal?: AbortSignal;
  /** Overall deadline of the TXT query. Default 10 000 ms. */
  timeoutMs?: number;
}

/**
 * Looks up and parses the TLSRPT record of `domain` (TXT `_smtp._tls.<domain>`, RFC 8460 §3).
 *
 * @returns the record, or `undefined` when the domain publishes none (NXDOMAIN, NODATA, or no TXT record beginning
 *   with `v=TLSRPTv1`).
 * @throws {TlsRptError} `TLSRPT_INVALID_DOMAIN`, `TLSRPT_RECORD_MULTIPLE`, `TLSRPT_RECORD_INVALID` (no usable
 *   record: do not report), `TLSRPT_DNS_TEMPORARY` (SERVFAIL, timeout: try later) or `TLSRPT_ABORTED`.
 */
export async function lookupTlsRptRecord(domain: string, options: LookupTlsRptRecordOptions = {}): Promise<TlsRptRecord | undefined> {
  const name = normalizeDomainOrUndefined(domain);
  if (name === undefined) throw new TlsRptError('TLSRPT_INVALID_DOMAIN', `not a valid domain name: ${quote(String(domain))}`);
  const resolver = options.resolver ?? createDefaultResolver();
  const qname = `_smtp._tls.${name}`;
  const answer = await queryDns(() => resolver.resolveTxt(qname), { name: qname, type: 'TXT', domain: name }, options.timeoutMs ?? 10_000, options.signal);
  if (answer.kind === 'not-found') return undefined;
  if (answer.kind === 'error') {
    if (answer.error.code === 'MTASTS_ABORTED') throw new TlsRptError('TLSRPT_ABORTED', answer.error.message, { domain: name, cause: answer.error });
    // Only an authoritative negative answer means "no record"; anything else is temporary.
    throw new TlsRptError('TLSRPT_DNS_TEMPORARY', answer.error.message, { domain: name, cause: answer.error, details: { ...answer.error.details } });
  }
  return selectTlsRptRecord(answer.value, name);
}

function quote(text: string): string {
  return JSON.stringify(text.length > 120 ? `${text.slice(0, 120)}…` : text);
}

function invalid(message: string, details?: Record<string, number | string>): TlsRptError {
  return new TlsRptError('TLSRPT_RECORD_INVALID', `invalid TLSRPT record: ${message}`, details ? { details } : {});
}
