/**
 * `mta-sts-sender/nodemailer`: MTA-STS (RFC 8461) for Nodemailer.
 *
 * - {@link createMtaStsTransport}: a transport that delivers straight to the recipients' MX hosts and enforces each
 *   domain's policy: `nodemailer.createTransport(createMtaStsTransport({ name: 'mail.example.org' }))`.
 * - {@link guardTransport}: adds MTA-STS to an existing SMTP transport where its host is one of the recipient
 *   domain's MX hosts, and the smart host's own policy where the host is a smart host (RFC 8461 §3.4).
 *
 * A refused delivery fails with `code: 'EMTASTS'`, `responseCode: 451`, `temporary: true` (defer, never bounce:
 * RFC 8461 §5.1) and the list of MX hosts tried with their RFC 8460 result types.
 *
 * {@link nodemailerHandshakeFailure} translates a Nodemailer `SMTPConnection` error for a custom client built on the
 * hooks (`mta-sts-sender/hooks`), whose decisions, events and types live there.
 *
 * Nodemailer (6 to 10) is an optional peer dependency: without it, the factories throw `MTASTS_MISSING_PEER`.
 *
 * @packageDocumentation
 */
export { createMtaStsTransport, MtaStsTransport, TRANSPORT_VERSION } from './transport.js';
export type { MtaStsTransportOptions, SendCallback } from './transport.js';
export { guardTransport, MtaStsGuard } from './guard.js';
export type { GuardTransportOptions, SmartHostNotice, SmtpTransportLike } from './guard.js';
export { MtaStsDeliveryError } from './deliver.js';
export { nodemailerHandshakeFailure } from './tls-failure.js';
export type { NodemailerHandshakeFailure } from './tls-failure.js';
export type { DomainDeliveryResult, MtaStsDeliveryErrorCode, MtaStsSentMessageInfo, MxAttempt } from './deliver.js';
