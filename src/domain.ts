/**
 * Domain name validation and normalisation.
 *
 * Every domain that enters the library (policy domains, MX host names, policy `mx` patterns) goes through here:
 * lower-cased, trailing dot removed, internationalised names converted to A-labels (RFC 5890), and checked
 * against the LDH host name syntax (RFC 1123 / RFC 5321 §4.1.2 `Domain`). IP literals are not domains.
 */
import { domainToASCII, domainToUnicode } from 'node:url';
import { MtaStsError } from './errors.js';

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const ASCII_ONLY = /^[\x21-\x7e]+$/;

/**
 * Returns the normalised A-label form of `input`, or `undefined` when it is not a valid domain name.
 * Pure and allocation-light: the common case (already lower-case ASCII) does one regex test per label.
 */
export function normalizeDomainOrUndefined(input: unknown): string | undefined {
  if (typeof input !== 'string') return undefined;
  let name = input.trim();
  if (name.length === 0 || name.length > 1024) return undefined;
  if (name.endsWith('.')) name = name.slice(0, -1);
  if (name.length === 0) return undefined;
  if (!ASCII_ONLY.test(name)) {
    // IDN: convert U-labels to A-labels. domainToASCII returns '' for invalid input.
    name = domainToASCII(name);
    if (name === '') return undefined;
  } else {
    name = name.toLowerCase();
  }
  if (name.length > 253) return undefined;
  const labels = name.split('.');
  for (const label of labels) {
    if (!LABEL.test(label)) return undefined;
    if (label.startsWith('xn--') && !isValidALabel(label)) return undefined;
  }
  // IPv4 literals (192.0.2.1) pass the label syntax but are not domains: no top-level domain is all-numeric
  // (RFC 3696 §2), so a numeric last label rejects them. IPv6 literals already fail on ':'.
  if (/^[0-9]+$/.test(labels[labels.length - 1]!)) return undefined;
  return name;
}

/**
 * An A-label must decode to a U-label (RFC 5890 §2.3.2.1). Node versions differ on invalid ones (older ones return
 * '', newer ones pass them through), so the check is: it decodes, to something else, and encodes back to itself.
 */
function isValidALabel(label: string): boolean {
  const unicode = domainToUnicode(label);
  return unicode !== '' && unicode !== label && domainToASCII(unicode) === label;
}

/** Like `normalizeDomainOrUndefined` (internal) but throws `MTASTS_INVALID_DOMAIN`. */
export function normalizeDomain(input: unknown): string {
  const name = normalizeDomainOrUndefined(input);
  if (name === undefined) {
    throw new MtaStsError('MTASTS_INVALID_DOMAIN', `not a valid domain name: ${describe(input)}`, {
      details: { input: typeof input === 'string' ? input.slice(0, 300) : typeof input },
    });
  }
  return name;
}

function describe(input: unknown): string {
  if (typeof input !== 'string') return `(${typeof input})`;
  return JSON.stringify(input.length > 80 ? `${input.slice(0, 80)}…` : input);
}
