/**
 * A caller's TLS options in a validated session: the one rule every integration applies (the direct transport, the
 * guard, the hooks' `tlsOptionsFor(candidate, client)`, the Haraka plugin).
 *
 * RFC 8461 §4.2: under `enforce` the MX certificate must chain to a trusted root and name the MX host, over TLS 1.2 or
 * later. Which roots are trusted is the engine's configuration (`ca`, `systemRoots`), never a setting that happens to
 * sit on an SMTP client: a corporate or TLS-inspection CA on a transport must not decide MTA-STS validation. So in a
 * validated session the trust settings come from the engine alone (`ca`, `secureContext`, `checkServerIdentity`,
 * `rejectUnauthorized`, `minVersion`, `servername` and every other option of the caller are ignored), and only the
 * client's identity (`cert`, `key`, `pfx`, `passphrase`) is taken from the caller: an MX host may ask for a client
 * certificate, and presenting one changes nothing about how the server is verified.
 *
 * A caller's `secureContext` is opaque: it may carry trust roots, a client certificate, or both, and neither can be
 * taken out of it. Where a caller hands one over with options that last (a guarded transport's `tls`, the hooks'
 * `client` argument), it is refused at once with an option error saying to pass `cert` and `key` (or `pfx` and
 * `passphrase`) instead; where it arrives per connection (Haraka's `tls.ini`), it is dropped.
 */
import type { ConnectionOptions } from 'node:tls';
import { notHere, str, type OptionRule, type OptionSpec } from '../options.js';

/** The caller options that identify the client: kept in every session. */
export const CLIENT_IDENTITY_KEYS = Object.freeze(['cert', 'key', 'pfx', 'passphrase'] as const);

/** The client's identity for a TLS session (Node's `tls.connect` options of the same names). */
export type ClientTlsIdentity = Pick<ConnectionOptions, 'cert' | 'key' | 'pfx' | 'passphrase'>;

/** What to pass instead of a SecureContext. */
export const SECURE_CONTEXT_HINT =
  'a SecureContext cannot be split into trust roots and client certificate, and in a session validated under an MTA-STS policy the trust roots are the engine\'s (its ca and systemRoots options, RFC 8461 §4.2): pass the client certificate as tls.cert and tls.key (or tls.pfx and tls.passphrase), and extra trust roots as the engine\'s ca';

const ENGINE_TRUST = 'the trust settings of a validated session are the engine\'s (RFC 8461 §4.2): give extra roots as the engine\'s ca option; only the client identity (cert, key, pfx, passphrase) is taken from the caller';

/** PEM text or DER bytes, one or several (Node's `cert` / `key` / `pfx`). */
const pemOrBytes: OptionRule = (value) => {
  const one = (v: unknown) => typeof v === 'string' || Buffer.isBuffer(v) || (typeof v === 'object' && v !== null && ('pem' in v || 'buf' in v));
  return (Array.isArray(value) ? value.length > 0 && value.every(one) : one(value)) ? undefined : 'PEM text or a Buffer (or an array of them)';
};

/** The options `tlsOptionsFor(candidate, client)` takes: the client identity, and pointers for the trust settings. */
export const CLIENT_TLS_OPTION_SPEC: OptionSpec = Object.freeze({
  cert: pemOrBytes,
  key: pemOrBytes,
  pfx: pemOrBytes,
  passphrase: str('a string', true),
  secureContext: notHere(SECURE_CONTEXT_HINT),
  ca: notHere(ENGINE_TRUST),
  checkServerIdentity: notHere(ENGINE_TRUST),
  rejectUnauthorized: notHere(ENGINE_TRUST),
  minVersion: notHere(ENGINE_TRUST),
  servername: notHere(`${ENGINE_TRUST}; SNI is always the MX host name`),
});

/** The client identity options of `caller` (`cert`, `key`, `pfx`, `passphrase`), nothing else. */
export function clientIdentity(caller: object | null | undefined): ClientTlsIdentity {
  const identity: Record<string, unknown> = {};
  if (!caller) return identity;
  for (const key of CLIENT_IDENTITY_KEYS) {
    const value = (caller as Record<string, unknown>)[key];
    if (value !== undefined) identity[key] = value;
  }
  return identity as ClientTlsIdentity;
}

/**
 * The TLS options of a validated session (RFC 8461 §4.2): the engine's options (`engine`: trust roots, SNI and
 * verification name = the MX host, TLS 1.2+, `rejectUnauthorized`, the strict name check) plus the caller's client
 * identity. Every other option of `caller` is ignored. A fresh object; `engine` is not changed.
 */
export function validatedSessionTls<T extends object>(engine: T, caller: object | null | undefined): T {
  const identity = clientIdentity(caller);
  if (Object.keys(identity).length === 0) return { ...engine };
  const merged: Record<string, unknown> = { ...engine, ...identity };
  // A shared SecureContext holds the engine's roots but no client certificate, and Node ignores `cert`/`key` next
  // to a `secureContext`: Node builds the context from the merged options instead, with the engine's `ca` (or
  // Node's own roots when the engine has none, as the shared context does).
  delete merged.secureContext;
  return merged as T;
}
