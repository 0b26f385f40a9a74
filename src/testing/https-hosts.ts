/**
 * Many virtual HTTPS hosts on one loopback port: MTA-STS policy hosts and other endpoints (e.g. TLS-RPT report
 * receivers).
 *
 * RFC 8461 fetches policies from `https://mta-sts.<domain>/` on port 443; a library under test is pointed at this
 * server's port instead and resolves every host to 127.0.0.1 through the test DNS. The certificate is chosen per
 * SNI name, so each host can present a valid or a deliberately broken certificate. TLS session resumption is off so
 * a certificate change takes effect on the next connection, exactly as it would against a real server.
 */
import https from 'node:https';
import tls from 'node:tls';
import { constants as cryptoConstants } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { CertVariant, TestCa } from './ca.js';
import { normalizeDnsName } from './dns-server.js';
import { silentLogger, type TestWorldLogger } from './logger.js';

/** Handles one request. `body` is the complete request body. */
export type HttpsHandler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void;

/** One virtual host. */
export interface HttpsHostOptions {
  /** The certificate the host presents. Default `valid`. */
  cert?: CertVariant;
  handler: HttpsHandler;
}

/** One request received by any host (logged before the handler runs). */
export interface HttpsRequestLogEntry {
  /** The host the request was routed to (SNI name, else the Host header), normalised. */
  hostname: string;
  method: string;
  /** Path and query string, as sent. */
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  at: number;
}

/** The HTTPS server behind all virtual hosts. */
export interface TestHttpsServer {
  /** Always `127.0.0.1`. */
  readonly address: string;
  readonly port: number;
  /** Every request received, oldest first. */
  readonly requests: HttpsRequestLogEntry[];
  /** Adds or replaces a host. */
  setHost(hostname: string, options: HttpsHostOptions): void;
  removeHost(hostname: string): void;
  /** Stops listening and destroys every open connection (including ones a handler never answers). Idempotent. */
  close(): Promise<void>;
}

export interface TestHttpsServerOptions {
  ca: TestCa;
  /** Gets handler failures (warn) and failed TLS handshakes (debug). Default: silent. */
  logger?: TestWorldLogger;
}

/** The name on the certificate presented to clients that ask for an unknown host (or send no SNI). */
export const UNKNOWN_HOST_CERT_NAME = 'unknown-host.invalid';

const MAX_REQUEST_BODY = 16 * 1024 * 1024;
const NO_RESUMPTION = cryptoConstants.SSL_OP_NO_TICKET;

/** Starts the server on an ephemeral port of 127.0.0.1. */
export async function startTestHttpsServer(options: TestHttpsServerOptions): Promise<TestHttpsServer> {
  const { ca } = options;
  const logger = options.logger ?? silentLogger;
  const hosts = new Map<string, HttpsHostOptions>();
  const requests: HttpsRequestLogEntry[] = [];
  const sockets = new Set<Socket>();

  const contextFor = secureContextCache(ca);
  const unknownHost = ca.certFor(UNKNOWN_HOST_CERT_NAME);
  const server = https.createServer(
    {
      cert: unknownHost.certPem,
      key: unknownHost.keyPem,
      secureOptions: NO_RESUMPTION,
      SNICallback: (servername, callback) => {
        const name = normalizeDnsName(servername);
        const host = hosts.get(name);
        callback(null, host ? contextFor(name, host.cert ?? 'valid') : contextFor(UNKNOWN_HOST_CERT_NAME, 'valid'));
      },
      handshakeTimeout: 10_000,
      requestTimeout: 30_000,
      headersTimeout: 10_000,
    },
    (req, res) => handleRequest(req, res, hosts, requests, logger),
  );
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  // Clients rejecting the deliberately broken certificates is the point of most hosts, hence debug level.
  server.on('tlsClientError', (error) => logger.debug(`test HTTPS server: TLS handshake failed: ${error.message}`));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;

  return {
    address: '127.0.0.1',
    port,
    requests,
    setHost(hostname, hostOptions) {
      hosts.set(normalizeDnsName(hostname), { ...hostOptions });
    },
    removeHost(hostname) {
      hosts.delete(normalizeDnsName(hostname));
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
      return closing;
    },
  };
}

/** The TLS context of each (host name, certificate variant), created on first use. */
function secureContextCache(ca: TestCa): (name: string, variant: CertVariant) => tls.SecureContext {
  const contexts = new Map<string, tls.SecureContext>();
  return (name, variant) => {
    const key = `${variant} ${name}`;
    let context = contexts.get(key);
    if (!context) {
      const { certPem, keyPem } = ca.certFor(name, variant);
      context = tls.createSecureContext({ cert: certPem, key: keyPem, secureOptions: NO_RESUMPTION });
      contexts.set(key, context);
    }
    return context;
  };
}

/** One request: read the body (bounded), log it, and pass it to the host's handler (421 for an unknown host). */
function handleRequest(req: IncomingMessage, res: ServerResponse, hosts: Map<string, HttpsHostOptions>, requests: HttpsRequestLogEntry[], logger: TestWorldLogger): void {
  const sni = (req.socket as tls.TLSSocket).servername;
  const hostname = normalizeDnsName(typeof sni === 'string' && sni ? sni : (req.headers.host ?? '').replace(/:\d+$/, ''));
  const chunks: Buffer[] = [];
  let size = 0;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > MAX_REQUEST_BODY) {
      req.destroy(); // a runaway client in a test: drop it rather than buffer without end
      return;
    }
    chunks.push(chunk);
  });
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    requests.push({ hostname, method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, at: Date.now() });
    const host = hosts.get(hostname);
    if (!host) {
      res.writeHead(421, { 'content-type': 'text/plain' }).end(`no test host ${hostname}\n`);
      return;
    }
    try {
      host.handler(req, res, body);
    } catch (error) {
      logger.warn(`test HTTPS host ${hostname}: handler threw`, error);
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end();
    }
  });
}
