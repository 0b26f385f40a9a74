/**
 * A bounded wait for the server's reply to STARTTLS (RFC 3207 §4) in Nodemailer's SMTP client.
 *
 * Nodemailer waits for that reply as long as for any reply: its socket timeout (minutes; RFC 5321 §4.5.3.2). An MX,
 * or a path attacker who strips STARTTLS, that swallows the command then costs the whole socket timeout and ends as
 * a plain connection failure, and the TLS-RPT report never learns of it. This watch notes when STARTTLS is sent and
 * when its reply arrives; when no reply arrives within `timeoutMs` it ends the wait, so the session can count as
 * `starttls-not-supported` (RFC 8460 §4.3.1, RFC 8461 §4.2: STARTTLS is required) after a few seconds.
 *
 * Nodemailer announces neither step, so two methods of the one connection instance are wrapped: `_sendCommand`
 * (the command leaves) and `_actionSTARTTLS` (its reply is handled), both present from Nodemailer 6 to 10. When
 * either is missing, nothing is wrapped and the wait is Nodemailer's own (no bound, nothing downgraded).
 */
import type SMTPConnection from 'nodemailer/lib/smtp-connection';

/** The watch over one connection's STARTTLS command. */
export interface StartTlsReplyWatch {
  /** STARTTLS was sent and no reply to it has arrived (yet): a session ending now ended unanswered. */
  readonly awaitingReply: boolean;
  /** Stops the timer (idempotent). */
  stop(): void;
}

type Internals = { _sendCommand?: (str: unknown, ...rest: unknown[]) => unknown; _actionSTARTTLS?: (str: unknown) => unknown };

/**
 * Watches `connection` for STARTTLS; calls `onTimeout` (once) when its reply has not arrived `timeoutMs` after the
 * command was sent. Install before `connect()`.
 */
export function watchStartTlsReply(connection: SMTPConnection, timeoutMs: number, onTimeout: (error: Error & { code: string; command: string }) => void): StartTlsReplyWatch {
  const internal = connection as unknown as Internals;
  const send = internal._sendCommand;
  const action = internal._actionSTARTTLS;
  let timer: NodeJS.Timeout | undefined;
  let awaitingReply = false;
  const stop = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  };
  const watch: StartTlsReplyWatch = {
    get awaitingReply() {
      return awaitingReply;
    },
    stop,
  };
  if (typeof send !== 'function' || typeof action !== 'function') return watch;
  internal._sendCommand = function (this: unknown, str: unknown, ...rest: unknown[]) {
    if (typeof str === 'string' && str.trim().toUpperCase() === 'STARTTLS' && !awaitingReply) {
      awaitingReply = true;
      timer = setTimeout(() => {
        timer = undefined;
        const error = Object.assign(new Error(`no reply to STARTTLS after ${timeoutMs} ms`), { code: 'ETIMEDOUT', command: 'STARTTLS' });
        onTimeout(error);
      }, timeoutMs);
      timer.unref?.();
    }
    return send.call(this, str, ...rest);
  };
  internal._actionSTARTTLS = function (this: unknown, str: unknown) {
    // The reply arrived (2xx: the TLS handshake follows, bounded by Nodemailer's greeting timeout; else a refusal).
    awaitingReply = false;
    stop();
    return action.call(this, str);
  };
  return watch;
}
