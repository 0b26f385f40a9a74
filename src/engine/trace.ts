/**
 * The discovery observer: what `getPolicy(domain, { trace })` reports, step by step, as the engine discovers a
 * policy (RFC 8461 §3.1 TXT record, §3.3 fetch, §3.3/§5.1 cache decisions). For tools that show the decision
 * trace (the `mta-sts check` CLI); delivery never depends on it. Without a `trace` nothing is allocated: every
 * step object is built only when an observer is attached.
 */
import type { MtaStsError } from '../errors.js';
import type { PolicySource } from '../types.js';

/** The `_mta-sts` TXT query (RFC 8461 §3.1). */
export interface TxtTraceStep {
  step: 'txt';
  /** `_mta-sts.<domain>` */
  name: string;
  /** Every TXT record at the name (character-strings concatenated), STS or not; empty for NXDOMAIN/NODATA/errors. */
  records: string[];
  /** `record`: exactly one valid STS record (`id`); `none`: no STS record; `invalid`: §3.1 violation; `dns-error`: temporary failure. */
  outcome: 'record' | 'none' | 'invalid' | 'dns-error';
  id?: string;
  error?: MtaStsError;
  elapsedMs: number;
}

/** The HTTPS fetch of the policy (RFC 8461 §3.3). */
export interface FetchTraceStep {
  step: 'fetch';
  url: string;
  ok: boolean;
  /** HTTP status, when a response came. */
  status?: number;
  contentType?: string;
  /** Body bytes read (or declared, for a body over the limit). */
  bytes?: number;
  elapsedMs: number;
  /** The error code of a failed fetch (`MTASTS_HTTP_STATUS`, `MTASTS_WEBPKI_INVALID`, ...). */
  errorCode?: string;
  error?: MtaStsError;
}

/**
 * What the cache decided:
 * - `cached`: the cached policy is current (same TXT id, unexpired; or TXT checked recently), no fetch;
 * - `shared`: adopted from the shared tier (a fleet member, or this host before a restart), no fetch;
 * - `fetched`: fetched and stored;
 * - `backoff`: a recent failure for this id: no fetch now (§3.3);
 * - `fallback`: discovery did not complete; the unexpired cached policy applies (`stale-cache`) or none is known.
 */
export interface CacheTraceStep {
  step: 'cache';
  decision: 'cached' | 'shared' | 'fetched' | 'backoff' | 'fallback';
  /** The source of the result (`cache`, `fetched`, `stale-cache`). */
  source: PolicySource;
  /** The TXT id the decision was made for, when known. */
  id?: string;
  /** The cached policy's expiry (epoch ms), when a cached policy was used. */
  expiresAt?: number;
}

export type DiscoveryTraceStep = TxtTraceStep | FetchTraceStep | CacheTraceStep;

/** Receives discovery steps. Must not throw (errors are swallowed); called synchronously. */
export type DiscoveryTracer = (step: DiscoveryTraceStep) => void;

/** Delivers a step to every observer of one discovery. */
export function emitTrace(tracers: readonly DiscoveryTracer[], step: DiscoveryTraceStep): void {
  for (const t of tracers) {
    try {
      t(step);
    } catch {
      // an observer must not break discovery
    }
  }
}
