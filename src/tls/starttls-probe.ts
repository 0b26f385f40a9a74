/**
 * A minimal SMTP STARTTLS probe (RFC 3207) for checking an MX host against RFC 8461 §4.2 without sending mail:
 * connect, read the greeting, EHLO, STARTTLS, TLS handshake with the library's options, then QUIT. Used by the
 * CLI's `--probe` and by tests; bounded by one deadline and by a cap on the bytes read.
 */
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

export interface StartTlsProbeResult {
  mxHost: string;
  address: string;
  /** Did the server advertise STARTTLS in its EHLO response? */
  starttlsOffered: boolean;
  /** The verification verdict (also for a failed handshake, mapped to an RFC 8460 result type). */
  verification: TlsVerification;
  /** Negotiated TLS version, when the handshake succeeded. */
  protocol?: string;
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
    try {
      await Promise.race([new Promise<void>((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject)), deadline]);
    } catch (error) {
      const resultType = isProtocolVersionError(error) ? 'validation-failure' : resultTypeForTlsError(error);
      const code = (error as { code?: string }).code;
      const message = (error as Error).message;
      const why = code && message && !message.includes(code) ? `${code} (${message})` : (code ?? message);
      return finish({ starttlsOffered: true, verification: { ok: false, resultType, reason: `TLS handshake with ${mxHost} failed: ${why}` }, resultType });
    }
    const verification = verifyTls(mxHost, secure);
    secure.write('QUIT\r\n');
    return finish({ starttlsOffered: true, verification, ...(verification.protocol ? { protocol: verification.protocol } : {}) });
  } catch (error) {
    return finish({ starttlsOffered: false, verification: { ok: false, reason: (error as Error).message }, error: (error as Error).message });
  } finally {
    clearTimeout(timer);
    tlsSocket?.destroy();
    socket?.destroy();
  }
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
