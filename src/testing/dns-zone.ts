/**
 * The zone of the test DNS server: the records of each name, and how a query is answered from them (NXDOMAIN vs
 * NODATA for empty non-terminals, RFC 8020; CNAME chains, bounded; TXT records cut into 255-byte character-strings,
 * RFC 1035 §3.3.14). No I/O: the server (dns-server.ts) puts this on the wire.
 */
import net from 'node:net';
import type * as dnsPacket from 'dns-packet';

const MAX_CNAME_HOPS = 8;

/** An MX record: `exchange` is a host name. */
export interface DnsMxRecord {
  exchange: string;
  priority: number;
}

/**
 * The records of one name. A TXT record given as a string is split into 255-byte character-strings when it is
 * longer; one given as a `string[]` is sent as exactly those character-strings (each at most 255 bytes).
 */
export interface DnsRecords {
  a?: string[];
  aaaa?: string[];
  mx?: DnsMxRecord[];
  txt?: Array<string | string[]>;
  /** The canonical name this name is an alias of. */
  cname?: string;
  /**
   * The TTL of every record of this name, in seconds (0 to 2147483647, RFC 2181 §8). Default 0: resolvers must not
   * reuse the answers (RFC 1035 §3.2.1), so a test can change records at any time.
   */
  ttl?: number;
}

/** Lower case, trailing dot removed: the key of a name. */
export function normalizeDnsName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

/** A name exists when it has records or names below it (an "empty non-terminal", which gets NODATA: RFC 8020). */
export function nameExists(zone: Map<string, DnsRecords>, name: string): boolean {
  if (zone.has(name)) return true;
  const suffix = `.${name}`;
  for (const owner of zone.keys()) if (owner.endsWith(suffix)) return true;
  return false;
}

/** The answers for `qname`/`qtype`, following CNAMEs (bounded) as an authoritative server for all names would. */
export function resolveAnswers(zone: Map<string, DnsRecords>, qname: string, qtype: string): dnsPacket.Answer[] {
  const answers: dnsPacket.Answer[] = [];
  let ownerName = qname; // answers for the asked name keep the client's spelling (0x20 case randomisation)
  let records = zone.get(normalizeDnsName(qname));
  for (let hop = 0; records && hop <= MAX_CNAME_HOPS; hop++) {
    const direct = recordsOfType(ownerName, records, qtype);
    if (direct.length > 0 || qtype === 'CNAME' || !records.cname) {
      answers.push(...direct);
      break;
    }
    answers.push({ type: 'CNAME', name: ownerName, ttl: records.ttl ?? 0, class: 'IN', data: records.cname });
    ownerName = records.cname;
    records = zone.get(normalizeDnsName(records.cname));
  }
  return answers;
}

function recordsOfType(name: string, records: DnsRecords, qtype: string): dnsPacket.Answer[] {
  const base = { name, ttl: records.ttl ?? 0, class: 'IN' as const };
  switch (qtype) {
    case 'A':
      return (records.a ?? []).map((data) => ({ ...base, type: 'A', data }));
    case 'AAAA':
      return (records.aaaa ?? []).map((data) => ({ ...base, type: 'AAAA', data }));
    case 'MX':
      return (records.mx ?? []).map((mx) => ({ ...base, type: 'MX', data: { exchange: mx.exchange, preference: mx.priority } }));
    case 'TXT':
      return (records.txt ?? []).map((txt) => ({ ...base, type: 'TXT', data: characterStrings(txt) }));
    case 'CNAME':
      return records.cname ? [{ ...base, type: 'CNAME', data: records.cname }] : [];
    default:
      return [];
  }
}

/** A TXT record as character-strings: a plain string is cut into pieces of at most 255 bytes (never inside a UTF-8 sequence). */
function characterStrings(txt: string | string[]): Buffer[] {
  if (Array.isArray(txt)) return txt.map((s) => Buffer.from(s, 'utf8'));
  const bytes = Buffer.from(txt, 'utf8');
  if (bytes.length === 0) return [bytes];
  const parts: Buffer[] = [];
  for (let start = 0; start < bytes.length; ) {
    let end = Math.min(start + 255, bytes.length);
    while (end < bytes.length && end > start + 1 && (bytes[end]! & 0xc0) === 0x80) end--;
    parts.push(bytes.subarray(start, end));
    start = end;
  }
  return parts;
}

/** Checks records before they go into the zone (addresses, MX priorities, explicit TXT string lengths); returns a copy. */
export function validateRecords(records: DnsRecords): DnsRecords {
  if (records.ttl !== undefined && !(Number.isInteger(records.ttl) && records.ttl >= 0 && records.ttl <= 0x7fffffff)) {
    throw new RangeError(`bad TTL: ${records.ttl} (seconds, 0 to 2147483647)`);
  }
  for (const ip of records.a ?? []) if (!net.isIPv4(ip)) throw new TypeError(`not an IPv4 address: ${ip}`);
  for (const ip of records.aaaa ?? []) if (!net.isIPv6(ip)) throw new TypeError(`not an IPv6 address: ${ip}`);
  for (const mx of records.mx ?? []) {
    if (!Number.isInteger(mx.priority) || mx.priority < 0 || mx.priority > 0xffff) throw new RangeError(`bad MX priority: ${mx.priority}`);
  }
  for (const txt of records.txt ?? []) {
    if (Array.isArray(txt) && txt.some((s) => Buffer.byteLength(s, 'utf8') > 255)) {
      throw new RangeError('a TXT character-string given explicitly must be at most 255 bytes');
    }
  }
  return copyRecords(records);
}

/** A deep copy of records (the zone never shares arrays with callers). */
export function copyRecords(r: DnsRecords): DnsRecords {
  const out: DnsRecords = {};
  if (r.a) out.a = [...r.a];
  if (r.aaaa) out.aaaa = [...r.aaaa];
  if (r.mx) out.mx = r.mx.map((mx) => ({ exchange: mx.exchange, priority: mx.priority }));
  if (r.txt) out.txt = r.txt.map((t) => (Array.isArray(t) ? [...t] : t));
  if (r.cname !== undefined) out.cname = r.cname;
  if (r.ttl !== undefined) out.ttl = r.ttl;
  return out;
}

/** `added` merged into `current`: values appended, duplicates skipped, an MX for the same exchange replaced. */
export function mergeRecords(current: DnsRecords, added: DnsRecords): DnsRecords {
  const union = <T>(a: T[] | undefined, b: T[] | undefined, same: (x: T, y: T) => boolean): T[] | undefined => {
    if (!b) return a;
    const out = [...(a ?? [])];
    for (const item of b) {
      const at = out.findIndex((x) => same(x, item));
      if (at >= 0) out[at] = item;
      else out.push(item);
    }
    return out;
  };
  const merged: DnsRecords = {
    a: union(current.a, added.a, (x, y) => x === y),
    aaaa: union(current.aaaa, added.aaaa, (x, y) => x === y),
    mx: union(current.mx, added.mx, (x, y) => normalizeDnsName(x.exchange) === normalizeDnsName(y.exchange)),
    txt: union(current.txt, added.txt, (x, y) => JSON.stringify(x) === JSON.stringify(y)),
    cname: added.cname ?? current.cname,
    ttl: added.ttl ?? current.ttl,
  };
  return copyRecords(merged);
}
