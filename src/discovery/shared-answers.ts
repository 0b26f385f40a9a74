/**
 * Shared DNS answers: the engine's view of its resolver.
 *
 * A burst of deliveries to one domain asks the same questions many times at once: the MX records of the domain
 * (RFC 5321 §5.1) and the A/AAAA records of each MX host. Asked one query per message, a thousand concurrent sends
 * are a thousand identical queries, enough to make a resolver drop some (and a dropped query defers the message).
 * So, per name and record type:
 * - concurrent queries share one query in flight (single flight), for every record type;
 * - a positive MX, A or AAAA answer is reused for a short, bounded time (`answerTtlMs`, a few seconds: far below any
 *   sane record TTL, so it never serves an answer a caching resolver would not), in an LRU bounded by `maxNames`;
 * - negative and failed answers (NXDOMAIN, NODATA, SERVFAIL, timeout) are never reused: the next caller asks again,
 *   so a transient SERVFAIL cannot stick;
 * - TXT answers (`_mta-sts`, `_smtp._tls`) are shared in flight but never reused: RFC 8461 §3.3 has the TXT record
 *   checked to notice a new policy id, and the engine decides how often (`txtCheckIntervalMs`).
 *
 * Every caller gets its own copy of the answer array: editing it cannot change what the next caller sees.
 */
import { LRUCache } from 'lru-cache';
import type { DnsResolver, MxRecord } from './resolver.js';

export interface SharedAnswersOptions {
  /** Reuse a positive MX/A/AAAA answer for at most this long, in ms. Default 5000; 0: share in-flight queries only. */
  answerTtlMs?: number;
  /** Most (name, type) answers kept. Default 10000. */
  maxNames?: number;
  /** `close()` cancels the inner resolver's outstanding queries (when it has `cancel()`). Default false. */
  cancelOnClose?: boolean;
}

/** A {@link DnsResolver} sharing answers per name and type; `close()` drops them (and may cancel queries). */
export interface SharedAnswersResolver extends DnsResolver {
  /** Forgets every reused answer; with `cancelOnClose`, also cancels the inner resolver's outstanding queries. */
  close(): void;
}

const DEFAULT_ANSWER_TTL_MS = 5_000;
const DEFAULT_MAX_NAMES = 10_000;

type Answer = readonly unknown[];

/** Wraps `inner` so that concurrent and repeated queries for one name share answers (see the module comment). */
export function shareAnswers(inner: DnsResolver, options: SharedAnswersOptions = {}): SharedAnswersResolver {
  const ttl = options.answerTtlMs ?? DEFAULT_ANSWER_TTL_MS;
  // lru-cache checks ttl against its own monotonic clock on read; no timers are created (ttlAutopurge is off).
  const answers = ttl > 0 ? new LRUCache<string, Answer>({ max: options.maxNames ?? DEFAULT_MAX_NAMES, ttl }) : undefined;
  const inflight = new Map<string, Promise<Answer>>();

  function ask<T>(type: string, name: string, query: () => Promise<T[]>, reuse: boolean): Promise<T[]> {
    // DNS names are case-insensitive (RFC 4343); the type comes first so that names never collide across types.
    const key = `${type} ${typeof name === 'string' ? name.toLowerCase() : String(name)}`;
    if (reuse && answers) {
      const hit = answers.get(key);
      if (hit !== undefined) return Promise.resolve(hit.slice() as T[]);
    }
    let pending = inflight.get(key);
    if (pending === undefined) {
      let started: Promise<T[]>;
      try {
        started = Promise.resolve(query());
      } catch (error) {
        started = Promise.reject(error); // a custom resolver that throws instead of rejecting
      }
      pending = started.then(
        (value) => {
          inflight.delete(key);
          const answer = Array.isArray(value) ? Object.freeze(value.map((v) => (typeof v === 'object' && v !== null ? Object.freeze(v) : v))) : value;
          if (reuse && answers && Array.isArray(answer) && answer.length > 0) answers.set(key, answer);
          return answer as Answer;
        },
        (error: unknown) => {
          inflight.delete(key);
          throw error;
        },
      );
      inflight.set(key, pending);
    }
    return pending.then((answer) => (Array.isArray(answer) ? (answer.slice() as T[]) : (answer as unknown as T[])));
  }

  return {
    resolveTxt: (name) => ask('TXT', name, () => inner.resolveTxt(name), false),
    resolveMx: (name) => ask<MxRecord>('MX', name, () => inner.resolveMx(name), true),
    resolve4: (name) => ask('A', name, () => inner.resolve4(name), true),
    resolve6: (name) => ask('AAAA', name, () => inner.resolve6(name), true),
    close() {
      answers?.clear();
      if (options.cancelOnClose) (inner as { cancel?: () => void }).cancel?.();
    },
  };
}
