/**
 * The parts of Haraka's outbound delivery (`outbound/hmail.js`, `tls_socket.js`) the plugin relies on, and their
 * feature detection.
 *
 * Haraka has no per-message TLS settings and no hook that sees the STARTTLS handshake (its `tls.ini` `[outbound]`
 * options are process-wide). The plugin therefore overrides a few methods of one delivery's `HMailItem` as own
 * properties (nothing global is changed) and wraps the methods of one connection's socket. Those methods are
 * Haraka internals, stable from 3.0.4 to 3.3.x. When one is missing (another major version), the plugin cannot
 * enforce a policy: it defers mail to `enforce` domains and logs why (fail closed).
 */

/** Supported Haraka versions (also the optional peer dependency range). */
export const SUPPORTED_HARAKA_RANGE = '>=3.0.4 <4';

/** True when a Haraka version string is inside {@link SUPPORTED_HARAKA_RANGE} (>=3.0.4 <4). */
export function isSupportedHarakaVersion(version: string): boolean {
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (!m) return false;
  const [major, minor, patch] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return major === 3 && (minor > 0 || patch >= 4);
}

/** A Haraka MX entry (`net_utils.HarakaMx`). */
export interface HarakaMx {
  exchange: string;
  from_dns?: string;
  priority?: number;
  port?: number;
  [key: string]: unknown;
}

/** Haraka's `pluggableStream` (tls_socket.js) as the plugin uses it. */
export interface HarakaSocket {
  upgrade(options: Record<string, unknown>, callback?: (...args: unknown[]) => void): void;
  write(data: unknown, encoding?: unknown, callback?: unknown): boolean;
  destroy(): void;
  emit(event: string, ...args: unknown[]): boolean;
  isSecure(): boolean;
  cleartext?: HarakaTlsSocket;
  targetsocket?: { localAddress?: string; remoteAddress?: string };
  localAddress?: string;
  remoteAddress?: string;
}

/** The `tls.TLSSocket` Haraka creates on STARTTLS (`socket.cleartext`). */
export interface HarakaTlsSocket {
  once(event: 'error', listener: (error: unknown) => void): unknown;
  getProtocol(): string | null;
  getPeerCertificate(detailed?: boolean): unknown;
  authorized: boolean;
  authorizationError?: Error | string | null;
}

/** The methods of `HMailItem` the plugin overrides or calls, per delivery attempt. */
export interface HarakaHmail {
  todo?: { domain: string; uuid?: string; notes?: Record<string, unknown> };
  num_failures?: number;
  cfg?: { temp_fail_intervals?: unknown };
  mxlist?: HarakaMx[];
  get_force_tls(mx: HarakaMx): boolean;
  try_deliver(): unknown;
  try_deliver_host_on_socket(mx: HarakaMx, host: string, port: number, socket: HarakaSocket): unknown;
  temp_fail(err: unknown, extra?: unknown): unknown;
  bounce(err: unknown, opts?: unknown): unknown;
  [key: string | symbol]: unknown;
}

const HMAIL_METHODS = ['get_force_tls', 'try_deliver', 'try_deliver_host_on_socket', 'temp_fail', 'bounce'] as const;
export type OverriddenMethod = (typeof HMAIL_METHODS)[number];

/** What of the `HMailItem` internals is missing (empty: all present). */
export function missingHmailInternals(hmail: unknown): string[] {
  if (typeof hmail !== 'object' || hmail === null) return ['hmail'];
  const h = hmail as Record<string, unknown>;
  const missing: string[] = HMAIL_METHODS.filter((name) => typeof prototypeMethod(hmail as HarakaHmail, name) !== 'function').map((n) => `hmail.${n}()`);
  if (typeof h.todo !== 'object' || h.todo === null || typeof (h.todo as { domain?: unknown }).domain !== 'string') missing.push('hmail.todo.domain');
  return missing;
}

/** What of the socket internals is missing (checked on each connection). */
export function missingSocketInternals(socket: unknown): string[] {
  if (typeof socket !== 'object' || socket === null) return ['socket'];
  const s = socket as Record<string, unknown>;
  return ['upgrade', 'write', 'emit', 'destroy', 'isSecure'].filter((name) => typeof s[name] !== 'function').map((n) => `socket.${n}()`);
}

/** Haraka's own implementation of a method (the prototype's), whatever own overrides are installed. */
export function prototypeMethod<K extends OverriddenMethod>(hmail: HarakaHmail, name: K): HarakaHmail[K] | undefined {
  let proto = Object.getPrototypeOf(hmail) as Record<string, unknown> | null;
  while (proto) {
    if (Object.hasOwn(proto, name) && typeof proto[name] === 'function') return proto[name] as HarakaHmail[K];
    proto = Object.getPrototypeOf(proto) as Record<string, unknown> | null;
  }
  return undefined;
}

const OVERRIDE = Symbol.for('mta-sts-sender.haraka.override');

/** Installs an own-property override of one method on one hmail (marked, so it can be removed later). */
export function override<K extends OverriddenMethod>(hmail: HarakaHmail, name: K, fn: HarakaHmail[K]): void {
  Object.defineProperty(fn, OVERRIDE, { value: true });
  Object.defineProperty(hmail, name, { value: fn, configurable: true, writable: true, enumerable: false });
}

/** Removes the plugin's overrides from an hmail (a later attempt whose policy is no longer enforced). */
export function removeOverrides(hmail: HarakaHmail, keep: readonly OverriddenMethod[] = []): void {
  for (const name of HMAIL_METHODS) {
    if (keep.includes(name)) continue;
    const own = Object.getOwnPropertyDescriptor(hmail, name);
    if (own && typeof own.value === 'function' && (own.value as Record<symbol, unknown>)[OVERRIDE]) delete hmail[name];
  }
}

/** The last delivery attempt Haraka makes before it bounces on a temporary failure (RFC 8461 §5.1 re-check). */
export function isLastAttempt(hmail: HarakaHmail): boolean {
  const intervals = hmail.cfg?.temp_fail_intervals;
  return Array.isArray(intervals) && typeof hmail.num_failures === 'number' && hmail.num_failures >= intervals.length;
}
