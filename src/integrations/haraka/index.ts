/**
 * `mta-sts-sender/haraka`: MTA-STS (RFC 8461) and TLS reporting (RFC 8460) for Haraka's own outbound delivery.
 *
 * Install in the Haraka directory with `npm install mta-sts-sender` and add one line to `config/plugins`:
 *
 * ```
 * mta-sts-sender/haraka
 * ```
 *
 * (Haraka finds plugins by path: the package ships a CommonJS plugin entry in `mta-sts-sender/haraka/`.) Configure
 * it in `config/mta-sts.ini` (see {@link parseHarakaConfig}); the file is reloaded when it changes.
 *
 * Per message, nothing global: under `enforce` only policy-listed MX hosts are used, in preference order, over
 * STARTTLS with TLS 1.2+ and a certificate valid for the MX name; no MAIL/RCPT/DATA before a validated TLS session;
 * an MX that fails is skipped and the next one tried; when none passes the message is deferred, never bounced
 * (RFC 8461 §5.1). Under `testing` mail is delivered as Haraka would, and every TLS result is recorded. Domains
 * without a policy are untouched. Every session outcome goes to TLS-RPT when `[tlsrpt]` is enabled.
 *
 * For a custom setup (a shared recorder, a Redis policy store), create `plugins/mta_sts.js`:
 *
 * ```js
 * Object.assign(exports, require('mta-sts-sender/haraka').createHarakaPlugin({ recorder, engine: { store } }));
 * ```
 *
 * @packageDocumentation
 */
export { createHarakaPlugin, HARAKA } from './plugin.js';
export type { HarakaMtaStsPlugin, HarakaNext, HarakaPluginOptions } from './plugin.js';
export { parseHarakaConfig, HARAKA_LOG_LEVELS } from './config.js';
export type { HarakaEngineConfig, HarakaLogLevel, HarakaMtaStsConfig, HarakaTlsRptConfig } from './config.js';
export { SUPPORTED_HARAKA_RANGE } from './internals.js';
