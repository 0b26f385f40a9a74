/**
 * Which of a record's `rua` destinations (RFC 8460 §3) one report goes to.
 *
 * §3 lets a domain list several URIs, and a `mailto:` URI may itself list several addresses (RFC 6068, `%2C` inside a
 * `tlsrpt-uri`), so one TXT record can name thousands of destinations: each would get its own mail or POST of a
 * report that carries the domain's policy. The record is the domain's choice, the traffic is the sender's (RFC 8460
 * §7 "Reports as DDoS": whoever controls the policy domain's DNS chooses where reports go), so:
 * - duplicates are removed (a `mailto:` address with its domain compared case-insensitively, its local part exactly
 *   (RFC 5321 §2.4); an `https:` URL after WHATWG URL normalisation);
 * - at most `maxDestinationsPerReport` are used, in published order (the rest is reported, never sent to);
 * - an `https:` URL with userinfo is refused (RFC 9110 §4.2.4: deprecated, and a credential the domain hands the
 *   reporter);
 * - a destination inside the sender's own network is refused unless `allowInternalDestinations`: an IP literal in
 *   an internal range, and a host or mail domain that is not a public name (see {@link publicNameProblem}). Names
 *   that resolve to internal addresses are refused at connect time (`internal-address.ts`).
 *
 * Pure; nothing here looks up or connects.
 */
import { isIP } from 'node:net';
import { parse } from 'tldts';
import type { TlsRptDestination } from './discovery.js';
import { TlsRptError } from './errors.js';
import { isInternalAddress } from './internal-address.js';

/** Default of the reporter's `maxDestinationsPerReport`. */
export const DEFAULT_MAX_DESTINATIONS_PER_REPORT = 10;

/** Why a destination was refused. */
export type TlsRptRefusalReason = 'internal-address' | 'userinfo' | 'non-public-name';

/** A destination that is not used, with the error that says why (`TLSRPT_DESTINATION_REFUSED`). */
export interface RefusedDestination {
  destination: TlsRptDestination;
  error: TlsRptError;
}

/** What {@link chooseDestinations} kept and left out. */
export interface ChosenDestinations {
  /** The destinations to send to, in published order. */
  use: TlsRptDestination[];
  /** Refused destinations (within the limit). */
  refused: RefusedDestination[];
  /** Destinations in the record (`mailto:` lists counted per address). */
  published: number;
  /** Duplicates removed. */
  duplicates: number;
  /** Distinct destinations left out because of the limit. */
  overLimit: number;
}

/** Options of {@link chooseDestinations}. */
export interface ChooseDestinationsOptions {
  maxDestinationsPerReport: number;
  allowInternalDestinations: boolean;
}

/** De-duplicates, caps, then refuses internal targets (see the module comment). */
export function chooseDestinations(rua: readonly TlsRptDestination[], options: ChooseDestinationsOptions): ChosenDestinations {
  const seen = new Set<string>();
  const distinct: TlsRptDestination[] = [];
  for (const destination of rua) {
    const key = destinationKey(destination);
    if (seen.has(key)) continue;
    seen.add(key);
    distinct.push(destination);
  }
  // The cap comes before the checks, so the work (and the refusal events) per report stay bounded too.
  const kept = distinct.slice(0, options.maxDestinationsPerReport);
  const use: TlsRptDestination[] = [];
  const refused: RefusedDestination[] = [];
  for (const destination of kept) {
    const error = destinationRefusal(destination, options.allowInternalDestinations);
    if (error) refused.push({ destination, error });
    else use.push(destination);
  }
  return { use, refused, published: rua.length, duplicates: rua.length - distinct.length, overLimit: distinct.length - kept.length };
}

/**
 * One destination's label for results and events: the `https:` URI as published, or `mailto:<address>` (the
 * local part percent-encoded) for one address of a `mailto:` URI (whose URI may list thousands).
 */
export function destinationLabel(destination: TlsRptDestination): string {
  if (destination.kind === 'https') return destination.uri;
  const at = destination.address.lastIndexOf('@');
  // Percent-encoded again (RFC 6068 §2), so the label is a URI and prints no control characters.
  return `mailto:${encodeURIComponent(destination.address.slice(0, at))}@${destination.address.slice(at + 1)}`;
}

/** The identity of a destination: the normalised URL, or the address with a lower-case domain. */
function destinationKey(destination: TlsRptDestination): string {
  if (destination.kind === 'https') return destination.url;
  const at = destination.address.lastIndexOf('@');
  // RFC 5321 §2.4: the local part may be case-sensitive; the domain is not.
  return `mailto:${destination.address.slice(0, at)}@${destination.address.slice(at + 1).toLowerCase()}`;
}

/**
 * The refusal of a destination on its own (without DNS), or undefined when it may be used. Userinfo is refused
 * always; internal addresses and non-public names unless `allowInternal`.
 */
export function destinationRefusal(destination: TlsRptDestination, allowInternal: boolean): TlsRptError | undefined {
  if (destination.kind === 'mailto') {
    const domain = destination.address.slice(destination.address.lastIndexOf('@') + 1);
    const problem = allowInternal ? undefined : publicNameProblem(domain);
    return problem === undefined ? undefined : refusal('non-public-name', `report address ${destination.address}: ${problem}`, { address: destination.address });
  }
  const url = new URL(destination.url);
  // RFC 9110 §4.2.4: userinfo in an https URI is deprecated; here it would be a credential chosen by the domain.
  if (url.username !== '' || url.password !== '') return refusal('userinfo', `report URL ${destination.uri}: userinfo (user:password@) is refused`, { url: destination.uri });
  if (allowInternal) return undefined;
  const host = url.hostname;
  if (isInternalAddress(host)) return refusal('internal-address', `report URL ${destination.uri}: ${host} is an internal address`, { url: destination.uri, address: host });
  if (isIP(host.replace(/^\[(.*)\]$/, '$1')) !== 0) return undefined; // a public IP literal: checked again at connect time
  const problem = publicNameProblem(host);
  return problem === undefined ? undefined : refusal('non-public-name', `report URL ${destination.uri}: ${problem}`, { url: destination.uri });
}

/**
 * Why `name` (a normalised domain name) is not a public name, or undefined when it is. A public name lies below an
 * ICANN suffix of the Public Suffix List (via `tldts`) and is not that suffix itself. That refuses `localhost` and
 * `*.localhost` (RFC 6761 §6.3), single-label names, `.local` (RFC 6762 mDNS), `.internal`, `.home.arpa`
 * (RFC 8375) and the rest of `.arpa`, `.test` / `.example` / `.invalid` (RFC 6761), `.onion`, `.alt`, and private
 * top-level names such as `.corp` or `.lan`. A top-level domain delegated after the bundled list was built is
 * refused too, until `tldts` is updated.
 */
export function publicNameProblem(name: string): string | undefined {
  if (name === 'localhost' || name.endsWith('.localhost')) return `${name} is a loopback name (RFC 6761 §6.3)`;
  if (!name.includes('.')) return `${name} is a single-label name`;
  if (name === 'arpa' || name.endsWith('.arpa')) return `${name} is under .arpa, not a public mail or web name (RFC 8375 home.arpa included)`;
  const parsed = parse(name, { allowPrivateDomains: false });
  if (parsed.isIcann !== true) return `${name} is not under a public top-level domain (Public Suffix List)`;
  if (parsed.domain === null) return `${name} is a public suffix, not a registrable name`;
  return undefined;
}

function refusal(reason: TlsRptRefusalReason, message: string, details: Record<string, string>): TlsRptError {
  const hint = reason === 'userinfo' ? '' : ' (set allowInternalDestinations only for test worlds)';
  return new TlsRptError('TLSRPT_DESTINATION_REFUSED', `${message}${hint}`, { details: { reason, ...details } });
}
