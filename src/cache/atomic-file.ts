/**
 * Crash-safe file replacement for the persistent policy store (RFC 8461 §3.3: a cached policy must survive a
 * restart intact or not at all, never half-written) and the TLS-RPT file spool (counts and delivery state).
 *
 * The new content goes to a temporary file in the same directory (same file system, so the rename is atomic),
 * which is fsynced before it is renamed over the old file; the directory is then fsynced so the rename itself is
 * durable. A reader, or the next start after a crash or power cut, sees the old file or the new one, never a mix.
 * A temporary file left by a crash is removed at the next start.
 */
import { randomBytes } from 'node:crypto';
import { open, readdir, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** `<name>.<pid>.<8 hex>.tmp`, as written by {@link writeFileAtomically}. */
const TEMP_SUFFIX = /^\.\d+\.[0-9a-f]{8}\.tmp$/;

/** A fresh temporary file name next to `path`: `<path>.<pid>.<8 hex>.tmp`. */
export function tempFileFor(path: string): string {
  return `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
}

/**
 * Replaces `path` with `body` atomically (temp file + fsync + rename + directory fsync). Rejects on I/O errors
 * (the temporary file is then removed). `tmp` is the temporary file to use (default: a fresh {@link tempFileFor}),
 * for a caller that must know it while the write runs.
 */
export async function writeFileAtomically(path: string, body: string, fsync: boolean, tmp: string = tempFileFor(path)): Promise<void> {
  try {
    const handle = await open(tmp, 'w', 0o600);
    try {
      await handle.writeFile(body, 'utf8');
      if (fsync) await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, path);
  } catch (error) {
    await unlink(tmp).catch(() => undefined);
    throw error;
  }
  if (fsync) await syncDirectory(dirname(path));
}

/** Removes the temporary files a crash mid-write left next to `path` (the file itself is intact). Never rejects. */
export async function removeStaleTempFiles(path: string): Promise<void> {
  const dir = dirname(path);
  const prefix = basename(path);
  try {
    for (const name of await readdir(dir)) {
      if (name.startsWith(prefix) && TEMP_SUFFIX.test(name.slice(prefix.length))) await unlink(join(dir, name)).catch(() => undefined);
    }
  } catch {
    // an unreadable directory is reported by the read or the next write
  }
}

async function syncDirectory(dir: string): Promise<void> {
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // directories cannot be fsynced everywhere (Windows); the rename is atomic regardless
  }
}
