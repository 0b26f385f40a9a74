/**
 * The options of an SMTP session the guard ({@link guardTransport}) runs itself (to an MX host of the recipient
 * domain, or to a smart host under its policy, RFC 8461 §3.4): the guarded transport's own settings (port, name,
 * timeouts, logger, `auth`, `tls`, STARTTLS behaviour), which the policy's TLS requirements override where it applies:
 * in a validated session (enforce) only the client identity of `tls` is used (`cert`, `key`, `pfx`, `passphrase`),
 * the trust settings are the engine's (RFC 8461 §4.2, `tls/caller-tls.ts`).
 */
import type { MailMessage } from 'nodemailer';
import type { SMTPConnectionOptions, SMTPEnvelope } from 'nodemailer/lib/smtp-connection';
import type { DeliveryPlan, MxCandidate } from '../../plan/plan.js';
import type { MtaStsHooks } from '../hooks.js';
import type { DeliverOptions } from './deliver.js';
import type { SmtpConnectionClass } from './session.js';

/** What {@link guardSessionOptions} takes. */
export interface GuardSessionInput {
  transport: { options: SMTPConnectionOptions & { forceAuth?: boolean }; getAuth?(authOpts?: unknown): unknown };
  options: { maxAddressesPerMx?: number; maxSessionsPerDomain?: number; plaintextFallback?: boolean; starttlsTimeoutMs?: number };
  hooks: MtaStsHooks;
  smtpConnection: SmtpConnectionClass;
  mail: MailMessage;
  plan: DeliveryPlan;
  candidate: MxCandidate;
  envelope: SMTPEnvelope & { to: string[] };
  message: Buffer;
}

/** The delivery options of one session the guard runs, from the guarded transport's settings. */
export function guardSessionOptions(input: GuardSessionInput): DeliverOptions {
  const options = input.transport.options;
  const connection: SMTPConnectionOptions = {
    ...(options.name ? { name: options.name } : {}),
    ...(options.connectionTimeout !== undefined ? { connectionTimeout: options.connectionTimeout } : {}),
    ...(options.greetingTimeout !== undefined ? { greetingTimeout: options.greetingTimeout } : {}),
    ...(options.socketTimeout !== undefined ? { socketTimeout: options.socketTimeout } : {}),
    ...(options.socketCloseTimeout !== undefined ? { socketCloseTimeout: options.socketCloseTimeout } : {}),
    ...(options.localAddress ? { localAddress: options.localAddress } : {}),
    ...(options.logger !== undefined ? { logger: options.logger } : {}),
    ...(options.debug ? { debug: true } : {}),
    ...(options.lmtp ? { lmtp: true } : {}),
    ...(options.secure ? { secure: true } : {}),
  };
  const auth = typeof input.transport.getAuth === 'function' ? input.transport.getAuth(input.mail.data.auth) : undefined;
  return {
    hooks: input.hooks,
    smtpConnection: input.smtpConnection,
    plan: input.plan,
    candidates: [input.candidate],
    envelope: input.envelope,
    message: input.message,
    port: Number(options.port) || (options.secure ? 465 : 587),
    connection,
    ...(auth ? { auth: auth as never } : {}),
    maxAddressesPerMx: input.options.maxAddressesPerMx ?? 2,
    maxSessions: input.options.maxSessionsPerDomain ?? 8,
    ...(options.tls ? { tlsBase: options.tls } : {}),
    // Outside enforce the transport keeps its own STARTTLS behaviour (delivery "as without MTA-STS").
    callerTls: { ...(options.requireTLS ? { requireTLS: true } : {}), ...(options.ignoreTLS ? { ignoreTLS: true } : {}), ...(options.opportunisticTLS ? { opportunisticTLS: true } : {}) },
    // One meaning everywhere: default true (as documented), never under enforce or when TLS is required, and
    // never with credentials: Nodemailer itself never retries without TLS after a failed handshake, so the
    // retry would hand the password in clear to whoever broke the handshake.
    plaintextFallback: auth ? false : (input.options.plaintextFallback ?? input.hooks.plaintextFallback),
    ...(options.forceAuth ? { forceAuth: true } : {}),
    ...(input.options.starttlsTimeoutMs !== undefined ? { starttlsTimeoutMs: input.options.starttlsTimeoutMs } : {}),
  };
}
