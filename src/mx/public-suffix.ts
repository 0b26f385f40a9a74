/**
 * Public-suffix knowledge for MX names and policy `mx` patterns, from the Public Suffix List (via `tldts`).
 *
 * RFC 8461 §4.1 lets a policy's `mx` pattern start with `*.`, matching any host one label below the rest. A
 * pattern whose rest is a public suffix (`*.co.uk`, `*.com`, `*.github.io`) matches hosts anyone can register, so
 * the policy no longer says which MX hosts are the domain's: no hand-written rule can know where registrable
 * names begin, the Public Suffix List does. The same list tells a typo in a top-level domain (`mx.example.con`)
 * from a real one. Special-use names (RFC 6761 `test`, `example`, `invalid`, `localhost`; RFC 6762 `local`;
 * RFC 7686 `onion`; RFC 9476 `alt`) are known names, not typos.
 *
 * Pure functions over normalised (lower-case A-label) names; a lookup costs a few microseconds (see
 * bench/public-suffix.ts). The list is compiled into `tldts`, so nothing is fetched at run time.
 */
import { getPublicSuffix, parse } from 'tldts';

/** Special-use top-level names (RFC 6761 §6, RFC 6762 §3, RFC 7686 §2, RFC 9476 §2): reserved, never typos. */
const SPECIAL_USE_TLDS: ReadonlySet<string> = new Set(['test', 'example', 'invalid', 'localhost', 'local', 'onion', 'alt']);

/**
 * The public suffix that the wildcard of an `mx` pattern covers, or `undefined` when the pattern is not a wildcard
 * or its base is a registrable name. `*.co.uk` → `co.uk`; `*.com` → `com`; `*.github.io` → `github.io` (a private
 * suffix of the list: anyone can have a host there too); `*.example.com` → `undefined`.
 */
export function wildcardPublicSuffix(pattern: string): string | undefined {
  if (!pattern.startsWith('*.')) return undefined;
  const base = pattern.slice(2);
  if (base === '' || !base.includes('.')) return base === '' ? undefined : base; // `*.com`: a whole top-level domain
  return getPublicSuffix(base, { allowPrivateDomains: true }) === base ? base : undefined;
}

/**
 * The top-level domain of `name` when it is in neither the Public Suffix List nor the special-use names (likely a
 * typo such as `con` for `com`), else `undefined`. Accepts a host name or an `mx` pattern (`*.` is ignored).
 */
export function unknownTopLevelDomain(name: string): string | undefined {
  const host = name.startsWith('*.') ? name.slice(2) : name;
  const tld = host.slice(host.lastIndexOf('.') + 1);
  if (tld === '' || SPECIAL_USE_TLDS.has(tld)) return undefined;
  // Without a list entry, tldts falls back to the "*" rule and reports the label as a non-ICANN suffix.
  return parse(tld, { allowPrivateDomains: false }).isIcann === true ? undefined : tld;
}

/** True when `value` is an IP address literal (IPv4, or IPv6 with or without brackets), not a host name. */
export function isIpLiteral(value: string): boolean {
  return parse(value).isIp === true;
}
