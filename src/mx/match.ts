/**
 * MX host matching (RFC 8461 §4.1).
 *
 * A policy lists the MX hosts a sender may deliver to, as exact names or as `*.example.com`, where the wildcard
 * stands for exactly one leftmost label: it matches `mx1.example.com` but neither `example.com` nor
 * `a.b.example.com`. The same rule governs wildcard names in MX certificates (§4.2, RFC 6125).
 */

/** Lower-cases and strips one trailing dot, without allocating when the name is already normal. */
function normalizeHost(host: string): string {
  let h = host;
  if (h.endsWith('.')) h = h.slice(0, -1);
  for (let i = 0; i < h.length; i++) {
    const c = h.charCodeAt(i);
    if (c >= 65 && c <= 90) return h.toLowerCase();
  }
  return h;
}

/**
 * True when `host` matches `pattern` per RFC 8461 §4.1: equal (case-insensitive, trailing dot ignored), or the
 * pattern is `*.<suffix>` and the host is exactly one non-empty label followed by `.<suffix>`.
 */
export function mxMatchesPattern(host: string, pattern: string): boolean {
  if (typeof host !== 'string' || typeof pattern !== 'string') return false;
  const h = normalizeHost(host);
  const p = normalizeHost(pattern);
  if (h.length === 0 || p.length === 0) return false;
  if (p.startsWith('*.')) {
    // §4.1: the wildcard matches exactly one leftmost label.
    const suffix = p.slice(1); // ".example.com"
    if (suffix.length < 2 || h.length <= suffix.length || !h.endsWith(suffix)) return false;
    const label = h.slice(0, h.length - suffix.length);
    return label.length > 0 && !label.includes('.') && label !== '*';
  }
  return h === p; // §4.1: exact match
}

/** Returns the first pattern `host` matches, or `undefined`. */
export function findMatchingPattern(host: string, patterns: readonly string[]): string | undefined {
  for (const pattern of patterns) if (mxMatchesPattern(host, pattern)) return pattern;
  return undefined;
}

/** True when `host` matches any of the policy's `mx` patterns (RFC 8461 §4.1). */
export function mxMatchesPolicy(host: string, patterns: readonly string[]): boolean {
  return findMatchingPattern(host, patterns) !== undefined;
}
