/**
 * One SMTP session with one address of one MX host, driven by Nodemailer's own SMTP client
 * (`nodemailer/lib/smtp-connection`) and judged by the MTA-STS hooks: connect by IP, STARTTLS with SNI and
 * verification name = the MX host name, check the session, then MAIL FROM / RCPT TO / DATA only when the policy
 * allows it. Never throws; the result says what happened and whether another host may be tried.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { SMTPConnectionOptions, SMTPConnectionSendInfo, SMTPEnvelope } from 'nodemailer/lib/smtp-connection';

/** Nodemailer's SMTP client class, loaded by the factory at creation (nodemailer is an optional peer). */
export type SmtpConnectionClass = typeof SMTPConnection;
import type { MxCandidate } from '../../plan/plan.js';
import type { MtaStsHooks, SessionVerdict } from '../hooks.js';
import { nodemailerHandshakeFailure } from './tls-failure.js';
import { validatedSessionTls } from '../../tls/caller-tls.js';
import { DEFAULT_STARTTLS_TIMEOUT_MS } from '../../tls/handshake-failure.js';
import { watchStartTlsReply } from './starttls-reply.js';

/** Where a session stopped. */
export type SessionStage = 'connect' | 'tls' | 'policy' | 'auth' | 'smtp' | 'done';

export interface SessionRequest {
  hooks: MtaStsHooks;
  /** Nodemailer's SMTP client class. */
  smtpConnection: SmtpConnectionClass;
  candidate: MxCandidate;
  ip: string;
  port: number;
  envelope: SMTPEnvelope;
  message: Buffer;
  /** Connection options passed to SMTPConnection (name, timeouts, logger, localAddress, ...). */
  connection: SMTPConnectionOptions;
  /** Skip STARTTLS entirely (the plaintext retry after a failed handshake; never under enforce). */
  plaintext?: boolean;
  /** Require STARTTLS even when the candidate does not. */
  requireTls?: boolean;
  /** Authenticate before sending (the guard, when the guarded transport has credentials). */
  auth?: Parameters<SMTPConnection['login']>[0] | false | null;
  /** Authenticate even when the server does not advertise AUTH (Nodemailer's `forceAuth`). */
  forceAuth?: boolean;
  /**
   * TLS options of the caller (e.g. a guarded transport's `tls`). In a validated session (enforce) only its client
   * identity is used (`cert`, `key`, `pfx`, `passphrase`); the trust settings are the engine's (`validatedSessionTls`).
   */
  tlsBase?: SMTPConnectionOptions['tls'];
  /**
   * The caller's own STARTTLS settings (a guarded transport's). When given, they apply as they are wherever the
   * candidate does not require validated TLS (testing, none): the session then behaves as without MTA-STS, including
   * Node's default `rejectUnauthorized: true` and the caller's `tls` options winning over the plan's.
   */
  callerTls?: { requireTLS?: boolean; ignoreTLS?: boolean; opportunisticTLS?: boolean };
  /** Will the caller retry in plaintext after a failed handshake where allowed? Told to the hooks. Default true. */
  plaintextFallback?: boolean;
  /**
   * How long to wait for the reply to STARTTLS, in ms (default {@link DEFAULT_STARTTLS_TIMEOUT_MS}). Unanswered, or
   * the connection ending before the reply, the session counts as `starttls-not-supported` (RFC 8460 §4.3.1).
   */
  starttlsTimeoutMs?: number;
}

export interface SessionResult {
  delivered: boolean;
  stage: SessionStage;
  /** Was the session encrypted (STARTTLS completed)? */
  secure: boolean;
  tlsVersion?: string;
  /** The hooks' verdict on the TLS session (or on the failed handshake). */
  verdict?: SessionVerdict;
  /** The SMTP result when the message was sent. */
  info?: SMTPConnectionSendInfo;
  /** The error that ended the session. */
  error?: Error & { code?: string; responseCode?: number; response?: string; command?: string };
  /** May another address / MX host be tried after this one? */
  tryNext: boolean;
  localAddress?: string;
}

/** `tls.connect` options that go into the SecureContext (the hooks' shared context would silently drop them). */
const CONTEXT_KEYS = ['ca', 'cert', 'key', 'pfx', 'passphrase', 'ciphers', 'ecdhCurve', 'minVersion', 'maxVersion', 'secureProtocol', 'secureOptions', 'crl', 'sigalgs', 'dhparam', 'honorCipherOrder', 'privateKeyEngine', 'privateKeyIdentifier', 'clientCertEngine', 'secureContext'] as const;

/**
 * Merges the policy's TLS options with the caller's outside a validated session (testing, no policy; a validated
 * session takes `validatedSessionTls`). `callerWins` (a caller with its own settings, "as without MTA-STS"): the
 * caller's options override, with Node's default `rejectUnauthorized: true`; otherwise the policy's override. A
 * caller option that belongs in the SecureContext (client certificate, ciphers, ...) makes Node build the context
 * from the merged options.
 */
function mergeTls(policy: SMTPConnectionOptions['tls'] & object, base: SMTPConnectionOptions['tls'] | undefined, callerWins: boolean): SMTPConnectionOptions['tls'] {
  const merged: Record<string, unknown> = callerWins ? { ...policy, rejectUnauthorized: true, ...base } : { ...base, ...policy };
  if (!base) return merged as SMTPConnectionOptions['tls'];
  const record = base as Record<string, unknown>;
  if (CONTEXT_KEYS.some((key) => record[key] !== undefined)) {
    if (record.secureContext === undefined || !callerWins) delete merged.secureContext;
  }
  return merged as SMTPConnectionOptions['tls'];
}

type ClientError = Error & { code?: string; responseCode?: number; response?: string; command?: string; originalCode?: string };

/** The SMTPConnection options of a session, and whether it requires TLS (the policy's, the caller's or the plaintext retry's say). */
function sessionOptions(request: SessionRequest): { options: SMTPConnectionOptions; requireTls: boolean } {
  const { hooks, candidate, ip } = request;
  const policyTls = hooks.tlsOptionsFor(candidate);
  const caller = candidate.requireValidCertificate ? undefined : request.callerTls;
  const requireTls = !request.plaintext && (candidate.requireTls || request.requireTls === true || caller?.requireTLS === true);
  const options: SMTPConnectionOptions = {
    ...request.connection,
    host: ip,
    port: request.port,
    // RFC 8461 §4.2: SNI and certificate verification use the MX host name, though we connect by IP.
    servername: candidate.host,
    // Implicit TLS only when the caller configured it (a guarded transport with `secure: true`); MX hosts use STARTTLS.
    secure: request.connection.secure === true && !request.plaintext,
    requireTLS: requireTls,
    opportunisticTLS: caller ? caller.opportunisticTLS === true && !requireTls : !requireTls,
    ignoreTLS: request.plaintext === true || (caller !== undefined && caller.ignoreTLS === true && !requireTls),
    // RFC 8461 §4.2: in a validated session (enforce) the trust settings are the engine's alone, the caller adds
    // only its client identity; otherwise a caller with its own settings keeps them (Node's default verifies).
    tls: candidate.requireValidCertificate ? validatedSessionTls(policyTls, request.tlsBase) : mergeTls(policyTls, request.tlsBase, caller !== undefined),
  };
  return { options, requireTls };
}

/** Runs one session. */
export async function runSmtpSession(request: SessionRequest): Promise<SessionResult> {
  const { hooks, candidate, ip } = request;
  const { options, requireTls } = sessionOptions(request);
  const connection = new request.smtpConnection(options);
  let localAddress: string | undefined;
  const context = (): { ip: string; sendingMtaIp?: string } => ({ ip, ...(localAddress ? { sendingMtaIp: localAddress } : {}) });
  // RFC 8460 §4.4 `sending-mta-ip`: read the local address as soon as the TCP connection is established. A failed
  // TLS handshake destroys the socket, and a destroyed socket no longer knows its address.
  captureLocalAddress(connection, (address) => (localAddress ??= address));

  // Late or repeated errors (after the first, or after the session ended) must not become uncaught 'error' events.
  connection.on('error', () => undefined);
  const { error: connectError, starttlsNoReply } = await connectOnce(connection, request.starttlsTimeoutMs ?? DEFAULT_STARTTLS_TIMEOUT_MS);
  const socket = connection._socket || undefined;
  localAddress ??= (socket as Socket | undefined)?.localAddress ?? undefined;

  if (connectError) {
    connection.close();
    const duringTls = starttlsNoReply || connection.upgrading === true || connectError.code === 'ETLS' || connectError.command === 'STARTTLS';
    if (duringTls) {
      // The caller retries in plaintext only when it allows it and TLS is not required of this session.
      const fallback = request.plaintextFallback !== false && !requireTls;
      const failure = nodemailerHandshakeFailure(connectError);
      const signal = starttlsNoReply ? { starttlsNoReply: true } : failure.starttlsRefused ? { starttlsRefused: failure.starttlsRefused } : {};
      let verdict: SessionVerdict;
      try {
        verdict = hooks.handshakeFailed(candidate, failure.error, { ...context(), plaintextFallback: fallback, tlsSocket: (socket as TLSSocket | undefined) ?? null, ...signal });
      } catch (error) {
        return hookFailed(connection, 'handshakeFailed', error, { secure: false, ...(localAddress ? { localAddress } : {}) });
      }
      return { delivered: false, stage: 'tls', secure: false, verdict, error: connectError, tryNext: true, ...(localAddress ? { localAddress } : {}) };
    }
    // Greeting / EHLO 5xx is a final answer from this host only; another MX may accept (RFC 5321 §5.1).
    return { delivered: false, stage: 'connect', secure: false, error: connectError, tryNext: true, ...(localAddress ? { localAddress } : {}) };
  }

  const secure = connection.secure === true;
  const tlsSocket = secure ? (connection._socket as TLSSocket) : null;
  let verdict: SessionVerdict;
  try {
    verdict = hooks.verifySession(candidate, tlsSocket, context());
  } catch (error) {
    return hookFailed(connection, 'verifySession', error, { secure, ...(localAddress ? { localAddress } : {}) });
  }
  const tlsVersion = verdict.verdict.protocol;
  const base = { secure, verdict, ...(tlsVersion ? { tlsVersion } : {}), ...(localAddress ? { localAddress } : {}) };
  if (!verdict.proceed) {
    connection.quit();
    connection.close();
    return { delivered: false, stage: 'policy', ...base, tryNext: true };
  }

  if (request.auth && (connection.allowsAuth || request.forceAuth)) {
    const authError = await new Promise<ClientError | undefined>((resolve) => connection.login(request.auth as never, (error) => resolve(error ?? undefined)));
    if (authError) {
      connection.close();
      return { delivered: false, stage: 'auth', ...base, error: authError, tryNext: false };
    }
  }

  const sent = await new Promise<{ error?: ClientError; info?: SMTPConnectionSendInfo }>((resolve) => {
    connection.send(request.envelope, request.message, (error: ClientError | null, info?: SMTPConnectionSendInfo) => resolve(error ? { error } : info ? { info } : {}));
  });
  connection.quit();
  if (sent.error) {
    connection.close();
    // A reply from the MX (5xx or 4xx to MAIL/RCPT/DATA) is its answer for these recipients; a dropped connection
    // before the final reply may be retried elsewhere.
    const answered = typeof sent.error.responseCode === 'number';
    return { delivered: false, stage: 'smtp', ...base, error: sent.error, tryNext: !answered };
  }
  return { delivered: true, stage: 'done', ...base, ...(sent.info ? { info: sent.info } : {}), tryNext: false };
}

/**
 * Connects (greeting, EHLO, STARTTLS); resolves with the error that ended it, if any. `starttlsNoReply`: the session
 * ended after STARTTLS was sent and before any reply to it: the reply did not come within `starttlsTimeoutMs`, or
 * the server closed the connection (or the socket timed out) first. RFC 8461 §4.2 requires STARTTLS; a command that
 * is swallowed is a STARTTLS that is not supported (RFC 8460 §4.3.1), whoever swallowed it.
 */
function connectOnce(connection: SMTPConnection, starttlsTimeoutMs: number): Promise<{ error?: ClientError; starttlsNoReply: boolean }> {
  // A connection-level error may arrive through the connect callback or the 'error' event; take the first.
  return new Promise((resolve) => {
    let settled = false;
    const done = (error?: ClientError) => {
      if (settled) return;
      settled = true;
      watch.stop();
      resolve({ ...(error ? { error } : {}), starttlsNoReply: error !== undefined && watch.awaitingReply });
    };
    const watch = watchStartTlsReply(connection, starttlsTimeoutMs, (error) => {
      done(error);
      connection.close();
    });
    connection.once('error', (error: ClientError) => done(error));
    connection.once('end', () => done(Object.assign(new Error('connection closed before the session was set up'), { code: 'ECONNECTION' })));
    try {
      connection.connect((error?: ClientError) => done(error));
    } catch (error) {
      done(error as ClientError);
    }
  });
}

/**
 * A hook (`verifySession`, `handshakeFailed`) threw: a bug of the hooks, not a verdict. The connection is closed at
 * once (never left open until the socket timeout) and the session counts as refused for this MX host, a temporary
 * failure: nothing is sent on a session nobody judged (fail closed; under `enforce`, RFC 8461 §5.1 defers).
 */
function hookFailed(connection: SMTPConnection, hook: string, error: unknown, facts: { secure: boolean; localAddress?: string }): SessionResult {
  try {
    connection.close();
  } catch {
    // Closing is best effort; the socket is destroyed either way.
  }
  const message = `the MTA-STS hook ${hook}() threw (${String((error as Error)?.message ?? error).slice(0, 200)}); session refused, retry later`;
  return { delivered: false, stage: 'policy', secure: facts.secure, error: new Error(message, { cause: error }), tryNext: true, ...(facts.localAddress ? { localAddress: facts.localAddress } : {}) };
}

/**
 * Calls `onAddress` with the connection's local address when its socket connects. Nodemailer's client creates the
 * socket after an asynchronous step and announces the established connection only through its internal
 * `_onConnect` (called for plain and implicit-TLS connections alike), so that method is wrapped on this instance.
 */
function captureLocalAddress(connection: SMTPConnection, onAddress: (address: string) => void): void {
  const internal = connection as unknown as { _onConnect?: () => void; _socket?: Socket | false };
  const original = internal._onConnect;
  if (typeof original !== 'function') return;
  internal._onConnect = function (this: unknown) {
    const address = internal._socket ? internal._socket.localAddress : undefined;
    if (address) onAddress(address);
    return original.call(this);
  };
}
