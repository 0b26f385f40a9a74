/**
 * Moving a damaged or foreign SQLite file out of the way, so that a store can start a fresh one at the same path and
 * the old one stays available for inspection.
 *
 * The database is three files in WAL mode: `<path>`, `<path>-wal` and `<path>-shm`. All of them are renamed
 * together (`<path>.corrupt-<UTC timestamp>`, `…-wal`, `…-shm`): a fresh database left next to an old `-wal` would
 * replay the old file's frames into the new one. At most {@link KEEP_MOVED_ASIDE} moved-aside databases are kept per
 * path (the oldest are deleted), so a file that keeps getting damaged cannot fill the disk.
 */
import { readdirSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** The moved-aside copies kept per database path. */
export const KEEP_MOVED_ASIDE = 3;

const SIDE_FILES = ['', '-wal', '-shm', '-journal'] as const;

/** The identity of the file at `path` (device and inode), or undefined when there is none. */
export function fileIdentity(path: string): string | undefined {
  try {
    const info = statSync(path, { bigint: true });
    return `${info.dev}:${info.ino}`;
  } catch {
    return undefined;
  }
}

/** `20260101T120000123Z`: a UTC timestamp that sorts by time and is valid in a file name everywhere. */
function stamp(at: Date): string {
  return at.toISOString().replace(/[-:.]/g, '');
}

/**
 * Renames the database at `path` and its `-wal` / `-shm` / `-journal` files aside; returns the new name of the main
 * file, or undefined when there was nothing to move. `expectIdentity` (from {@link fileIdentity}): move only when
 * `path` is still that file (another process sharing the path may already have moved it and started a fresh one,
 * which must not be moved in turn). Never throws.
 */
export function moveSqliteFileAside(path: string, at: Date, expectIdentity?: string): string | undefined {
  if (expectIdentity !== undefined && fileIdentity(path) !== expectIdentity) return undefined;
  let target = `${path}.corrupt-${stamp(at)}`;
  for (let n = 1; fileIdentity(target) !== undefined && n < 100; n++) target = `${path}.corrupt-${stamp(at)}-${n}`;
  let moved: string | undefined;
  for (const suffix of SIDE_FILES) {
    try {
      renameSync(`${path}${suffix}`, `${target}${suffix}`);
      if (suffix === '') moved = target;
    } catch {
      // absent (no -wal yet) or already moved by another process
    }
  }
  pruneMovedAside(path);
  return moved;
}

/** Deletes the oldest moved-aside copies of `path` beyond {@link KEEP_MOVED_ASIDE}. Never throws. */
function pruneMovedAside(path: string): void {
  const prefix = `${basename(path)}.corrupt-`;
  try {
    const mains = readdirSync(dirname(path))
      .filter((name) => name.startsWith(prefix) && !SIDE_FILES.some((s) => s !== '' && name.endsWith(s)))
      .sort();
    for (const name of mains.slice(0, Math.max(0, mains.length - KEEP_MOVED_ASIDE))) {
      for (const suffix of SIDE_FILES) {
        try {
          unlinkSync(join(dirname(path), `${name}${suffix}`));
        } catch {
          // already gone
        }
      }
    }
  } catch {
    // an unreadable directory: nothing to prune
  }
}
