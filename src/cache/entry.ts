/**
 * Cached policy entries: validating what a store hands back, and freezing what the engine hands out.
 *
 * A second-tier store may be shared, external, older or newer than this library, or corrupted: an entry read from it
 * is accepted only when it has the right shape, belongs to the domain asked for, its text parses as a policy
 * (RFC 8461 §3.2) that agrees with the stored fields, and its expiry is not later than `max_age` allows (§3.3).
 * Entries the engine keeps and returns are deep-frozen copies, so no caller can edit the cache through a result.
 */
import { parsePolicy } from '../policy/policy-file.js';
import type { ActivePolicy } from '../types.js';
import type { PolicyStoreEntry, StoredFetchFailure } from './store.js';

/** Clock skew tolerated between fleet members when checking a stored `fetchedAt`, in ms. */
const MAX_CLOCK_SKEW_MS = 300_000;

/** Why a stored entry is refused, or undefined when it is acceptable. */
export function entryProblem(value: unknown, domain: string, now: number, maxPolicyBytes: number): string | undefined {
  if (typeof value !== 'object' || value === null) return 'not an object';
  const v = value as Partial<PolicyStoreEntry>;
  const p = v.policy;
  if (typeof v.id !== 'string' || typeof v.text !== 'string' || typeof v.fetchedAt !== 'number' || typeof v.expiresAt !== 'number') return 'missing fields';
  if (typeof p !== 'object' || p === null || !Array.isArray(p.mx) || typeof p.maxAge !== 'number') return 'missing policy fields';
  if (v.domain !== domain) return `entry is for ${JSON.stringify(String(v.domain).slice(0, 80))}`;
  if (Buffer.byteLength(v.text) > maxPolicyBytes) return 'policy text over maxPolicyBytes';
  if (v.fetchedAt > now + MAX_CLOCK_SKEW_MS) return 'fetched in the future';
  let parsed;
  try {
    parsed = parsePolicy(v.text, { maxBytes: maxPolicyBytes });
  } catch {
    return 'policy text does not parse (RFC 8461 §3.2)';
  }
  if (parsed.mode !== p.mode || parsed.maxAge !== p.maxAge || parsed.mx.join('\n') !== p.mx.join('\n')) return 'policy fields disagree with the policy text';
  if (v.expiresAt > v.fetchedAt + parsed.maxAge * 1000) return 'expiry later than max_age allows (RFC 8461 §3.3)';
  return undefined;
}

/** A deep-frozen copy of an entry (the local tier only holds these). */
export function frozenEntry(entry: PolicyStoreEntry): PolicyStoreEntry {
  if (Object.isFrozen(entry) && Object.isFrozen(entry.policy) && Object.isFrozen(entry.policy.mx)) return entry;
  const p = entry.policy;
  const policy = Object.freeze({
    version: p.version,
    mode: p.mode,
    mx: Object.freeze([...p.mx]) as string[],
    maxAge: p.maxAge,
    extensions: Object.freeze((p.extensions ?? []).map((e) => Object.freeze({ name: e.name, value: e.value }))) as Array<{ name: string; value: string }>,
  });
  return Object.freeze({ domain: entry.domain, id: entry.id, policy, text: entry.text, fetchedAt: entry.fetchedAt, expiresAt: entry.expiresAt });
}

/** The policy as `getPolicy` returns it: frozen; its `mx` is the cache's frozen array, which no caller can edit. */
export function toPolicy(entry: PolicyStoreEntry): ActivePolicy {
  const known = activePolicies.get(entry);
  if (known) return known;
  const frozen = frozenEntry(entry);
  const p = frozen.policy;
  const policy: ActivePolicy = Object.freeze({ version: p.version, mode: p.mode, mx: p.mx, maxAge: p.maxAge, id: entry.id, text: entry.text, fetchedAt: entry.fetchedAt, expiresAt: entry.expiresAt });
  if (frozen === entry) activePolicies.set(entry, policy); // a frozen entry never changes: its policy is built once
  return policy;
}

/** The frozen `ActivePolicy` of each frozen entry (the local tier's), built on first use; dropped with the entry. */
const activePolicies = new WeakMap<PolicyStoreEntry, ActivePolicy>();

/** True while the entry may be used (RFC 8461 §3.3: until `max_age` has passed). */
export function isUnexpired(entry: PolicyStoreEntry | undefined, now: number): entry is PolicyStoreEntry {
  return entry !== undefined && now < entry.expiresAt;
}

/** Shape check of a shared fetch-failure record. */
export function isStoredFetchFailure(value: unknown): value is StoredFetchFailure {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Partial<StoredFetchFailure>;
  return typeof v.at === 'number' && Number.isFinite(v.at) && typeof v.id === 'string' && typeof v.code === 'string' && typeof v.message === 'string';
}
