/**
 * The default TLS-RPT store (RFC 8460 §4.1, §5.5: counts and delivery state survive restarts): a spool directory
 * of JSON files, one per (UTC day, policy domain), shared safely by several processes.
 *
 * Several processes may share one spool directory (an MTA's workers, the CLI sending a live spool's closed days):
 * every read-modify-write of a record holds the record's lock file (`<record>.lock`, see `spool-lock`), so no
 * count is lost, and a sent report is removed with `settle` (only the counts that were in the report; sessions
 * merged meanwhile stay as a new record). A `readOnly` store (previews) never writes, moves or deletes anything.
 *
 * Spool format (FileSpoolStore): `<dir>/<YYYY-MM-DD>/<policy-domain>.json`, UTF-8 JSON
 * `{"format":"mta-sts-sender/tlsrpt-spool","version":1,"day":…,"policyDomain":…,"policies":[…],"delivery":{…}}`
 * where `policies` is {@link DomainDayCounts.policies} and `delivery` is optional. Every write goes to a temporary
 * file in the same directory, is fsynced, and renamed over the old file, so a crash leaves either the old or the
 * new content, never a mix. A file that does not parse is moved to `<dir>/corrupt/` and reported through
 * `onCorrupt` (`TLSRPT_SPOOL_CORRUPT`); it is never fatal.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rmdir, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { tempFileFor, writeFileAtomically } from '../cache/atomic-file.js';
import { mergeDomainDayCounts, parseDomainDayCounts, subtractDomainDayCounts, totalSessions, type AggregationLimits, type DomainDayCounts, type DomainDayKey } from './aggregate.js';
import { TlsRptError } from './errors.js';
import { acquireSpoolLock } from './spool-lock.js';
import type { DeliveryState, StoredDomainDay, TlsRptStore, TlsRptStoreEvent } from './store.js';
import type { TlsRptLogger } from './types.js';

/** Options of {@link FileSpoolStore}. */
export interface FileSpoolStoreOptions {
  /** Called when a spool file is corrupt (after it was moved aside). */
  onCorrupt?: (error: TlsRptError) => void;
  logger?: TlsRptLogger;
  /** fsync each file before renaming it into place. Default true. */
  fsync?: boolean;
  /**
   * Never write, move or delete anything (previews, `mta-sts tlsrpt preview`): corrupt files are skipped and
   * reported but stay in place, leftover temp files stay, and every writing method rejects with
   * `TLSRPT_STORE_FAILED`. Default false.
   */
  readOnly?: boolean;
  /** Longest wait for a record locked by another process before a write fails (and is retried). Default 10 000 ms. */
  lockTimeoutMs?: number;
  /** A lock file older than this was left by a crashed process and is broken. Default 60 000 ms. */
  staleLockMs?: number;
}

const SPOOL_FORMAT = 'mta-sts-sender/tlsrpt-spool';
const SPOOL_VERSION = 1;
const DAY_DIR = /^\d{4}-\d{2}-\d{2}$/;
const SAFE_NAME = /^[a-z0-9][a-z0-9.-]*$/;

/**
 * The default {@link TlsRptStore}: a spool directory of JSON files, written atomically (temp file + fsync +
 * rename). Writes to one record are serialised within this instance and, through a lock file per record, with
 * every other process using the same directory.
 */
export class FileSpoolStore implements TlsRptStore {
  readonly dir: string;
  private readonly onCorrupt: FileSpoolStoreOptions['onCorrupt'];
  private readonly logger: TlsRptLogger | undefined;
  private readonly fsync: boolean;
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly writing = new Set<string>();
  private readonly listeners = new Set<(event: TlsRptStoreEvent) => void>();
  readonly readOnly: boolean;
  private readonly lockOptions: { timeoutMs: number; staleMs: number };

  constructor(dir: string, options: FileSpoolStoreOptions = {}) {
    this.dir = dir;
    this.onCorrupt = options.onCorrupt;
    this.logger = options.logger;
    this.fsync = options.fsync ?? true;
    this.readOnly = options.readOnly === true;
    this.lockOptions = { timeoutMs: options.lockTimeoutMs ?? 10_000, staleMs: options.staleLockMs ?? 60_000 };
  }

  private assertWritable(what: string): void {
    if (this.readOnly) throw new TlsRptError('TLSRPT_STORE_FAILED', `the spool ${this.dir} is opened read-only; ${what} refused`, { details: { path: this.dir } });
  }

  /** Runs `fn` holding this instance's lock of `file` and the cross-process lock file. */
  private withFileLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
    return this.withLock(file, async () => {
      const release = await acquireSpoolLock(file, this.lockOptions);
      try {
        return await fn();
      } finally {
        await release();
      }
    });
  }

  private fileOf(key: DomainDayKey): string {
    if (!DAY_DIR.test(key.day)) throw new TlsRptError('TLSRPT_STORE_FAILED', `invalid day ${JSON.stringify(key.day)}`);
    const name = SAFE_NAME.test(key.policyDomain) ? key.policyDomain : encodeURIComponent(key.policyDomain).replace(/^\./, '%2E');
    return join(this.dir, key.day, `${name}.json`);
  }

  /** Runs `fn` after every earlier operation on the same file. */
  private withLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(file) ?? Promise.resolve();
    const run = previous.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.locks.set(file, tail);
    void tail.then(() => {
      if (this.locks.get(file) === tail) this.locks.delete(file);
    });
    return run;
  }

  async merge(delta: DomainDayCounts, limits: AggregationLimits): Promise<void> {
    this.assertWritable('merge');
    const file = this.fileOf(delta);
    await this.withFileLock(file, async () => {
      const existing = await this.readFile(file, delta);
      const merged = mergeDomainDayCounts(existing, delta, limits);
      await this.writeFile(file, { ...merged, ...(existing?.delivery ? { delivery: existing.delivery } : {}) });
    });
  }

  async list(): Promise<DomainDayKey[]> {
    const keys: DomainDayKey[] = [];
    let days: string[];
    try {
      days = await readdir(this.dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new TlsRptError('TLSRPT_STORE_FAILED', `listing ${this.dir} failed`, { cause: error });
    }
    for (const day of days.sort()) {
      if (!DAY_DIR.test(day)) continue;
      let files: string[];
      try {
        files = await readdir(join(this.dir, day));
      } catch {
        continue;
      }
      for (const name of files.sort()) {
        if (name.endsWith('.tmp')) {
          // A temp file of a process that is gone is the leftover of a crash mid-write: the record is intact.
          const path = join(this.dir, day, name);
          if (!this.readOnly && !this.writing.has(path) && !writerAlive(name)) await unlink(path).catch(() => undefined);
          continue;
        }
        if (!name.endsWith('.json')) continue;
        let policyDomain: string;
        try {
          policyDomain = decodeURIComponent(name.slice(0, -'.json'.length));
        } catch {
          continue;
        }
        keys.push({ day, policyDomain });
      }
    }
    return keys;
  }

  async get(key: DomainDayKey): Promise<StoredDomainDay | undefined> {
    const file = this.fileOf(key);
    // Writes replace the file atomically: a read needs no cross-process lock.
    return this.withLock(file, () => this.readFile(file, key));
  }

  async setDelivery(key: DomainDayKey, state: DeliveryState): Promise<void> {
    await this.updateRecord(key, 'setDelivery', (file, existing) => this.writeFile(file, { ...existing, delivery: { ...state } }));
  }

  async delete(key: DomainDayKey): Promise<void> {
    this.assertWritable('delete');
    const file = this.fileOf(key);
    await this.withFileLock(file, () => this.unlinkRecord(file));
    // Remove the day directory once empty (fails harmlessly otherwise; a writer that loses the race recreates it).
    await rmdir(join(this.dir, key.day)).catch(() => undefined);
  }

  async settle(key: DomainDayKey, sent: DomainDayCounts): Promise<void> {
    await this.updateRecord(key, 'settle', async (file, existing) => {
      const rest = subtractDomainDayCounts(existing, sent);
      // Late sessions stay, without the delivery state of the report they were not part of.
      if (totalSessions(rest) > 0) await this.writeFile(file, rest);
      else await this.unlinkRecord(file);
    });
    await rmdir(join(this.dir, key.day)).catch(() => undefined);
  }

  /** Read-modify-write of an existing record under its lock (nothing when the record is gone). */
  private async updateRecord(key: DomainDayKey, operation: string, change: (file: string, existing: StoredDomainDay) => Promise<void>): Promise<void> {
    this.assertWritable(operation);
    const file = this.fileOf(key);
    await this.withFileLock(file, async () => {
      const existing = await this.readFile(file, key);
      if (existing) await change(file, existing);
    });
  }

  private async unlinkRecord(file: string): Promise<void> {
    try {
      await unlink(file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new TlsRptError('TLSRPT_STORE_FAILED', `deleting ${file} failed`, { cause: error });
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.locks.values()]);
  }

  subscribe(listener: (event: TlsRptStoreEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Reads and validates one spool file; a corrupt one is moved aside, reported, and read as missing. */
  private async readFile(file: string, key: DomainDayKey): Promise<StoredDomainDay | undefined> {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new TlsRptError('TLSRPT_STORE_FAILED', `reading ${file} failed`, { cause: error });
    }
    try {
      const value = JSON.parse(text) as Record<string, unknown>;
      if (value?.format !== SPOOL_FORMAT || value.version !== SPOOL_VERSION) throw new TypeError('unknown spool format or version');
      const counts = parseDomainDayCounts(value);
      if (counts.day !== key.day || counts.policyDomain !== key.policyDomain) throw new TypeError('day or policy domain does not match the file name');
      const delivery = value.delivery === undefined ? undefined : parseDelivery(value.delivery);
      return { ...counts, ...(delivery ? { delivery } : {}) };
    } catch (error) {
      await this.quarantine(file, key, error);
      return undefined;
    }
  }

  private async quarantine(file: string, key: DomainDayKey, cause: unknown): Promise<void> {
    const corruptDir = join(this.dir, 'corrupt');
    const target = join(corruptDir, `${key.day}_${basename(file)}.${Date.now()}.${randomBytes(3).toString('hex')}`);
    let movedTo: string | undefined;
    // A read-only store (a preview) reports the file and leaves it where it is.
    if (!this.readOnly) {
      try {
        await mkdir(corruptDir, { recursive: true });
        await rename(file, target);
        movedTo = target;
      } catch {
        await unlink(file).catch(() => undefined);
      }
    }
    const error = new TlsRptError('TLSRPT_SPOOL_CORRUPT', `corrupt TLS-RPT spool file ${file} skipped: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
      domain: key.policyDomain,
      details: { path: file, movedTo, day: key.day },
    });
    this.logger?.error?.(error.message, { path: file, movedTo });
    for (const listener of [...(this.onCorrupt ? [this.onCorrupt] : []), ...[...this.listeners].map((l) => (e: TlsRptError) => l({ type: 'corrupt', error: e }))]) {
      try {
        listener(error);
      } catch {
        // a throwing callback must not break the store
      }
    }
  }

  private async writeFile(file: string, record: StoredDomainDay): Promise<void> {
    const dir = dirname(file);
    const tmp = tempFileFor(file);
    const body = JSON.stringify({
      format: SPOOL_FORMAT,
      version: SPOOL_VERSION,
      day: record.day,
      policyDomain: record.policyDomain,
      policies: record.policies,
      ...(record.delivery ? { delivery: record.delivery } : {}),
    });
    this.writing.add(tmp);
    try {
      await mkdir(dir, { recursive: true });
      await writeFileAtomically(file, body, this.fsync, tmp);
    } catch (error) {
      throw new TlsRptError('TLSRPT_STORE_FAILED', `writing ${file} failed`, { cause: error });
    } finally {
      this.writing.delete(tmp);
    }
  }
}

function parseDelivery(value: unknown): DeliveryState {
  if (typeof value !== 'object' || value === null) throw new TypeError('malformed delivery state');
  const v = value as Record<string, unknown>;
  const num = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n);
  if (typeof v.uniqueId !== 'string' || !/^[A-Za-z0-9]+$/.test(v.uniqueId)) throw new TypeError('malformed delivery state: uniqueId');
  if (!num(v.dueAt) || !num(v.attempts) || !num(v.nextAttemptAt)) throw new TypeError('malformed delivery state: times');
  const out: DeliveryState = { uniqueId: v.uniqueId, dueAt: v.dueAt, attempts: v.attempts, nextAttemptAt: v.nextAttemptAt };
  if (num(v.firstAttemptAt)) out.firstAttemptAt = v.firstAttemptAt;
  if (typeof v.lastError === 'string') out.lastError = v.lastError;
  return out;
}

/** Is the process that wrote temp file `name` (`<record>.<pid>.<hex>.tmp`) still running? */
function writerAlive(name: string): boolean {
  const pid = Number(/\.(\d+)\.[0-9a-f]+\.tmp$/.exec(name)?.[1]);
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
