/**
 * Shared result types of the engine.
 */
import type { MtaStsError } from './errors.js';
import type { PolicyFile, PolicyMode } from './policy/policy-file.js';

/**
 * The policy in force for a domain (RFC 8461 §3.3, §5), as `getPolicy` returns it: the {@link PolicyFile} fields,
 * the TXT `id` it was fetched for, its text and when it was fetched and expires. Frozen: it is shared with the engine's cache and every
 * concurrent caller, so it cannot be edited (copy `mx` to change it).
 */
export interface ActivePolicy {
  readonly version: 'STSv1';
  readonly mode: PolicyMode;
  /** `mx` patterns, normalised. */
  readonly mx: readonly string[];
  /** Seconds. */
  readonly maxAge: number;
  /** The TXT `id` this policy was fetched for. */
  readonly id: string;
  /** The raw policy text as served. */
  readonly text: string;
  /** Epoch ms of the fetch. */
  readonly fetchedAt: number;
  /** Epoch ms after which the policy expires (`fetchedAt + maxAge * 1000`). */
  readonly expiresAt: number;
}

/**
 * The status of a policy lookup:
 * - `policy`: a policy applies (`policy` is set; its mode may be `none`).
 * - `none`: the domain publishes no policy (no STS TXT record) and nothing is cached.
 * - `fetch-error`: a TXT record exists but the policy could not be fetched, nothing cached.
 * - `invalid`: the TXT record or the policy does not conform, nothing cached.
 * - `temp-error`: DNS failed temporarily (SERVFAIL, timeout), nothing cached.
 * Every status other than `policy` means "deliver as without MTA-STS" (RFC 8461 §3.3, §5) and is reported.
 */
export type PolicyStatus = 'policy' | 'none' | 'fetch-error' | 'invalid' | 'temp-error';

/**
 * Where the answer came from:
 * - `fetched`: discovered just now (DNS and, when needed, HTTPS).
 * - `cache`: a cached policy whose id still matches the TXT record (or TXT not re-checked yet).
 * - `stale-cache`: a cached, unexpired policy kept because discovery failed (RFC 8461 §3.3: never a downgrade).
 */
export type PolicySource = 'fetched' | 'cache' | 'stale-cache';

/** The result of `getPolicy` (frozen, like its policy). */
export interface PolicyLookup {
  /** The normalised policy domain. */
  readonly domain: string;
  readonly status: PolicyStatus;
  readonly policy?: ActivePolicy;
  readonly source: PolicySource;
  /** Why discovery failed (also set alongside a `stale-cache` policy). */
  readonly error?: MtaStsError;
  /** The TXT id seen in DNS during this lookup, when one was seen. */
  readonly txtId?: string;
}
