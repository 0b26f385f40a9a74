/**
 * A small authoritative DNS server for tests, on 127.0.0.1, UDP and TCP on the same port.
 *
 * Real resolvers (`node:dns`, c-ares) talk to it over the wire, so tests exercise the same code paths as production:
 * NXDOMAIN vs NODATA, SERVFAIL, timeouts, TXT records split into several character-strings, CNAME chains and
 * truncation with a retry over TCP. Answers have TTL 0 unless a name's records set `ttl`: tests change records
 * mid-test, and a resolver may reuse an answer for its TTL.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type * as dnsPacket from 'dns-packet';
import { requirePeer } from '../peers.js';
import { copyRecords, mergeRecords, nameExists, normalizeDnsName, resolveAnswers, validateRecords, type DnsRecords } from './dns-zone.js';
import { silentLogger, type TestWorldLogger } from './logger.js';

export { normalizeDnsName } from './dns-zone.js';
export type { DnsMxRecord, DnsRecords } from './dns-zone.js';

/** dns-packet, an optional peer: loaded when a server starts, with a clear error when it is not installed. */
let packetModule: typeof dnsPacket | undefined;
function packets(): typeof dnsPacket {
  return (packetModule ??= requirePeer<typeof dnsPacket>('dns-packet', 'startTestDnsServer() (mta-sts-sender/testing)'));
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
const TCP_IDLE_MS = 10_000;
const BIND_ATTEMPTS = 10;
const MAX_UDP_PAYLOAD = 4096;

/** Starts a server on an ephemeral port of 127.0.0.1 (UDP and TCP). */
export async function startTestDnsServer(options: TestDnsServerOptions = {}): Promise<TestDnsServer> {
  packets();
  const logger = options.logger ?? silentLogger;
  const zone = new Map<string, DnsRecords>();
  const failures = new Map<string, DnsFailure>(); // key: name, or `name TYPE`
  const queries: DnsQueryLogEntry[] = [];
  const tcpSockets = new Set<net.Socket>();

  const state: ZoneState = { zone, failures, queries };
  const answer = (query: dnsPacket.DecodedPacket, transport: 'udp' | 'tcp'): Buffer | undefined => answerQuery(state, query, transport);
  const onUdpMessage = (udp: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void => {
    const query = decode(msg);
    const reply = query && answer(query, 'udp');
    if (reply) udp.send(reply, rinfo.port, rinfo.address);
  };
  const onTcpConnection = (socket: net.Socket): void => serveTcpConnection(socket, tcpSockets, answer);

  const { udp, tcp, port } = await listenOnSamePort(onUdpMessage, onTcpConnection, logger);
  const address = '127.0.0.1';
  let closing: Promise<void> | undefined;

  return {
    address,
    port,
    servers: [`${address}:${port}`],
    queries,
    setRecords(name, records) {
      zone.set(normalizeDnsName(name), validateRecords(records));
    },
    addRecords(name, records) {
      const key = normalizeDnsName(name);
      zone.set(key, mergeRecords(zone.get(key) ?? {}, validateRecords(records)));
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

/** The zone, the configured failures and the query log of a server. */
interface ZoneState {
  zone: Map<string, DnsRecords>;
  /** key: name, or `name TYPE` */
  failures: Map<string, DnsFailure>;
  queries: DnsQueryLogEntry[];
}

/** The response to one query (logged), or undefined for no response (not a query, or a configured timeout). */
function answerQuery({ zone, failures, queries }: ZoneState, query: dnsPacket.DecodedPacket, transport: 'udp' | 'tcp'): Buffer | undefined {
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
}

/** Serves DNS over one TCP connection: length-framed queries and answers (RFC 1035 §4.2.2). */
function serveTcpConnection(socket: net.Socket, tcpSockets: Set<net.Socket>, answer: (query: dnsPacket.DecodedPacket, transport: 'tcp') => Buffer | undefined): void {
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
