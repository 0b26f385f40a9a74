/**
 * A small authoritative DNS server for tests, on 127.0.0.1, UDP and TCP on the same port.
 *
 * Real resolvers (`node:dns`, c-ares) talk to it over the wire, so tests exercise the same code paths as production:
 * NXDOMAIN vs NODATA, SERVFAIL, timeouts, TXT records split into several character-strings, CNAME chains and
 * truncation with a retry over TCP. Every answer has TTL 0 because tests change records mid-test and c-ares may
 * cache by TTL.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type * as dnsPacket from 'dns-packet';
import { requirePeer } from '../peers.js';
import { silentLogger, type TestWorldLogger } from './logger.js';

/** dns-packet, an optional peer: loaded when a server starts, with a clear error when it is not installed. */
let packetModule: typeof dnsPacket | undefined;
function packets(): typeof dnsPacket {
  return (packetModule ??= requirePeer<typeof dnsPacket>('dns-packet', 'startTestDnsServer() (mta-sts-sender/testing)'));
}

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
}

/** Record types the server answers. Other types get NODATA (or NXDOMAIN for unknown names). */
export type DnsRecordType = 'A' | 'AAAA' | 'MX' | 'TXT' | 'CNAME';

/**
 * An injected failure: `servfail` and `refused` answer with that rcode, `timeout` never answers (the query is only
 * logged).
 */
export type DnsFailure = 'servfail' | 'timeout' | 'refused';

/** One query the server received. `name` is normalised (lower case, no trailing dot). */
export interface DnsQueryLogEntry {
  name: string;
  /** The query type as dns-packet names it (`TXT`, `MX`, `A`, ...; `UNKNOWN_<n>` for exotic ones). */
  type: string;
  transport: 'udp' | 'tcp';
  at: number;
}

/** The DNS server. All names are case-insensitive and a trailing dot is ignored. */
export interface TestDnsServer {
  /** Always `127.0.0.1`. */
  readonly address: string;
  /** The port, the same for UDP and TCP. */
  readonly port: number;
  /** `['127.0.0.1:<port>']`, ready for `Resolver.setServers()` or the library's `dnsServers` option. */
  readonly servers: string[];
  /** Replaces all records of `name`. */
  setRecords(name: string, records: DnsRecords): void;
  /** Merges records into `name`: values are appended (duplicates skipped; an MX for the same exchange is replaced). */
  addRecords(name: string, records: DnsRecords): void;
  /** A copy of the records of `name`, or `undefined` when the name does not exist. */
  getRecords(name: string): DnsRecords | undefined;
  /** Removes `name` and all its records: queries for it get NXDOMAIN (NODATA while names below it exist). */
  removeName(name: string): void;
  /**
   * Makes queries for `name` (only of `type`, when given) fail; `null` clears the failure. A failure for a type wins
   * over one for the whole name.
   */
  fail(name: string, failure: DnsFailure | null, type?: DnsRecordType): void;
  /** Every query received, oldest first. */
  readonly queries: DnsQueryLogEntry[];
  clearQueryLog(): void;
  /** Stops both listeners and drops open TCP connections. Idempotent. */
  close(): Promise<void>;
}

export interface TestDnsServerOptions {
  /** Gets socket errors (warn). Default: silent. */
  logger?: TestWorldLogger;
}

const RCODE = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;
const MAX_CNAME_HOPS = 8;
const TCP_IDLE_MS = 10_000;
const BIND_ATTEMPTS = 10;
const MAX_UDP_PAYLOAD = 4096;

/** Lower case, trailing dot removed: the key of a name. */
export function normalizeDnsName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

/** Starts a server on an ephemeral port of 127.0.0.1 (UDP and TCP). */
export async function startTestDnsServer(options: TestDnsServerOptions = {}): Promise<TestDnsServer> {
  packets();
  const logger = options.logger ?? silentLogger;
  const zone = new Map<string, DnsRecords>();
  const failures = new Map<string, DnsFailure>(); // key: name, or `name TYPE`
  const queries: DnsQueryLogEntry[] = [];
  const tcpSockets = new Set<net.Socket>();

  const answer = (query: dnsPacket.DecodedPacket, transport: 'udp' | 'tcp'): Buffer | undefined => {
    const question = query.questions?.[0];
    if (query.type !== 'query' || !question) return undefined;
    const name = normalizeDnsName(question.name);
    queries.push({ name, type: question.type, transport, at: Date.now() });

    const failure = failures.get(`${name} ${question.type}`) ?? failures.get(name);
    if (failure === 'timeout') return undefined;
    let flags = packets().AUTHORITATIVE_ANSWER | ((query.flags ?? 0) & packets().RECURSION_DESIRED);
    let answers: dnsPacket.Answer[] = [];
    if (failure === 'servfail') flags |= RCODE.SERVFAIL;
    else if (failure === 'refused') flags |= RCODE.REFUSED;
    else if (!nameExists(zone, name)) flags |= RCODE.NXDOMAIN;
    else answers = resolveAnswers(zone, question.name, question.type);

    const edns = query.additionals?.find((r): r is dnsPacket.OptAnswer => r.type === 'OPT');
    const response: dnsPacket.Packet = { id: query.id, type: 'response', flags, questions: [question], answers };
    if (edns) {
      response.additionals = [
        { type: 'OPT', name: '.', udpPayloadSize: MAX_UDP_PAYLOAD, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] },
      ];
    }
    const encoded = packets().encode(response);
    const limit = transport === 'tcp' ? 0xffff : edns ? Math.min(Math.max(edns.udpPayloadSize, 512), MAX_UDP_PAYLOAD) : 512;
    if (encoded.length <= limit) return encoded;
    // Too big for the transport: send an empty truncated answer so the client retries over TCP (RFC 1035 §4.2.1).
    return packets().encode({ ...response, flags: flags | packets().TRUNCATED_RESPONSE, answers: [] });
  };

  const onUdpMessage = (udp: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void => {
    const query = decode(msg);
    const reply = query && answer(query, 'udp');
    if (reply) udp.send(reply, rinfo.port, rinfo.address);
  };

  const onTcpConnection = (socket: net.Socket): void => {
    tcpSockets.add(socket);
    socket.setTimeout(TCP_IDLE_MS, () => socket.destroy());
    socket.on('close', () => tcpSockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      // Each message is framed by a 2-byte length (RFC 1035 §4.2.2), so the buffer never exceeds 64 KiB + a chunk.
      while (pending.length >= 2) {
        const length = pending.readUInt16BE(0);
        if (pending.length < 2 + length) break;
        const query = decode(pending.subarray(2, 2 + length));
        pending = pending.subarray(2 + length);
        const reply = query && answer(query, 'tcp');
        if (reply) {
          const frame = Buffer.alloc(2 + reply.length);
          frame.writeUInt16BE(reply.length, 0);
          reply.copy(frame, 2);
          socket.write(frame);
        }
      }
    });
  };

  const { udp, tcp, port } = await listenOnSamePort(onUdpMessage, onTcpConnection, logger);
  const address = '127.0.0.1';
  let closing: Promise<void> | undefined;

  return {
    address,
    port,
    servers: [`${address}:${port}`],
    queries,
    setRecords(name, records) {
      zone.set(normalizeDnsName(name), validate(records));
    },
    addRecords(name, records) {
      const key = normalizeDnsName(name);
      zone.set(key, mergeRecords(zone.get(key) ?? {}, validate(records)));
    },
    getRecords(name) {
      const records = zone.get(normalizeDnsName(name));
      return records && copyRecords(records);
    },
    removeName(name) {
      zone.delete(normalizeDnsName(name));
    },
    fail(name, failure, type) {
      const key = type ? `${normalizeDnsName(name)} ${type}` : normalizeDnsName(name);
      if (failure) failures.set(key, failure);
      else failures.delete(key);
    },
    clearQueryLog() {
      queries.length = 0;
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        for (const socket of tcpSockets) socket.destroy();
        let open = 2;
        const done = (): void => {
          if (--open === 0) resolve();
        };
        udp.close(done);
        tcp.close(done);
      });
      return closing;
    },
  };
}

function decode(packet: Buffer): dnsPacket.DecodedPacket | undefined {
  try {
    return packets().decode(packet);
  } catch {
    return undefined; // malformed: ignored, as a real server would
  }
}

/** Binds UDP to an ephemeral port, then TCP to the same one; retries (bounded) when another process holds it. */
async function listenOnSamePort(
  onUdpMessage: (udp: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo) => void,
  onTcpConnection: (socket: net.Socket) => void,
  logger: TestWorldLogger,
): Promise<{ udp: dgram.Socket; tcp: net.Server; port: number }> {
  let lastError: unknown;
  for (let attempt = 0; attempt < BIND_ATTEMPTS; attempt++) {
    const udp = dgram.createSocket('udp4');
    const tcp = net.createServer(onTcpConnection);
    try {
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind(0, '127.0.0.1', () => {
          udp.off('error', reject);
          resolve();
        });
      });
      const { port } = udp.address();
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(port, '127.0.0.1', () => {
          tcp.off('error', reject);
          resolve();
        });
      });
      udp.on('message', (msg, rinfo) => onUdpMessage(udp, msg, rinfo));
      udp.on('error', (error) => logger.warn('test DNS server: UDP socket error', error));
      tcp.on('error', (error) => logger.warn('test DNS server: TCP server error', error));
      return { udp, tcp, port };
    } catch (error) {
      lastError = error;
      try {
        udp.close();
      } catch {
        // never bound: nothing to close
      }
    }
  }
  throw new Error(`test DNS server: no port free for both UDP and TCP after ${BIND_ATTEMPTS} attempts`, { cause: lastError });
}

/** A name exists when it has records or names below it (an "empty non-terminal", which gets NODATA: RFC 8020). */
function nameExists(zone: Map<string, DnsRecords>, name: string): boolean {
  if (zone.has(name)) return true;
  const suffix = `.${name}`;
  for (const owner of zone.keys()) if (owner.endsWith(suffix)) return true;
  return false;
}

/** The answers for `qname`/`qtype`, following CNAMEs (bounded) as an authoritative server for all names would. */
function resolveAnswers(zone: Map<string, DnsRecords>, qname: string, qtype: string): dnsPacket.Answer[] {
  const answers: dnsPacket.Answer[] = [];
  let ownerName = qname; // answers for the asked name keep the client's spelling (0x20 case randomisation)
  let records = zone.get(normalizeDnsName(qname));
  for (let hop = 0; records && hop <= MAX_CNAME_HOPS; hop++) {
    const direct = recordsOfType(ownerName, records, qtype);
    if (direct.length > 0 || qtype === 'CNAME' || !records.cname) {
      answers.push(...direct);
      break;
    }
    answers.push({ type: 'CNAME', name: ownerName, ttl: 0, class: 'IN', data: records.cname });
    ownerName = records.cname;
    records = zone.get(normalizeDnsName(records.cname));
  }
  return answers;
}

function recordsOfType(name: string, records: DnsRecords, qtype: string): dnsPacket.Answer[] {
  const base = { name, ttl: 0, class: 'IN' as const };
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

function validate(records: DnsRecords): DnsRecords {
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

function copyRecords(r: DnsRecords): DnsRecords {
  const out: DnsRecords = {};
  if (r.a) out.a = [...r.a];
  if (r.aaaa) out.aaaa = [...r.aaaa];
  if (r.mx) out.mx = r.mx.map((mx) => ({ exchange: mx.exchange, priority: mx.priority }));
  if (r.txt) out.txt = r.txt.map((t) => (Array.isArray(t) ? [...t] : t));
  if (r.cname !== undefined) out.cname = r.cname;
  return out;
}

function mergeRecords(current: DnsRecords, added: DnsRecords): DnsRecords {
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
  };
  return copyRecords(merged);
}
