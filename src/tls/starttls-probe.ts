/**
 * A minimal SMTP STARTTLS probe (RFC 3207) for checking an MX host against RFC 8461 §4.2 without sending mail:
 * connect, read the greeting, EHLO, STARTTLS, TLS handshake with the library's options, then QUIT. Used by the
 * CLI's `--probe` and by tests; bounded by one deadline and by a cap on the bytes read.
 *
 * The probe also reports what operators look at — the negotiated cipher and the certificate the server presented
 * (subject, issuer, validity, subjectAltName, fingerprint) — read from the TLS socket once the handshake is done,
 * before Node judges the chain, so they are shown for a certificate that does not validate (expired, self-signed,
 * wrong name) too. They are observations only: the verdict is `verification`, as for delivery.
 */
import { X509Certificate } from 'node:crypto';
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { TlsRptResultType } from '../errors.js';
import type { MxTlsOptions } from './connect-options.js';
import { isProtocolVersionError, resultTypeForTlsError } from './tls-errors.js';
import { verifyTls, type TlsVerification } from './verify.js';

export interface StartTlsProbeOptions {
  /** The address to connect to (an IP); the MX host name is still used for SNI and verification (§4.2). */
  address: string;
  /** FOR TESTS ONLY: the SMTP port (MX hosts are reached on 25, RFC 5321). Default 25. */
  smtpPort?: number;
  /** TLS options for the MX host (see `MtaSts.tlsOptions`). */
  tls: MxTlsOptions;
  /** Name announced in EHLO. Default `localhost`. */
  ehloName?: string;
  /** Deadline for the whole probe, ms. Default 15000. */
  timeoutMs?: number;
}

/** The certificate an MX host presented, as observed (whether or not it validated). */
export interface ProbedCertificate {
  /** Distinguished names, one `key=value` per RDN, comma-separated. */
  subject: string;
  issuer: string;
  /** ISO 8601. */
  validFrom: string;
  /** ISO 8601 (`notAfter`). */
  validTo: string;
  /** The DNS names of the subjectAltName extension (RFC 8461 §4.2 matches the MX host against these). */
  subjectAltNames: string[];
  /** SHA-256 fingerprint, colon-separated hex. */
  fingerprint256: string;
}

/** The negotiated cipher suite (Node's `getCipher()`). */
export interface NegotiatedCipher {
  /** OpenSSL name. */
  name: string;
  /** IETF name, when known. */
  standardName?: string;
  /** The TLS version it was negotiated under. */
  version: string;
}

export interface StartTlsProbeResult {
  mxHost: string;
  address: string;
  /** Did the server advertise STARTTLS in its EHLO response? */
  starttlsOffered: boolean;
  /** The verification verdict (also for a failed handshake, mapped to an RFC 8460 result type). */
  verification: TlsVerification;
  /** Negotiated TLS version, when the handshake succeeded. */
  protocol?: string;
  /** The certificate presented, when the handshake got that far (observation only, also when it does not validate). */
  certificate?: ProbedCertificate;
  /** The negotiated cipher, when the handshake got that far. */
  cipher?: NegotiatedCipher;
  /** A connection-level failure (refused, timeout, unexpected reply) before TLS could be judged. */
  error?: string;
  /** RFC 8460 result type for `error`, when it maps to one. */
  resultType?: TlsRptResultType;
  elapsedMs: number;
}

const MAX_REPLY_BYTES = 64 * 1024;

/** Runs the probe. Never throws; every failure is in the result. */
export async function probeStartTls(mxHost: string, options: StartTlsProbeOptions): Promise<StartTlsProbeResult> {
  const started = performance.now();
  const timeoutMs = options.timeoutMs ?? 15_000;
  const port = options.smtpPort ?? 25;
  let socket: net.Socket | undefined;
  let tlsSocket: tls.TLSSocket | undefined;
  let timer: NodeJS.Timeout | undefined;
  const base = { mxHost, address: options.address };
  const finish = (partial: Omit<StartTlsProbeResult, 'mxHost' | 'address' | 'elapsedMs'>): StartTlsProbeResult => ({ ...base, ...partial, elapsedMs: Math.round(performance.now() - started) });
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`probe timed out after ${timeoutMs} ms`)), timeoutMs);
    timer.unref?.();
  });
  try {
    socket = net.connect({ host: options.address, port });
    const reader = new ReplyReader(socket);
    await Promise.race([new Promise<void>((resolve, reject) => socket!.once('connect', resolve).once('error', reject)), deadline]);
    const greeting = await Promise.race([reader.next(), deadline]);
    if (!greeting.startsWith('220')) return finish({ starttlsOffered: false, verification: { ok: false, reason: `unexpected greeting: ${greeting.slice(0, 200)}` }, error: 'unexpected greeting' });
    socket.write(`EHLO ${options.ehloName ?? 'localhost'}\r\n`);
    const ehlo = await Promise.race([reader.next(), deadline]);
    if (!ehlo.startsWith('250')) return finish({ starttlsOffered: false, verification: { ok: false, reason: `EHLO rejected: ${ehlo.slice(0, 200)}` }, error: 'EHLO rejected' });
    const offered = ehlo.split(/\r?\n/).some((line) => /^250[ -]STARTTLS\s*$/i.test(line));
    if (!offered) {
      socket.write('QUIT\r\n');
      // §4.2: an MX under policy must offer STARTTLS.
      return finish({ starttlsOffered: false, verification: verifyTls(mxHost, null), resultType: 'starttls-not-supported' });
    }
    socket.write('STARTTLS\r\n');
    const ready = await Promise.race([reader.next(), deadline]);
    if (!ready.startsWith('220')) return finish({ starttlsOffered: true, verification: { ok: false, resultType: 'starttls-not-supported', reason: `STARTTLS refused: ${ready.slice(0, 200)}` }, resultType: 'starttls-not-supported' });
    reader.detach();
    const secure = tls.connect({ ...options.tls, socket });
    tlsSocket = secure;
    // 'secure' fires when the handshake is done, before Node checks the chain (and, when rejectUnauthorized is
    // set, destroys the socket): the only moment the certificate of a chain that fails can be read.
    let seen: { certificate?: ProbedCertificate; cipher?: NegotiatedCipher } = {};
    secure.prependOnceListener('secure', () => {
      seen = observe(secure);
    });
    try {
      await Promise.race([new Promise<void>((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject)), deadline]);
    } catch (error) {
      const resultType = isProtocolVersionError(error) ? 'validation-failure' : resultTypeForTlsError(error);
      const code = (error as { code?: string }).code;
      const message = (error as Error).message;
      const why = code && message && !message.includes(code) ? `${code} (${message})` : (code ?? message);
      return finish({ starttlsOffered: true, verification: { ok: false, resultType, reason: `TLS handshake with ${mxHost} failed: ${why}` }, resultType, ...seen });
    }
    const verification = verifyTls(mxHost, secure);
    secure.write('QUIT\r\n');
    return finish({ starttlsOffered: true, verification, ...(verification.protocol ? { protocol: verification.protocol } : {}), ...seen });
  } catch (error) {
    return finish({ starttlsOffered: false, verification: { ok: false, reason: (error as Error).message }, error: (error as Error).message });
  } finally {
    clearTimeout(timer);
    tlsSocket?.destroy();
    socket?.destroy();
  }
}

/** The certificate and cipher of a socket whose handshake is done. Observation only; never throws. */
function observe(socket: tls.TLSSocket): { certificate?: ProbedCertificate; cipher?: NegotiatedCipher } {
  const out: { certificate?: ProbedCertificate; cipher?: NegotiatedCipher } = {};
  try {
    const c = socket.getCipher();
    if (c?.name) out.cipher = { name: c.name, ...(c.standardName ? { standardName: c.standardName } : {}), version: c.version };
  } catch {
    // no cipher to show
  }
  try {
    const raw = socket.getPeerCertificate(false)?.raw;
    if (raw) out.certificate = describePeer(new X509Certificate(raw));
  } catch {
    // unparsable: nothing to show, the verdict stands
  }
  return out;
}

function isoDate(text: string): string {
  const d = new Date(text);
  return Number.isNaN(d.getTime()) ? text : d.toISOString();
}

function describePeer(cert: X509Certificate): ProbedCertificate {
  return {
    subject: cert.subject.replace(/\n/g, ', '),
    issuer: cert.issuer.replace(/\n/g, ', '),
    validFrom: isoDate(cert.validFrom),
    validTo: isoDate(cert.validTo),
    subjectAltNames: (cert.subjectAltName ?? '')
      .split(/,\s*/)
      .filter((entry) => entry.startsWith('DNS:'))
      .map((entry) => entry.slice(4)),
    fingerprint256: cert.fingerprint256,
  };
}

/** Reads complete SMTP replies (multi-line `250-` continuation lines) from a socket, bounded in size. */
class ReplyReader {
  #buffer = '';
  #waiting: { resolve: (reply: string) => void; reject: (error: Error) => void } | undefined;
  #failed: Error | undefined;
  readonly #socket: net.Socket;
  readonly #onData = (chunk: Buffer) => {
    this.#buffer += chunk.toString('latin1');
    if (this.#buffer.length > MAX_REPLY_BYTES) this.#fail(new Error('SMTP reply too long'));
    else this.#drain();
  };
  readonly #onEnd = () => this.#fail(new Error('connection closed by the server'));
  readonly #onError = (error: Error) => this.#fail(error);

  constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.on('data', this.#onData).on('end', this.#onEnd).on('error', this.#onError);
  }

  next(): Promise<string> {
    if (this.#failed) return Promise.reject(this.#failed);
    return new Promise((resolve, reject) => {
      this.#waiting = { resolve, reject };
      this.#drain();
    });
  }

  detach(): void {
    this.#socket.off('data', this.#onData).off('end', this.#onEnd).off('error', this.#onError);
  }

  #drain(): void {
    if (!this.#waiting) return;
    // A reply is complete when a line has a space (not "-") after its three-digit code.
    const lines = this.#buffer.split('\r\n');
    for (let i = 0; i < lines.length - 1; i++) {
      const line = lines[i]!;
      if (/^\d{3}(?: |$)/.test(line)) {
        const reply = lines.slice(0, i + 1).join('\r\n');
        this.#buffer = lines.slice(i + 1).join('\r\n');
        const waiting = this.#waiting;
        this.#waiting = undefined;
        waiting.resolve(reply);
        return;
      }
    }
  }

  #fail(error: Error): void {
    this.#failed = error;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.reject(error);
  }
}
