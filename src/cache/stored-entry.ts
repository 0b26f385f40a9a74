/**
 * The persisted form of a cached policy: the Redis store keeps it as JSON, the SQLite store validates its rows with it.
 *
 * A persisted entry is read back by another process, another version of this library, or after a crash; it may
 * also have been written by something else entirely (a shared Redis). So an entry is never trusted: the policy is
 * re-parsed from its text (RFC 8461 §3.2) and the metadata is checked, so that a foreign or tampered entry can
 * neither invent a policy nor keep one alive longer than its `max_age` allows (§3.3).
 *
 * Format (one JSON object, version 1):
 * `{"v":1,"domain":"example.com","id":"20240101","text":"version: STSv1\r\n…","fetchedAt":1700000000000,"expiresAt":1700604800000}`
 * The parsed `policy` is not stored: it is derived from `text`.
 */
import { normalizeDomainOrUndefined } from '../domain.js';
import { parsePolicy } from '../policy/policy-file.js';
import type { PolicyStoreEntry, StoredFetchFailure } from './store.js';

/** Version of the persisted format. */
export const STORED_POLICY_VERSION = 1;
/** Largest policy text accepted back from a store (the fetch limit's default, RFC 8461 §3.3). */
export const MAX_STORED_POLICY_TEXT = 65_536;
const STS_ID = /^[A-Za-z0-9]{1,32}$/; // RFC 8461 §3.1 sts-id

/** The JSON text of an entry. */
export function encodeStoredPolicy(entry: PolicyStoreEntry): string {
  return JSON.stringify({ v: STORED_POLICY_VERSION, domain: entry.domain, id: entry.id, text: entry.text, fetchedAt: entry.fetchedAt, expiresAt: entry.expiresAt });
}

/**
 * Validates a parsed persisted entry and rebuilds the {@link PolicyStoreEntry}. Throws a `TypeError` saying what is wrong;
 * `domain`, when given, must be the entry's domain (an entry filed under another name is foreign).
 */
export function decodeStoredPolicy(value: unknown, domain?: string): PolicyStoreEntry {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new TypeError('not an object');
  const v = value as Record<string, unknown>;
  if (v.v !== STORED_POLICY_VERSION) throw new TypeError(`unknown format version ${JSON.stringify(v.v)}`);
  if (typeof v.domain !== 'string' || normalizeDomainOrUndefined(v.domain) !== v.domain) throw new TypeError('invalid domain');
  if (domain !== undefined && v.domain !== domain) throw new TypeError(`entry is for ${v.domain}, not ${domain}`);
  if (typeof v.id !== 'string' || !STS_ID.test(v.id)) throw new TypeError('invalid id (RFC 8461 §3.1)');
  if (typeof v.text !== 'string' || v.text.length > MAX_STORED_POLICY_TEXT) throw new TypeError('invalid policy text');
  if (!Number.isSafeInteger(v.fetchedAt) || !Number.isSafeInteger(v.expiresAt)) throw new TypeError('invalid times');
  const fetchedAt = v.fetchedAt as number;
  const expiresAt = v.expiresAt as number;
  let policy;
  try {
    policy = parsePolicy(v.text);
  } catch (error) {
    throw new TypeError((error as Error).message);
  }
  // §3.3: a policy is cached for at most max_age seconds after it was fetched.
  if (expiresAt < fetchedAt || expiresAt > fetchedAt + policy.maxAge * 1000) throw new TypeError('expiresAt outside fetchedAt + max_age (RFC 8461 §3.3)');
  return { domain: v.domain, id: v.id, policy, text: v.text, fetchedAt, expiresAt };
}

/** Parses and validates an entry's JSON text (see {@link decodeStoredPolicy}). */
export function parseStoredPolicy(json: string, domain?: string): PolicyStoreEntry {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    throw new TypeError('not JSON');
  }
  return decodeStoredPolicy(value, domain);
}

/** Validates a persisted fetch failure (RFC 8461 §3.3 backoff); throws a `TypeError` when malformed. */
export function decodeFetchFailure(value: unknown): StoredFetchFailure {
  if (typeof value !== 'object' || value === null) throw new TypeError('not an object');
  const v = value as Record<string, unknown>;
  if (!Number.isSafeInteger(v.at) || typeof v.id !== 'string' || !STS_ID.test(v.id)) throw new TypeError('invalid fetch failure');
  if (typeof v.code !== 'string' || v.code.length > 64 || typeof v.message !== 'string') throw new TypeError('invalid fetch failure');
  return { at: v.at as number, id: v.id, code: v.code, message: v.message.slice(0, 1000) };
}
