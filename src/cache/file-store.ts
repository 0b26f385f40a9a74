/**
 * A policy store for one host that survives restarts (RFC 8461 §3.3, §5.1).
 *
 * §3.3 lets a sender keep using a cached policy until its `max_age` expires, whatever happens to DNS and HTTPS in
 * the meantime: that is what protects mail from an attacker who blocks discovery. A cache held only in memory
 * forgets every `enforce` policy when the MTA restarts, so a restart during such an attack is a downgrade. This
 * store keeps the policies in memory (bounded in entries and bytes, least recently used evicted) and mirrors them
 * to one file that is read back when the process starts.
 *
 * File format: UTF-8 lines. The first is `{"format":"mta-sts-sender/policy-cache","version":1}`; every other line
 * is one entry in the persisted form of {@link encodeStoredPolicy}, least recently used first. Entries are
 * validated on load (the policy text is parsed again, the times are checked against `max_age`); a bad line is
 * skipped, expired entries are dropped.
 *
 * Writes are atomic: the whole file is written to a temporary file in the same directory, fsynced, and renamed
 * over the old one, so a crash leaves the old or the new file, never a mix. Changes are coalesced: at most one
 * write per `writeDelayMs`, and one at a time. A corrupt, foreign or unreadable file is reported (an event and a
 * log line, `MTASTS_STORE_CORRUPT` / `MTASTS_STORE_FAILED`), copied aside to `<path>.corrupt`, and the store keeps
 * working from memory: a broken file never throws into the delivery path.
 *
 * One file belongs to one process (one store instance) at a time; a fleet shares `mta-sts-sender/redis` instead.
 */
import { copyFile, readFile, stat } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { LRUCache } from 'lru-cache';
import { MtaStsError } from '../errors.js';
import { silentLogger, type Logger } from '../logger.js';
import { removeStaleTempFiles, writeFileAtomically } from './atomic-file.js';
import type { PolicyStoreEntry, PolicyStore } from './store.js';
import { encodeStoredPolicy, parseStoredPolicy } from './stored-entry.js';

/** Options of {@link createFilePolicyStore}. */
export interface FilePolicyStoreOptions {
  /** The cache file. Its directory must exist and be writable; the file is created on the first write. */
  path: string;
  /** Most policies kept; the least recently used is evicted beyond it. Default 100000. */
  maxEntries?: number;
  /** Most bytes of persisted entries kept (the file's size, roughly); least recently used evicted. Default 64 MiB. */
  maxBytes?: number;
  /** Changes are written at most this long after they happen, coalesced, in ms. Default 1000. */
  writeDelayMs?: number;
  /** fsync the file (and its directory) on every write. Default true. */
  fsync?: boolean;
  /** Clock, epoch ms, to drop expired entries. Default `Date.now`. */
  now?: () => number;
  logger?: Logger;
  /** Gets every {@link FilePolicyStoreEvent}. Must not throw (errors are swallowed). */
  onEvent?: (event: FilePolicyStoreEvent) => void;
}

/** What the file store reports. */
export type FilePolicyStoreEvent =
  /** The file was read: `entries` kept, `skipped` invalid lines, `expired` entries dropped, in `ms`. */
  | { type: 'loaded'; entries: number; skipped: number; expired: number; ms: number }
  /** The file (or some of its lines) did not validate; it was copied to `copiedTo` and is rewritten from memory. */
  | { type: 'corrupt'; error: MtaStsError; skipped: number; kept: number; copiedTo?: string }
  /** Reading or writing the file failed (`MTASTS_STORE_FAILED`); the store keeps working from memory. */
  | { type: 'store-error'; operation: 'read' | 'write'; error: MtaStsError }
  /** The file was rewritten. */
  | { type: 'written'; entries: number; bytes: number; ms: number };

const FORMAT = 'mta-sts-sender/policy-cache';
const HEADER = JSON.stringify({ format: FORMAT, version: 1 });
const MAX_RETRY_DELAY_MS = 60_000;

/** The start of every entry line (`encodeStoredPolicy` writes `v` then `domain` first). */
const LINE_HEAD = '{"v":1,"domain":"';
const EXPIRES = '"expiresAt":';
/** Entries validated per event-loop turn by the load-time validation pass. */
const VALIDATE_CHUNK = 2000;

/**
 * The store returned by {@link createFilePolicyStore}. Policies are held as their persisted JSON line (compact, and
 * written back as is); every `get` parses and validates the line, so nothing read from disk is used unchecked.
 */
export class FilePolicyStore implements PolicyStore {
  readonly path: string;
  /**
   * Settles once the file was read and every entry in it validated (never rejects; problems are events). Lookups
   * do not wait for the validation: they start as soon as the file is indexed.
   */
  readonly ready: Promise<void>;
  readonly #indexed: Promise<void>;
  readonly #cache: LRUCache<string, string>;
  readonly #writeDelayMs: number;
  readonly #fsync: boolean;
  readonly #maxFileBytes: number;
  readonly #now: () => number;
  readonly #logger: Logger;
  readonly #onEvent: ((event: FilePolicyStoreEvent) => void) | undefined;
  #loaded = false;
  #dirty = false;
  #timer: NodeJS.Timeout | undefined;
  #writing: Promise<void> | undefined;
  #failures = 0;
  /** What the load found (the validation pass adds to it). */
  #counts: { skipped: number; expired: number; firstProblem?: string } = { skipped: 0, expired: 0 };

  constructor(options: Required<Pick<FilePolicyStoreOptions, 'path' | 'maxEntries' | 'maxBytes' | 'writeDelayMs' | 'fsync'>> & FilePolicyStoreOptions) {
    this.path = options.path;
    this.#writeDelayMs = options.writeDelayMs;
    this.#fsync = options.fsync;
    this.#now = options.now ?? Date.now;
    this.#logger = options.logger ?? silentLogger;
    this.#onEvent = options.onEvent;
    this.#maxFileBytes = options.maxBytes * 2 + 65_536;
    this.#cache = new LRUCache<string, string>({ max: options.maxEntries, maxSize: options.maxBytes, sizeCalculation: (line) => line.length + 1 });
    const started = performance.now();
    this.#indexed = this.#load();
    this.ready = this.#indexed.then(() => this.#validateAll(started));
  }

  get(domain: string): PolicyStoreEntry | undefined | Promise<PolicyStoreEntry | undefined> {
    if (!this.#loaded) return this.#indexed.then(() => this.get(domain));
    const line = this.#cache.get(domain);
    if (line === undefined) return undefined;
    try {
      return parseStoredPolicy(line, domain);
    } catch (error) {
      this.#cache.delete(domain);
      void this.#corrupt(`has an invalid entry for ${domain}: ${(error as Error).message}`, 1, this.#cache.size);
      return undefined;
    }
  }

  set(domain: string, entry: PolicyStoreEntry): void | Promise<void> {
    if (!this.#loaded) return this.#indexed.then(() => this.set(domain, entry));
    const line = encodeStoredPolicy(entry);
    this.#cache.set(domain, line, { size: Buffer.byteLength(line) + 1 });
    this.#changed();
  }

  delete(domain: string): void | Promise<void> {
    if (!this.#loaded) return this.#indexed.then(() => this.delete(domain));
    if (this.#cache.delete(domain)) this.#changed();
  }

  domains(): Iterable<string> | Promise<Iterable<string>> {
    if (!this.#loaded) return this.#indexed.then(() => [...this.#cache.keys()]);
    return [...this.#cache.keys()];
  }

  /** Policies held in memory. */
  get size(): number {
    return this.#cache.size;
  }

  /** Writes pending changes now and waits for the write. Never rejects (a failure is a `store-error` event). */
  async flush(): Promise<void> {
    await this.ready;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    while (this.#writing) await this.#writing;
    if (this.#dirty) await this.#write();
  }

  /** Writes pending changes (the same as {@link flush}; later changes are still written). */
  async close(): Promise<void> {
    await this.flush();
  }

  #emit(event: FilePolicyStoreEvent): void {
    try {
      this.#onEvent?.(event);
    } catch {
      // a throwing listener must not break the store
    }
  }

  #changed(): void {
    this.#dirty = true;
    this.#schedule(this.#writeDelayMs);
  }

  #schedule(delayMs: number): void {
    if (this.#timer || this.#writing) return; // a running write reschedules when it ends
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#write();
    }, delayMs);
    this.#timer.unref();
  }

  /**
   * Reads and indexes the file: each line's domain and expiry are read without parsing the JSON, so lookups can
   * start at once; {@link #validateAll} then checks every entry fully.
   */
  async #load(): Promise<void> {
    await removeStaleTempFiles(this.path);
    let text: string | undefined;
    try {
      const info = await stat(this.path);
      if (info.size > this.#maxFileBytes) {
        await this.#corrupt(`is ${info.size} bytes, more than twice maxBytes`, 0, 0);
      } else {
        text = await readFile(this.path, 'utf8');
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') this.#failed('read', `reading ${this.path} failed: ${String(error)}`, error);
    }
    this.#counts = { skipped: 0, expired: 0 };
    if (text !== undefined && text !== '') {
      const lines = text.split('\n');
      if (lines[0] !== HEADER) {
        await this.#corrupt('is not an mta-sts-sender policy cache (unknown first line)', lines.length, 0);
      } else {
        const now = this.#now();
        for (let i = 1; i < lines.length; i++) {
          const line = lines[i] as string;
          if (line === '') continue;
          const domainEnd = line.startsWith(LINE_HEAD) ? line.indexOf('"', LINE_HEAD.length) : -1;
          const at = line.lastIndexOf(EXPIRES);
          const expiresAt = at === -1 ? NaN : Number(line.slice(at + EXPIRES.length, -1));
          if (domainEnd === -1 || !Number.isSafeInteger(expiresAt) || !line.endsWith('}')) {
            this.#counts.skipped++;
            this.#counts.firstProblem ??= `line ${i + 1}: not an entry`;
            continue;
          }
          if (now >= expiresAt) {
            this.#counts.expired++;
            continue;
          }
          const domain = line.slice(LINE_HEAD.length, domainEnd);
          if (!this.#cache.has(domain)) this.#cache.set(domain, line, { size: line.length + 1 });
        }
        if (this.#counts.expired > 0 || this.#counts.skipped > 0) this.#dirty = true;
      }
    }
    this.#loaded = true;
  }

  /** Validates every loaded entry (a few thousand per event-loop turn); drops and reports the invalid ones. */
  async #validateAll(started: number): Promise<void> {
    const counts = this.#counts;
    const domains = [...this.#cache.keys()];
    for (let i = 0; i < domains.length; i += VALIDATE_CHUNK) {
      if (i > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      for (const domain of domains.slice(i, i + VALIDATE_CHUNK)) {
        const line = this.#cache.peek(domain);
        if (line === undefined) continue;
        try {
          parseStoredPolicy(line, domain);
        } catch (error) {
          this.#cache.delete(domain);
          counts.skipped++;
          counts.firstProblem ??= `${domain}: ${(error as Error).message}`;
        }
      }
    }
    const entries = this.#cache.size;
    if (counts.skipped > 0) await this.#corrupt(`has ${counts.skipped} invalid entries (first: ${counts.firstProblem})`, counts.skipped, entries);
    const ms = performance.now() - started;
    this.#emit({ type: 'loaded', entries, skipped: counts.skipped, expired: counts.expired, ms });
    this.#logger.debug?.('mta-sts: policy cache file loaded', { path: this.path, entries, skipped: counts.skipped, expired: counts.expired, ms: Math.round(ms) });
    if (this.#dirty) this.#schedule(this.#writeDelayMs);
  }

  /** Reports a corrupt file, keeps a copy for inspection, and marks the file for rewriting from memory. */
  async #corrupt(why: string, skipped: number, kept: number): Promise<void> {
    const copiedTo = `${this.path}.corrupt`;
    let copied = false;
    try {
      await copyFile(this.path, copiedTo);
      copied = true;
    } catch {
      // the report below is what matters
    }
    const error = new MtaStsError('MTASTS_STORE_CORRUPT', `policy cache file ${this.path} ${why}; ${copied ? `copied to ${copiedTo}, ` : ''}continuing with ${kept} valid entries`, { details: { path: this.path, skipped, kept, ...(copied ? { copiedTo } : {}) } });
    this.#logger.error?.(error.message, { path: this.path, skipped, kept });
    this.#emit({ type: 'corrupt', error, skipped, kept, ...(copied ? { copiedTo } : {}) });
    this.#dirty = true;
  }

  #failed(operation: 'read' | 'write', message: string, cause: unknown): void {
    const error = new MtaStsError('MTASTS_STORE_FAILED', `${message}; policies stay cached in memory`, { cause, details: { path: this.path, operation } });
    this.#logger.error?.(error.message, { path: this.path, operation });
    this.#emit({ type: 'store-error', operation, error });
  }

  /** Serialises every unexpired entry (least recently used first) and replaces the file atomically. */
  #write(): Promise<void> {
    const run = (async () => {
      const started = performance.now();
      this.#dirty = false;
      const now = this.#now();
      const parts = [HEADER];
      for (const line of this.#cache.rvalues()) if (line !== undefined && now < expiresAtOf(line)) parts.push(line);
      const body = `${parts.join('\n')}\n`;
      try {
        await writeFileAtomically(this.path, body, this.#fsync);
        this.#failures = 0;
        this.#emit({ type: 'written', entries: parts.length - 1, bytes: Buffer.byteLength(body), ms: performance.now() - started });
      } catch (error) {
        this.#dirty = true;
        this.#failures++;
        this.#failed('write', `writing ${this.path} failed: ${String(error)}`, error);
      }
    })();
    this.#writing = run;
    return run.finally(() => {
      this.#writing = undefined;
      // Changes made during the write, or a failed write (retried with a growing delay), are written later.
      if (this.#dirty) this.#schedule(this.#failures === 0 ? this.#writeDelayMs : Math.min(this.#writeDelayMs * 2 ** this.#failures, MAX_RETRY_DELAY_MS));
    });
  }
}

/** The `expiresAt` of an entry line (the last field `encodeStoredPolicy` writes). */
function expiresAtOf(line: string): number {
  return Number(line.slice(line.lastIndexOf(EXPIRES) + EXPIRES.length, -1));
}

/**
 * Creates a policy store for one host that survives restarts (see the module comment). Reading the file starts at
 * once; lookups made before it is read wait for it (`store.ready`). Throws `MTASTS_INVALID_OPTIONS` for a bad option.
 *
 * @example
 * ```ts
 * const mtaSts = createMtaSts({ store: createFilePolicyStore({ path: '/var/lib/mta-sts/policies.jsonl' }) });
 * ```
 */
export function createFilePolicyStore(options: FilePolicyStoreOptions): FilePolicyStore {
  if (typeof options !== 'object' || options === null) throw new MtaStsError('MTASTS_INVALID_OPTIONS', 'createFilePolicyStore() options must be an object');
  if (typeof options.path !== 'string' || options.path === '') throw new MtaStsError('MTASTS_INVALID_OPTIONS', 'option path must be a non-empty file path', { details: { option: 'path' } });
  const number = (name: 'maxEntries' | 'maxBytes' | 'writeDelayMs', fallback: number, min: number, max: number): number => {
    const value = options[name] ?? fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      throw new MtaStsError('MTASTS_INVALID_OPTIONS', `option ${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`, { details: { option: name } });
    }
    return value;
  };
  return new FilePolicyStore({
    ...options,
    maxEntries: number('maxEntries', 100_000, 1, 10_000_000),
    maxBytes: number('maxBytes', 64 * 1024 * 1024, 1024, 4 * 1024 * 1024 * 1024),
    writeDelayMs: number('writeDelayMs', 1000, 0, 3_600_000),
    fsync: options.fsync ?? true,
  });
}
