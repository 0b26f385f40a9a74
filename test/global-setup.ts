/**
 * Builds `dist/` before the suite when it is missing or older than the sources, so that `npm ci && npm test` passes
 * on a fresh clone with nothing else run first (the Haraka tests load `dist/haraka/index.cjs`, the pack test packs
 * `dist/`). `npm run build` records each build in `dist/.build-stamp`; an up-to-date one is left alone, so repeated runs cost
 * nothing. `MTA_STS_NO_BUILD=1` skips this (a partial copy of the project that runs a few source-only test files).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const stamp = join(root, 'dist/.build-stamp');

function newestMtimeMs(path: string): number {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  let newest = stat.mtimeMs;
  for (const name of readdirSync(path)) newest = Math.max(newest, newestMtimeMs(join(path, name)));
  return newest;
}

function isStale(): boolean {
  if (!existsSync(stamp)) return true;
  const inputs = ['src', 'package.json', 'tsup.config.ts', 'tsconfig.json'].map((p) => join(root, p)).filter(existsSync);
  return Math.max(...inputs.map(newestMtimeMs)) > statSync(stamp).mtimeMs;
}

export default function setup(): void {
  if (process.env.MTA_STS_NO_BUILD === '1' || !isStale()) return;
  const started = Date.now();
  const result = spawnSync('npm', ['run', 'build', '--silent'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  if (result.status !== 0) throw new Error(`npm run build failed (exit ${result.status ?? result.signal}): the tests that use dist/ cannot run`);
  console.log(`built dist/ in ${Date.now() - started} ms (it was missing or older than src/)`);
}
