/**
 * A lock file per spool record, so that several processes (an MTA with several workers, the `mta-sts tlsrpt send`
 * CLI against a live spool) can read-merge-write the same record without losing counts.
 *
 * The lock is `<record>.lock`, created with `O_CREAT | O_EXCL` (atomic on local file systems) and holding
 * `<pid> <host> <ms>`. It is held for one read-modify-write (milliseconds), never across a network delivery. A lock
 * whose process is gone (same host, `kill(pid, 0)` fails) or that is older than `staleMs` was left by a crash and
 * is removed (see {@link breakIfStale}: breakers take turns and re-check the very file they judged stale). Lock
 * files need a local file system (O_EXCL is not reliable on old NFS).
 */
import { mkdir, open, stat, unlink } from 'node:fs/promises';
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

interface LockInfo {
  content: string;
  ino: number;
  mtimeMs: number;
}

/** Reads a lock file through one descriptor, so content, inode and age belong to the same file. */
async function readLock(lock: string): Promise<LockInfo | undefined> {
  let handle;
  try {
    handle = await open(lock, 'r');
  } catch {
    return undefined; // gone meanwhile: just retry
  }
  try {
    const [content, info] = await Promise.all([handle.readFile('utf8'), handle.stat()]);
    return { content, ino: info.ino, mtimeMs: info.mtimeMs };
  } catch {
    return undefined;
  } finally {
    await handle.close();
  }
}

/** Left by a crash: the owner (on this host) is gone, or the lock is older than any write could take. */
function isStale(info: LockInfo, staleMs: number): boolean {
  const [pid, host] = info.content.trim().split(' ');
  const owner = Number(pid);
  if (host === HOST && Number.isSafeInteger(owner) && owner > 0 && owner !== process.pid && !processAlive(owner)) return true;
  return Date.now() - info.mtimeMs > staleMs;
}

/**
 * Removes `lock` when it is stale. Breakers are serialised by `<lock>.break` (O_EXCL), and the lock is removed only
 * when the file at the path is still the one judged stale: nobody else can replace a lock file that exists, and
 * its owner is gone, so no live lock is ever removed. Returns true when the caller should retry at once.
 */
async function breakIfStale(lock: string, staleMs: number): Promise<boolean> {
  const info = await readLock(lock);
  if (!info) return true;
  if (!isStale(info, staleMs)) return false;
  const breaker = `${lock}.break`;
  try {
    await (await open(breaker, 'wx', 0o600)).close();
  } catch {
    // Another process is breaking it; a breaker left by a crash is itself stale after a few seconds.
    const held = await stat(breaker).catch(() => undefined);
    if (held && Date.now() - held.mtimeMs > BREAKER_STALE_MS) await unlink(breaker).catch(() => undefined);
    return false;
  }
  try {
    const again = await readLock(lock);
    if (again && again.ino === info.ino && isStale(again, staleMs)) await unlink(lock).catch(() => undefined);
  } finally {
    await unlink(breaker).catch(() => undefined);
  }
  return true;
}

const BREAKER_STALE_MS = 5_000;

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
    if (await breakIfStale(lock, options.staleMs)) continue;
    if (Date.now() >= deadline) {
      throw new TlsRptError('TLSRPT_STORE_FAILED', `spool record ${file} stayed locked for ${options.timeoutMs} ms (another process holds ${lock})`, { details: { path: lock } });
    }
    await sleep(Math.min(25, 1 + attempt) + Math.random() * 3);
  }
}
