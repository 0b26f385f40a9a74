/**
 * SMTP MX hosts for the test world, each on its own loopback IP address.
 *
 * A sending MTA connects to the IP its MX host name resolves to, always on port 25. To test that without root and
 * without touching the library's connection logic, every MX host of a world listens on the same port but on a
 * different address of 127.0.0.0/8 (Linux routes the whole block to the loopback interface; other systems need the
 * addresses configured as aliases). Each world picks a random /24 so worlds running in parallel test processes do
 * not collide. Hosts record what an MTA-STS test wants to assert: whether the message came over TLS, the protocol
 * version, and the SNI name the client asked for.
 */
import net from 'node:net';
import type tls from 'node:tls';
import { randomInt } from 'node:crypto';
import type { SMTPServer as SMTPServerClass, SMTPServerDataStream, SMTPServerOptions, SMTPServerSession } from 'smtp-server';
import { requirePeer } from '../peers.js';
import type { CertVariant, TestCa } from './ca.js';
import { silentLogger, type TestWorldLogger } from './logger.js';

/** How an MX host behaves. */
export interface MxHostOptions {
  /** MX preference. Default 10. */
  priority?: number;
  /** Advertise and accept STARTTLS. Default true; `false` is a host whose STARTTLS was stripped (not offered, refused if tried). */
  starttls?: boolean;
  /** The certificate presented after STARTTLS. Default `valid`. */
  cert?: CertVariant;
  /** `modern` (default): TLS 1.2 and 1.3. `legacy-only`: only TLS 1.0 and 1.1, which current clients refuse. */
  tls?: 'modern' | 'legacy-only';
  /** Recipient addresses answered with `550` at RCPT TO (case-insensitive). */
  rejectRecipients?: readonly string[];
  /** Answer STARTTLS (still advertised) with this 5xx code instead of starting TLS, e.g. `554`. */
  starttlsRejectCode?: number;
  /**
   * Never answer the STARTTLS command: the connection stays open and silent until the client gives up (a path
   * attacker who strips STARTTLS and swallows the command). STARTTLS stays advertised unless `starttls: false` hides it
   * too (the MX then omits STARTTLS from its EHLO reply and swallows the command a client requiring TLS sends anyway).
   * The host counts the swallowed commands in `starttlsSwallowed`.
   */
  starttlsNoReply?: boolean;
  /** Answer EHLO with this 5xx code (HELO still works), e.g. `502`: an MX that cannot advertise STARTTLS. */
  ehloRejectCode?: number;
}

/** A message an MX host accepted. */
export interface ReceivedMessage {
  /** The MX host name that received it. */
  mxHost: string;
  /** The address of that host. */
  ip: string;
  /** MAIL FROM (empty for the null sender `<>`). */
  envelopeFrom: string;
  /** Accepted RCPT TO addresses. */
  recipients: string[];
  /** Whether the message was received over TLS (after STARTTLS). */
  secure: boolean;
  /** The negotiated protocol, e.g. `TLSv1.3`, when secure. */
  tlsVersion?: string;
  /** The SNI server name the client sent in its TLS handshake, if any. */
  sni?: string;
  /** The message as received (headers and body, CRLF line ends, dot-unstuffed). */
  raw: Buffer;
  at: number;
}

/** One running MX host. */
export interface TestMxHost {
  readonly host: string;
  readonly ip: string;
  readonly port: number;
  /** Messages this host accepted, oldest first. */
  readonly messages: ReceivedMessage[];
  /** SMTP connections accepted so far. */
  readonly connections: number;
  /** SMTP connections open now (accepted and not yet closed by either side). */
  readonly openConnections: number;
  /** Every MAIL FROM this host received (accepted or not), with whether the session was over TLS at the time. */
  readonly mailFrom: ReadonlyArray<{ address: string; secure: boolean }>;
  /** STARTTLS commands left unanswered so far (`starttlsNoReply`). */
  readonly starttlsSwallowed: number;
  /** Presents a certificate of another variant from the next STARTTLS on. */
  setCert(variant: CertVariant): void;
  /** Stops the host and drops its connections. Its DNS records stay, so clients then see "connection refused". Idempotent. */
  close(): Promise<void>;
}

export interface StartMxHostOptions extends MxHostOptions {
  host: string;
  ip: string;
  port: number;
  ca: TestCa;
  /** Called for every accepted message (after it is added to the host's own list). */
  onMessage?: (message: ReceivedMessage) => void;
  /** Called when the host has closed. */
  onClose?: () => void;
  /** Gets server errors (failed TLS handshakes, clients going away) at debug level. Default: silent. */
  logger?: TestWorldLogger;
}

const MAX_MESSAGE_BYTES = 25 * 1024 * 1024;

/** What an MX host records about its sessions. */
interface MxHostState {
  messages: ReceivedMessage[];
  tlsInfo: WeakMap<SMTPServerSession, { tlsVersion?: string; sni?: string }>;
  sockets: Set<net.Socket>;
  mailFrom: Array<{ address: string; secure: boolean }>;
  connections: number;
  /** Connections open now: counted up on connect, down in `onClose`. */
  open: number;
  /** STARTTLS commands left unanswered (`starttlsNoReply`). */
  swallowed: number;
}

/** Starts one MX host listening on `ip:port`. Rejects (e.g. `EADDRINUSE`) when it cannot listen. */
export async function startMxHost(options: StartMxHostOptions): Promise<TestMxHost> {
  const { host, ip, port, ca } = options;
  const logger = options.logger ?? silentLogger;
  const state: MxHostState = { messages: [], tlsInfo: new WeakMap(), sockets: new Set(), mailFrom: [], connections: 0, open: 0, swallowed: 0 };
  const certFor = (variant: CertVariant): { key: string; cert: string } => {
    const issued = ca.certFor(host, variant);
    return { key: issued.keyPem, cert: issued.certPem };
  };

  const { SMTPServer } = requirePeer<{ SMTPServer: typeof SMTPServerClass }>('smtp-server', 'startMxHost() (mta-sts-sender/testing)');
  const smtp: SMTPServerClass = new SMTPServer(serverOptions(options, state, certFor(options.cert ?? 'valid'), () => smtp));
  // Failed handshakes and clients that go away surface as 'error'. Tests provoke them, hence debug level.
  smtp.on('error', (error) => logger.debug(`test MX ${host}: ${error.message}`, error));
  smtp.server.on('connection', (socket: net.Socket) => {
    state.sockets.add(socket);
    socket.on('close', () => state.sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    smtp.server.once('error', reject);
    smtp.listen(port, ip, () => {
      smtp.server.off('error', reject);
      resolve();
    });
  });

  let closing: Promise<void> | undefined;
  return {
    host,
    ip,
    port,
    messages: state.messages,
    get connections() {
      return state.connections;
    },
    get openConnections() {
      return state.open;
    },
    mailFrom: state.mailFrom,
    get starttlsSwallowed() {
      return state.swallowed;
    },
    setCert(variant) {
      smtp.updateSecureContext(certFor(variant));
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        smtp.close(() => {
          options.onClose?.();
          resolve();
        });
        for (const socket of state.sockets) socket.destroy();
      });
      return closing;
    },
  };
}

/** The smtp-server configuration of an MX host: its name, TLS versions and certificate, and the session handlers. */
function serverOptions(options: StartMxHostOptions, state: MxHostState, cert: { key: string; cert: string }, smtp: () => SMTPServerClass): SMTPServerOptions {
  const { host } = options;
  const starttls = options.starttls ?? true;
  const legacy = options.tls === 'legacy-only';
  const rejected = new Set((options.rejectRecipients ?? []).map((r) => r.toLowerCase()));
  return {
    name: host,
    banner: `${host} test MX`,
    logger: false,
    authOptional: true,
    // A host that swallows STARTTLS must receive the command (not answer it 502 as a disabled one).
    disabledCommands: starttls || options.starttlsNoReply ? ['AUTH'] : ['AUTH', 'STARTTLS'],
    hideSTARTTLS: !starttls,
    disableReverseLookup: true,
    size: MAX_MESSAGE_BYTES,
    socketTimeout: 30_000,
    closeTimeout: 1_000,
    ...cert,
    // OpenSSL 3 allows TLS 1.0/1.1 only at security level 0; the legacy host lowers it for its own context only.
    ...(legacy ? { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' } : { minVersion: 'TLSv1.2' }),
    onConnect(session, callback) {
      state.connections++;
      state.open++;
      if (options.starttlsRejectCode !== undefined || options.ehloRejectCode !== undefined || options.starttlsNoReply) rejectCommands(smtp(), session, options, state);
      callback();
    },
    onClose() {
      // smtp-server calls this once per connection, whichever side closed it (the socket set loses track of a
      // socket upgraded by STARTTLS).
      state.open--;
    },
    onSecure(socket, session, callback) {
      const tlsSocket = socket as tls.TLSSocket;
      const servername = tlsSocket.servername;
      state.tlsInfo.set(session, {
        tlsVersion: tlsSocket.getProtocol?.() ?? undefined,
        sni: typeof servername === 'string' && servername ? servername : undefined,
      });
      callback();
    },
    onMailFrom(address, session, callback) {
      state.mailFrom.push({ address: address.address, secure: session.secure });
      callback();
    },
    onRcptTo(address, _session, callback) {
      if (rejected.has(address.address.toLowerCase())) {
        callback(Object.assign(new Error(`5.1.1 <${address.address}>: recipient rejected`), { responseCode: 550 }));
      } else {
        callback();
      }
    },
    onData(stream, session, callback) {
      receiveMessage(options, state, stream, session, callback);
    },
  };
}

/** DATA: the message is kept (and passed to `onMessage`) unless it exceeds the size limit (552). */
function receiveMessage(options: StartMxHostOptions, state: MxHostState, stream: SMTPServerDataStream, session: SMTPServerSession, callback: (error?: Error | null, message?: string) => void): void {
  const chunks: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  stream.on('end', () => {
    if (stream.sizeExceeded) {
      callback(Object.assign(new Error('5.3.4 message too big'), { responseCode: 552 }));
      return;
    }
    const { mailFrom, rcptTo } = session.envelope;
    const message: ReceivedMessage = {
      mxHost: options.host,
      ip: options.ip,
      envelopeFrom: mailFrom ? mailFrom.address : '',
      recipients: rcptTo.map((r) => r.address),
      secure: session.secure,
      ...state.tlsInfo.get(session),
      raw: Buffer.concat(chunks),
      at: Date.now(),
    };
    state.messages.push(message);
    options.onMessage?.(message);
    callback(null, 'queued');
  });
}

/** The command handlers smtp-server looks up on each connection (`handler_<COMMAND>`). */
interface SmtpConnectionInternals {
  session: SMTPServerSession;
  send(code: number, message: string): void;
  handler_STARTTLS?: (command: Buffer, callback: () => void) => void;
  handler_EHLO?: (command: Buffer, callback: () => void) => void;
}

/**
 * Makes one connection answer STARTTLS / EHLO with the configured 5xx code, or never answer STARTTLS (smtp-server has
 * no option for either).
 */
function rejectCommands(smtp: SMTPServerClass, session: SMTPServerSession, options: MxHostOptions, state: MxHostState): void {
  const connections = (smtp as unknown as { connections: Set<SmtpConnectionInternals> }).connections;
  for (const connection of connections) {
    if (connection.session !== session) continue;
    const { starttlsRejectCode, ehloRejectCode } = options;
    if (options.starttlsNoReply) {
      // No reply and no callback: smtp-server reads no further command on this connection; the client's timeout
      // (or the server's socketTimeout) ends it.
      connection.handler_STARTTLS = () => {
        state.swallowed++;
      };
    } else if (starttlsRejectCode !== undefined) {
      connection.handler_STARTTLS = (_command, callback) => {
        connection.send(starttlsRejectCode, '5.7.0 TLS not available');
        callback();
      };
    }
    if (ehloRejectCode !== undefined) {
      connection.handler_EHLO = (_command, callback) => {
        connection.send(ehloRejectCode, '5.5.1 EHLO not implemented');
        callback();
      };
    }
  }
}

/**
 * Hands out loopback addresses `127.X.Y.n` from a random /24 (never in 127.0.0.0/16), moving to a fresh /24 when
 * asked to (after a bind failure) or when the current one is used up.
 */
export class LoopbackAddressPool {
  private prefix = LoopbackAddressPool.randomPrefix();
  private next = 1;

  /** The next unused address. */
  take(): string {
    if (this.next > 254) this.switchSubnet();
    return `${this.prefix}.${this.next++}`;
  }

  /** Moves to another random /24. */
  switchSubnet(): void {
    this.prefix = LoopbackAddressPool.randomPrefix();
    this.next = 1;
  }

  private static randomPrefix(): string {
    return `127.${randomInt(1, 255)}.${randomInt(0, 256)}`;
  }
}

/** A port that is free on `ip` right now (the kernel picks it). */
export async function findFreePort(ip: string): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen(0, ip, () => resolve());
  });
  const { port } = probe.address() as net.AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}
