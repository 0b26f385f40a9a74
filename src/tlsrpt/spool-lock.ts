/**
 * A lock file per spool record, so that several processes (an MTA with several workers, the `mta-sts tlsrpt send`
 * CLI against a live spool) can read-merge-write the same record without losing counts.
 *
 * The lock is `<record>.lock`, created with `O_CREAT | O_EXCL` (atomic on local file systems) and holding
 * `<pid> <host> <ms>`. It is held for one read-modify-write (milliseconds), never across a network delivery. A lock
 * whose process is gone (same host, `kill(pid, 0)` fails) or that is older than `staleMs` is broken: it is renamed
 * to a unique name first (only one breaker wins the rename), and restored when what was renamed turns out to be a
 * fresh lock of someone else.
 */
import { randomBytes } from 'node:crypto';
import { link, mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { TlsRptError } from './errors.js';

/** Timing of {@link acquireSpoolLock}. */
export interface SpoolLockOptions {
  /** Give up (TLSRPT_STORE_FAILED) after waiting this long. */
  timeoutMs: number;
  /** A lock older than this is considered left behind by a crash. */
  staleMs: number;
}

const HOST = hostname();

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function isStale(lock: string, staleMs: number): Promise<string | undefined> {
  let content: string;
  let mtimeMs: number;
  try {
    [content, { mtimeMs }] = await Promise.all([readFile(lock, 'utf8'), stat(lock)]);
  } catch {
    return undefined; // gone meanwhile: just retry
  }
  const [pid, host] = content.trim().split(' ');
  const owner = Number(pid);
  if (host === HOST && Number.isSafeInteger(owner) && owner > 0 && owner !== process.pid && !processAlive(owner)) return content;
  if (Date.now() - mtimeMs > staleMs) return content;
  return undefined;
}

/** Breaks a stale lock; true when the caller should retry at once. */
async function breakLock(lock: string, staleContent: string): Promise<boolean> {
  const aside = `${lock}.${randomBytes(4).toString('hex')}.broken`;
  try {
    await rename(lock, aside);
  } catch {
    return true; // someone else broke or released it
  }
  const content = await readFile(aside, 'utf8').catch(() => '');
  // Another breaker may have replaced the stale lock by its own between our read and our rename: put it back.
  if (content !== staleContent) await link(aside, lock).catch(() => undefined);
  await unlink(aside).catch(() => undefined);
  return true;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Takes the lock of `file`; resolves with its release function. */
export async function acquireSpoolLock(file: string, options: SpoolLockOptions): Promise<() => Promise<void>> {
  const lock = `${file}.lock`;
  const deadline = Date.now() + options.timeoutMs;
  for (let attempt = 0; ; attempt++) {
    try {
      const handle = await open(lock, 'wx', 0o600);
      try {
        await handle.writeFile(`${process.pid} ${HOST} ${Date.now()}\n`, 'utf8');
      } finally {
        await handle.close();
      }
      return async () => {
        await unlink(lock).catch(() => undefined);
      };
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && attempt < 50) {
        // The day directory does not exist (yet, or was just removed by a delete): create it and retry.
        await mkdir(dirname(lock), { recursive: true }).catch(() => undefined);
        continue;
      }
      if (code !== 'EEXIST') throw new TlsRptError('TLSRPT_STORE_FAILED', `locking ${file} failed: ${(error as Error).message}`, { cause: error, details: { path: lock } });
    }
    const stale = await isStale(lock, options.staleMs);
    if (stale !== undefined && (await breakLock(lock, stale))) continue;
    if (Date.now() >= deadline) {
      throw new TlsRptError('TLSRPT_STORE_FAILED', `spool record ${file} stayed locked for ${options.timeoutMs} ms (another process holds ${lock})`, { details: { path: lock } });
    }
    await sleep(Math.min(25, 1 + attempt) + Math.random() * 3);
  }
}
