/**
 * The syntax of the RFC 8460 §4.4 `failure-details` fields, checked when an outcome is recorded and again when a
 * report is built (a store edited by hand, or a custom store, never puts an invalid value into a report).
 *
 * - `sending-mta-ip`, `receiving-ip`: an IPv4 or IPv6 address (§4.4: "the IP address of the ...").
 * - `receiving-mx-hostname`: a host name, in the A-label form `policy-domain` has (RFC 5890), lower case.
 * - `receiving-mx-helo`: the name the MX announced: a host name (A-label, lower case) or an address literal
 *   (`[192.0.2.1]`, `[IPv6:2001:db8::1]`, RFC 5321 §4.1.3).
 * - `failure-reason-code`: printable US-ASCII text, at most {@link MAX_FAILURE_REASON_LENGTH} characters (longer
 *   codes are cut, control characters such as CR, LF or NUL make it invalid).
 * A value that does not fit, or an address or host name longer than `maxFieldLength`, is left out of the detail
 * (the session still counts).
 */
import { isIP } from 'node:net';
import { normalizeDomainOrUndefined } from '../domain.js';
import type { TlsRptFailure } from './types.js';

/** Longest `failure-reason-code` kept, in characters. */
export const MAX_FAILURE_REASON_LENGTH = 255;

/** The optional text fields of a failure detail. */
export type FailureFieldName = Exclude<keyof TlsRptFailure, 'resultType'>;

export const FAILURE_FIELD_NAMES: readonly FailureFieldName[] = ['sendingMtaIp', 'receivingMxHostname', 'receivingMxHelo', 'receivingIp', 'additionalInformation', 'failureReasonCode'];

const PRINTABLE_ASCII = /^[\x20-\x7e]+$/;

/** `[192.0.2.1]` or `[IPv6:2001:db8::1]` (RFC 5321 §4.1.3 address literals), or undefined. */
function addressLiteral(value: string): string | undefined {
  const m = /^\[(?:IPv6:(.+)|([0-9.]+))\]$/i.exec(value);
  if (!m) return undefined;
  if (m[1] !== undefined) return isIP(m[1]) === 6 ? `[IPv6:${m[1].toLowerCase()}]` : undefined;
  return isIP(m[2]!) === 4 ? value : undefined;
}

/**
 * The valid form of one failure field (trimmed, normalised), or `undefined` when the value is invalid.
 * `additionalInformation` (§4.4: a URI) is only cut to `maxLength`.
 */
export function checkFailureField(name: FailureFieldName, value: string, maxLength: number): string | undefined {
  // An address or a host name cut short would name another host: one longer than the cap is left out instead.
  if (value.length > maxLength && name !== 'failureReasonCode' && name !== 'additionalInformation') return undefined;
  switch (name) {
    case 'sendingMtaIp':
    case 'receivingIp':
      // §4.4 sending-mta-ip / receiving-ip: an IP address.
      return isIP(value) !== 0 ? value.toLowerCase() : undefined;
    case 'receivingMxHostname':
      // §4.4 receiving-mx-hostname: a host name, as an A-label like policy-domain (RFC 5890).
      return normalizeDomainOrUndefined(value);
    case 'receivingMxHelo':
      return normalizeDomainOrUndefined(value) ?? addressLiteral(value);
    case 'failureReasonCode':
      // §4.4 failure-reason-code: text for humans and tools; printable ASCII, bounded.
      return PRINTABLE_ASCII.test(value) ? value.slice(0, Math.min(maxLength, MAX_FAILURE_REASON_LENGTH)) : undefined;
    case 'additionalInformation':
      return value.slice(0, maxLength);
  }
}

/**
 * Copies the valid failure fields of `failure` onto a new object with `resultType`; each invalid one is left out
 * and passed to `onInvalid`. Non-string and empty values are absent, not invalid.
 */
export function copyFailureFields(failure: Partial<Record<FailureFieldName, unknown>>, maxLength: number, onInvalid?: (field: FailureFieldName) => void): Partial<Record<FailureFieldName, string>> {
  const out: Partial<Record<FailureFieldName, string>> = {};
  for (const name of FAILURE_FIELD_NAMES) {
    const raw = failure[name];
    if (typeof raw !== 'string') continue;
    const trimmed = raw.trim();
    if (trimmed === '') continue;
    const valid = checkFailureField(name, trimmed, maxLength);
    if (valid === undefined) onInvalid?.(name);
    else out[name] = valid;
  }
  return out;
}
