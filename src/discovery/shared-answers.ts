/**
 * Shared DNS answers: the engine's view of its resolver.
 *
 * A burst of deliveries to one domain asks the same questions many times at once: the MX records of the domain
 * (RFC 5321 §5.1) and the A/AAAA records of each MX host. Asked one query per message, a thousand concurrent sends
 * are a thousand identical queries, enough to make a resolver drop some (and a dropped query defers the message).
 * So, per name and record type:
 * - concurrent queries share one query in flight (single flight), for every record type and whatever the TTL: a
 *   TTL 0 record "can only be used for the transaction in progress" (RFC 1035 §3.2.1), and the callers that asked
 *   while the query was in flight are that transaction;
 * - once it has arrived, a positive MX, A or AAAA answer is reused for at most `answerTtlMs` and never beyond its
 *   TTL (RFC 1035 §3.2.1, RFC 2181 §8): an answer with TTL 0 is never reused. A/AAAA TTLs come from the resolver
 *   (`resolve4(name, { ttl: true })`, as `node:dns` answers it); an A/AAAA answer without TTLs is not reused;
 * - `node:dns` reports no MX TTL. An MX answer without TTLs is reused for at most `answerTtlMs`, and
 *   {@link SharedAnswersResolver.resolveMxAnswer} says when an answer was reused and what it was last checked
 *   against, so the planner asks again whenever a reused answer and the policy in force disagree
 *   (engine/planner.ts);
 * - negative and failed answers (NXDOMAIN, NODATA, SERVFAIL, timeout) are never reused: the next caller asks again,
 *   so a transient SERVFAIL cannot stick;
 * - TXT answers (`_mta-sts`, `_smtp._tls`) are shared in flight but never reused: RFC 8461 §3.3 has the TXT record
 *   checked to notice a new policy id, and the engine decides how often (`txtCheckIntervalMs`).
 *
 * Reused answers are kept in an LRU bounded by `maxNames`. Every caller gets its own copy of the answer array:
 * editing it cannot change what the next caller sees.
 */
import { performance } from 'node:perf_hooks';
import { LRUCache } from 'lru-cache';
import { isDnsNotFound, type DnsResolver, type MxRecord } from './resolver.js';

export interface SharedAnswersOptions {
  /**
   * Reuse a positive MX/A/AAAA answer for at most this long, in ms, and never beyond its TTL. Default 5000; 0: share
   * in-flight queries only.
   */
  answerTtlMs?: number;
  /** Most (name, type) answers kept. Default 10000. */
  maxNames?: number;
  /** `close()` cancels the inner resolver's outstanding queries (when it has `cancel()`). Default false. */
  cancelOnClose?: boolean;
}

/** An MX answer as the planner sees it: the records, and whether they were reused from an earlier query. */
export interface MxAnswer {
  /** The MX records (the caller's own copy). */
  records: MxRecord[];
  /** True when the answer was reused from an earlier query; false when it was asked for now (or was in flight). */
  reused: boolean;
  /** The label last attached to this answer with {@link MxAnswer.setLabel}; `undefined` when none was. */
  label: string | undefined;
  /** Attaches a label to this answer, seen by later callers that reuse it (the planner: the policy it checked it against). */
  setLabel(label: string): void;
}

/** A {@link DnsResolver} sharing answers per name and type; `close()` drops them (and may cancel queries). */
export interface SharedAnswersResolver extends DnsResolver {
  /** The MX records of `name` with how they were obtained; `fresh`: never a reused answer (one in flight is joined). */
  resolveMxAnswer(name: string, options?: { fresh?: boolean }): Promise<MxAnswer>;
  /** Forgets every reused answer; with `cancelOnClose`, also cancels the inner resolver's outstanding queries. */
  close(): void;
}

const DEFAULT_ANSWER_TTL_MS = 5_000;
const DEFAULT_MAX_NAMES = 10_000;
/** RFC 2181 §8: a TTL is at most 2^31 - 1 seconds. */
const MAX_TTL_SECONDS = 0x7fffffff;

type RecordType = 'TXT' | 'MX' | 'A' | 'AAAA';

/** One answer as received: shared by every caller of one query, and kept for reuse while `reuseUntil` lies ahead. */
interface Entry {
  /** The answer handed out (frozen); anything but an array is handed out as the resolver gave it. */
  readonly answer: unknown;
  /** Monotonic ms (`performance.now()`) until which the answer may be reused. */
  readonly reuseUntil: number;
  label?: string;
}

/** What a query gave: the answer to hand out, and the TTL of its records in seconds when the resolver reported it. */
interface Received {
  answer: unknown;
  ttlSeconds: number | undefined;
}

/**
 * The TTL of an RRset in seconds, or `undefined` when some record has none. RFC 2181 §8: a TTL with the most
 * significant bit set (here: anything outside 0..2^31-1) counts as 0. RFC 2181 §5.2: the records of an RRset share
 * one TTL; should they differ, the lowest counts.
 */
export function rrsetTtlSeconds(ttls: readonly unknown[]): number | undefined {
  if (ttls.length === 0) return undefined;
  let lowest = MAX_TTL_SECONDS;
  for (const ttl of ttls) {
    if (typeof ttl !== 'number' || Number.isNaN(ttl)) return undefined;
    lowest = Math.min(lowest, ttl < 0 || ttl > MAX_TTL_SECONDS ? 0 : Math.floor(ttl));
  }
  return lowest;
}

/** An A/AAAA answer: `{ address, ttl }` records (asked with `{ ttl: true }`) become addresses and a TTL. */
function receiveAddresses(value: unknown): Received {
  if (Array.isArray(value) && value.length > 0 && value.every((r) => typeof (r as { address?: unknown } | null)?.address === 'string')) {
    const records = value as Array<{ address: string; ttl?: unknown }>;
    return { answer: records.map((r) => r.address), ttlSeconds: rrsetTtlSeconds(records.map((r) => r.ttl)) };
  }
  return { answer: value, ttlSeconds: undefined }; // plain addresses (a resolver that reports no TTL), or garbage
}

/** An MX answer: records carry a TTL only when the resolver reports one (`node:dns` does not). */
function receiveMx(value: unknown): Received {
  if (!Array.isArray(value)) return { answer: value, ttlSeconds: undefined };
  return { answer: value, ttlSeconds: rrsetTtlSeconds(value.map((r) => (r as { ttl?: unknown } | null)?.ttl)) };
}

/** How long an answer may be reused, in ms: never beyond its TTL (RFC 1035 §3.2.1); without one, only an MX answer. */
function reuseMs(type: RecordType, ttlSeconds: number | undefined, capMs: number): number {
  if (type === 'TXT') return 0; // RFC 8461 §3.3: the engine checks the TXT id itself (`txtCheckIntervalMs`)
  if (ttlSeconds !== undefined) return Math.min(capMs, ttlSeconds * 1000);
  return type === 'MX' ? capMs : 0; // an unknown MX TTL: the planner re-asks when answer and policy disagree
}

/** A frozen answer (array and records), so that no caller can change what the others get. */
function freeze(answer: unknown): unknown {
  return Array.isArray(answer) ? Object.freeze(answer.map((v) => (typeof v === 'object' && v !== null ? Object.freeze(v) : v))) : answer;
}

/** The caller's own copy of an answer. */
function copy<T>(answer: unknown): T[] {
  return (Array.isArray(answer) ? answer.slice() : answer) as T[];
}

/** Wraps `inner` so that concurrent and repeated queries for one name share answers (see the module comment). */
export function shareAnswers(inner: DnsResolver, options: SharedAnswersOptions = {}): SharedAnswersResolver {
  const capMs = options.answerTtlMs ?? DEFAULT_ANSWER_TTL_MS;
  const answers = capMs > 0 ? new LRUCache<string, Entry>({ max: options.maxNames ?? DEFAULT_MAX_NAMES }) : undefined;
  const inflight = new Map<string, Promise<Entry>>();
  // node:dns answers `{ address, ttl }` records when asked with `{ ttl: true }`; other resolvers may ignore it.
  const withTtl = inner as unknown as { resolve4(name: string, o: { ttl: true }): Promise<unknown>; resolve6(name: string, o: { ttl: true }): Promise<unknown> };

  function start(type: RecordType, key: string, query: () => unknown, receive: (value: unknown) => Received): Promise<Entry> {
    let started: Promise<unknown>;
    try {
      started = Promise.resolve(query());
    } catch (error) {
      started = Promise.reject(error); // a custom resolver that throws instead of rejecting
    }
    const pending = started.then(
      (value) => {
        inflight.delete(key);
        const received = receive(value);
        const entry: Entry = { answer: freeze(received.answer), reuseUntil: performance.now() + reuseMs(type, received.ttlSeconds, capMs) };
        // Only a positive answer is reused, and only while its TTL lasts (RFC 1035 §3.2.1); a newer answer that may
        // not be reused supersedes a kept one all the same.
        if (answers && Array.isArray(entry.answer) && entry.answer.length > 0 && entry.reuseUntil > performance.now()) answers.set(key, entry);
        else answers?.delete(key);
        return entry;
      },
      (error: unknown) => {
        inflight.delete(key);
        if (isDnsNotFound(error)) answers?.delete(key); // NXDOMAIN / NODATA supersede a kept answer; SERVFAIL does not
        throw error;
      },
    );
    inflight.set(key, pending);
    return pending;
  }

  /** The entry answering `type name`: a reused one (unless `fresh`), the one in flight, or a new query's. */
  function ask(type: RecordType, name: string, query: () => unknown, receive: (value: unknown) => Received, fresh = false): Promise<{ entry: Entry; reused: boolean }> {
    // DNS names are case-insensitive (RFC 4343); the type comes first so that names never collide across types.
    const key = `${type} ${typeof name === 'string' ? name.toLowerCase() : String(name)}`;
    const kept = answers?.get(key);
    if (kept !== undefined) {
      if (!fresh && kept.reuseUntil > performance.now()) return Promise.resolve({ entry: kept, reused: true });
      if (kept.reuseUntil <= performance.now()) answers!.delete(key); // its TTL (or answerTtlMs) has run out
    }
    const pending = inflight.get(key) ?? start(type, key, query, receive);
    return pending.then((entry) => ({ entry, reused: false }));
  }

  const mx = (name: string, fresh?: boolean) => ask('MX', name, () => inner.resolveMx(name), receiveMx, fresh);
  return {
    resolveTxt: (name) => ask('TXT', name, () => inner.resolveTxt(name), (answer) => ({ answer, ttlSeconds: undefined })).then(({ entry }) => copy(entry.answer)),
    resolveMx: (name) => mx(name).then(({ entry }) => copy(entry.answer)),
    resolve4: (name) => ask('A', name, () => withTtl.resolve4(name, { ttl: true }), receiveAddresses).then(({ entry }) => copy(entry.answer)),
    resolve6: (name) => ask('AAAA', name, () => withTtl.resolve6(name, { ttl: true }), receiveAddresses).then(({ entry }) => copy(entry.answer)),
    resolveMxAnswer: (name, { fresh = false } = {}) =>
      mx(name, fresh).then(({ entry, reused }) => ({
        records: copy<MxRecord>(entry.answer),
        reused,
        label: entry.label,
        setLabel: (label: string) => {
          entry.label = label;
        },
      })),
    close() {
      answers?.clear();
      if (options.cancelOnClose) (inner as { cancel?: () => void }).cancel?.();
    },
  };
}
