/**
 * One SMTP connection of Haraka's outbound delivery to one MX host, as MTA-STS sees it (RFC 8461 §4.2, §5).
 *
 * Haraka decides about TLS inside `try_deliver_host_on_socket` and tells no hook about the handshake. This module
 * wraps the connection's socket (its own methods only; Haraka's code is not changed):
 *
 * - `socket.upgrade(options, cb)`, Haraka's STARTTLS: under `enforce` the TLS options become strict (SNI and
 *   certificate name = the MX host name, TLS 1.2 or later, the engine's trust roots, `rejectUnauthorized`; of
 *   Haraka's `tls.ini` options only the client identity is kept: `cert`, `key`, `pfx`, `passphrase`); under
 *   `testing` only SNI, trust roots and the strict name check are set so that the result tells what would have
 *   failed; without a policy the options are untouched. The finished (or failed) handshake is judged by the hooks
 *   (`verifySession` / `handshakeFailed`) and recorded once for TLS-RPT (RFC 8460).
 * - `socket.write`: under `enforce`, nothing but EHLO, LHLO, STARTTLS and QUIT leaves before a validated TLS
 *   session. A HELO (the MX refused EHLO, so it cannot offer STARTTLS) or any other command refuses the MX: the
 *   socket is destroyed and Haraka, seeing the connection close, tries the next MX host. Under `testing` and
 *   without a policy it only notes a MAIL FROM sent in plaintext (a `starttls-not-supported` session).
 * - STARTTLS's reply is waited for `starttlsTimeoutMs` (Haraka would wait its whole socket timeout). A STARTTLS left
 *   unanswered, by the timer or by the connection ending first, is recorded as `starttls-not-supported` (RFC 8460
 *   §4.3.1; a path attacker who swallows the command is reported) and the socket is destroyed: Haraka, seeing the
 *   connection close, tries the next MX host (under enforce, nothing was sent: §4.2).
 */
import type { DeliveryPlan, MxCandidate } from '../../plan/plan.js';
import type { OutcomeInput, SessionVerdict } from '../hooks.js';
import type { TlsRptResultType } from '../../errors.js';
import type { MtaStsHooks } from '../hooks.js';
import type { HarakaMx, HarakaSocket } from './internals.js';
import type { HarakaLog } from './log.js';
import { validatedSessionTls } from '../../tls/caller-tls.js';

/** What every attempt shares: the hooks (engine, recorder) and the log. */
export interface AttemptContext {
  hooks: MtaStsHooks;
  log: HarakaLog;
  /** How long to wait for the reply to STARTTLS, in ms (`[main] starttls_timeout_ms`). */
  starttlsTimeoutMs: number;
}

/** The state of one delivery attempt. */
export interface Attempt {
  readonly ctx: AttemptContext;
  readonly domain: string;
  readonly uuid: string | undefined;
  readonly plan: DeliveryPlan;
  /** Enforce the policy on this attempt's connections. */
  readonly enforce: boolean;
  /** The connection in progress. */
  current?: MxConnection;
}

const PRE_TLS_COMMANDS = new Set(['EHLO', 'LHLO', 'STARTTLS', 'QUIT']);
/** Socket events that end a connection (Haraka turns its socket timeout into an `error`). */
const ENDING_EVENTS = new Set(['close', 'end', 'error', 'timeout']);

/** One connection to one MX address within a delivery attempt. */
export class MxConnection {
  /** STARTTLS was answered 220 and the handshake began. */
  tlsStarted = false;
  /** Under enforce: the TLS session satisfied RFC 8461 §4.2; the transaction may proceed. */
  validated = false;
  /** The plugin refused this MX (socket destroyed). */
  refused = false;
  /** Haraka has moved on from this connection (next MX, deferral, bounce). */
  ended = false;
  /** An outcome went to TLS-RPT. */
  recorded = false;
  lastCommand: string | undefined;
  /** STARTTLS was sent and is not answered yet: the timer that ends the wait. */
  private starttlsWait: NodeJS.Timeout | undefined;
  readonly host: string;
  readonly ip: string | undefined;
  readonly sendingIp: string | undefined;

  constructor(
    readonly attempt: Attempt,
    readonly mx: HarakaMx,
    readonly socket: HarakaSocket,
    readonly candidate: MxCandidate,
    readonly plan: DeliveryPlan,
  ) {
    this.host = candidate.host;
    this.ip = socket.targetsocket?.remoteAddress ?? socket.remoteAddress ?? mx.exchange;
    this.sendingIp = socket.targetsocket?.localAddress ?? socket.localAddress;
  }

  private get context() {
    return { plan: this.plan, ...(this.ip ? { ip: this.ip } : {}), ...(this.sendingIp ? { sendingMtaIp: this.sendingIp } : {}) };
  }

  /** Records the session once (RFC 8460) and logs the verdict with domain, MX, mode and reason. */
  record(result: SessionVerdict | OutcomeInput, reason: string): void {
    if (this.recorded) return;
    this.recorded = true;
    const { hooks, log } = this.attempt.ctx;
    try {
      hooks.recordOutcome(this.candidate, result, this.context);
    } catch (error) {
      log('error', `mta-sts: recording the session with ${this.host} failed: ${String(error)}`, this.attempt.uuid);
    }
    const verdict = result.success ? 'pass' : `fail (${result.resultType ?? 'validation-failure'})`;
    log(result.success ? 'info' : 'warn', `mta-sts: domain=${this.attempt.domain} mode=${this.plan.mode} mx=${this.host} ip=${this.ip ?? '?'} tls=${verdict}: ${reason}`, this.attempt.uuid);
  }

  /**
   * Under enforce: gives up on this MX without sending anything more (Haraka, seeing the connection close, tries
   * the next one). `resultType` undefined: not a TLS failure (e.g. a refused greeting), nothing recorded.
   */
  refuse(resultType: TlsRptResultType | undefined, reason: string): void {
    if (this.refused) return;
    this.refused = true;
    const why = `${reason}; MX refused, trying the next one (RFC 8461 §4.2)`;
    if (resultType) this.record({ success: false, resultType }, why);
    else this.attempt.ctx.log('warn', `mta-sts: domain=${this.attempt.domain} mode=${this.plan.mode} mx=${this.host} ip=${this.ip ?? '?'}: ${why}`, this.attempt.uuid);
    try {
      this.socket.destroy();
    } catch {
      // already gone
    }
  }

  /** STARTTLS was sent: its reply is awaited `starttlsTimeoutMs` at most. */
  private awaitStartTlsReply(): void {
    if (this.starttlsWait !== undefined) return;
    const ms = this.attempt.ctx.starttlsTimeoutMs;
    this.starttlsWait = setTimeout(() => this.starttlsUnanswered(`no reply to STARTTLS after ${ms} ms`), ms);
    this.starttlsWait.unref?.();
  }

  /** A reply (or the end of the connection) came: the wait is over. */
  private stopStartTlsWait(): void {
    if (this.starttlsWait !== undefined) clearTimeout(this.starttlsWait);
    this.starttlsWait = undefined;
  }

  /**
   * STARTTLS went unanswered: the wait ran out, or the connection ended while waiting. RFC 8461 §4.2 requires
   * STARTTLS; RFC 8460 §4.3.1 counts a swallowed one as `starttls-not-supported` (failure reason `starttls no reply`).
   * The session is recorded and the socket destroyed: Haraka then tries the next MX host.
   */
  private starttlsUnanswered(why: string): void {
    this.stopStartTlsWait();
    if (this.recorded || this.refused || this.ended) return;
    const { hooks, log } = this.attempt.ctx;
    try {
      const v = hooks.handshakeFailed(this.candidate, new Error(why), { ...this.context, starttlsNoReply: true, plaintextFallback: false });
      this.record(v, `${v.reason}; connection closed, Haraka tries the next MX host`);
    } catch (error) {
      log('error', `mta-sts: judging the unanswered STARTTLS of ${this.host} failed: ${String(error)}`, this.attempt.uuid);
    }
    this.refused = true;
    try {
      this.socket.destroy();
    } catch {
      // already gone
    }
  }

  /** Installs the socket wrappers. */
  wrapSocket(): void {
    const socket = this.socket;
    const upgrade = socket.upgrade;
    const write = socket.write;
    const emit = socket.emit;
    const conn = this;
    // Server replies reach Haraka as 'line' events. Under enforce, before a validated TLS session, a reply that is
    // not a success is not Haraka's business: 5xx to STARTTLS would bounce the message, 5xx to EHLO would fall back
    // to HELO (plaintext, or a stuck message when TLS is forced), 4xx would defer it without trying the other MX
    // hosts. RFC 8461 §4.2 / §5.1: this MX is just not usable; swallow the reply and refuse the MX.
    socket.emit = function (this: HarakaSocket, event: string, ...args: unknown[]) {
      if (conn.starttlsWait !== undefined) {
        // The reply to STARTTLS came; or the connection ended (or timed out) without one: unanswered.
        if (event === 'line') conn.stopStartTlsWait();
        else if (ENDING_EVENTS.has(event)) conn.starttlsUnanswered(`the connection ended (${event}) before a reply to STARTTLS`);
      }
      if (event === 'line' && conn.attempt.enforce && !conn.validated) {
        if (conn.refused) return true;
        const line = String(args[0] ?? '');
        const reply = /^([2-5]\d\d)([ -])/.exec(line);
        const after = conn.lastCommand ?? 'the greeting';
        if (!reply) {
          conn.refuse(tlsCommand(conn.lastCommand) ? 'starttls-not-supported' : undefined, `unrecognised reply to ${after} before TLS: ${JSON.stringify(line.slice(0, 80))}`);
          return true;
        }
        if (reply[2] === ' ' && (reply[1]!.startsWith('4') || reply[1]!.startsWith('5'))) {
          conn.refuse(tlsCommand(conn.lastCommand) ? 'starttls-not-supported' : undefined, `${after} answered ${line.trim().slice(0, 120)}`);
          return true;
        }
      }
      return emit.call(this, event, ...args);
    };
    socket.upgrade = function (this: HarakaSocket, options, callback) {
      conn.lastCommand = 'STARTTLS';
      conn.tlsStarted = true;
      const merged = conn.tlsOptions(options);
      if (!merged) return;
      upgrade.call(this, merged, function (this: unknown, ...args: unknown[]) {
        conn.afterHandshake();
        if (conn.refused) return;
        return callback?.apply(this, args);
      });
      socket.cleartext?.once('error', (error) => {
        if (conn.recorded) return;
        const v = conn.attempt.ctx.hooks.handshakeFailed(conn.candidate, error, conn.context);
        conn.record(v, v.reason);
      });
    };
    socket.write = function (this: HarakaSocket, data, encoding, cb) {
      if (conn.refused) return false;
      if (!conn.validated) {
        const verb = commandOf(data);
        if (conn.attempt.enforce && !PRE_TLS_COMMANDS.has(verb)) {
          // RFC 8461 §4.2: no MAIL/RCPT/DATA (nor HELO, which means EHLO failed) before a validated TLS session.
          conn.refuse('starttls-not-supported', `${verb || 'data'} would be sent to ${conn.host} before a validated TLS session${verb === 'HELO' ? ' (EHLO refused, so no STARTTLS)' : ''}`);
          return false;
        }
        if (verb === 'MAIL' && !conn.tlsStarted && !conn.recorded) {
          const v = conn.attempt.ctx.hooks.verifySession(conn.candidate, null, conn.context);
          conn.record(v, `${v.reason}; delivering in plaintext (mode ${conn.plan.mode})`);
        }
        if (verb) conn.lastCommand = verb;
        if (verb === 'STARTTLS' && !conn.tlsStarted) conn.awaitStartTlsReply();
      }
      return write.call(this, data, encoding, cb);
    };
  }

  /** The options for Haraka's STARTTLS upgrade, by mode; `undefined` when the MX was refused. */
  private tlsOptions(options: Record<string, unknown>): Record<string, unknown> | undefined {
    const mode = this.plan.mode;
    if (mode === 'none') return options;
    const enforce = this.attempt.enforce;
    let ours: ReturnType<typeof this.attempt.ctx.hooks.mtaSts.tlsOptions>;
    try {
      ours = this.attempt.ctx.hooks.mtaSts.tlsOptions(this.host, enforce);
    } catch (error) {
      if (!enforce) return options;
      this.refuse('validation-failure', `no TLS options for ${this.host}: ${String(error)}`);
      return undefined;
    }
    // §4.2: in a validated session (enforce) the trust settings are the engine's alone (its roots, SNI and name check
    // = the MX host, TLS 1.2+, rejectUnauthorized); tls.ini contributes only the client identity (cert, key, pfx,
    // passphrase): the rule every integration applies (tls/caller-tls.ts).
    if (enforce) return validatedSessionTls<Record<string, unknown>>({ ...ours }, options);
    // testing: SNI and the certificate check use the MX host name, with a strict DNS-ID check (no CN fallback).
    const merged: Record<string, unknown> = { ...options, servername: ours.servername, checkServerIdentity: ours.checkServerIdentity };
    if (ours.ca !== undefined) merged.ca = ours.ca;
    return merged;
  }

  /** Judges the finished handshake; under enforce refuses an MX whose session does not satisfy §4.2. */
  private afterHandshake(): void {
    const cleartext = this.socket.cleartext;
    const hooks = this.attempt.ctx.hooks;
    const v = hooks.verifySession(this.candidate, (cleartext ?? null) as never, this.context);
    if (this.attempt.enforce && !v.proceed) {
      this.refuse(v.resultType ?? 'validation-failure', v.reason);
      return;
    }
    this.record(v, v.reason);
    if (this.attempt.enforce) this.validated = true;
  }
}

/** Replies to these tell that the MX cannot do STARTTLS (RFC 8460 `starttls-not-supported`). */
function tlsCommand(command: string | undefined): boolean {
  return command === 'EHLO' || command === 'LHLO' || command === 'STARTTLS';
}

function commandOf(data: unknown): string {
  if (typeof data !== 'string' && !Buffer.isBuffer(data)) return '';
  const head = (typeof data === 'string' ? data.slice(0, 16) : data.subarray(0, 16).toString('latin1')).toUpperCase();
  const match = /^([A-Z]+)(?:[ \r\n]|$)/.exec(head);
  return match ? match[1]! : '';
}
