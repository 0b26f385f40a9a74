/**
 * The published package works for a consumer: `npm pack`, install the tarball into a fresh project, run
 * `npx mta-sts --help`, and import every subpath export from ESM and from CJS (with the optional peer dependencies
 * installed).
 *
 * Packs the `dist/` that the suite's global set-up keeps fresh (`npm pack --ignore-scripts`: rebuilding here would
 * empty `dist/` under the test files running beside this one). Skipped only when MTA_STS_SKIP_PACK_TEST=1. Installing the tarball's dependencies uses the npm cache first (`--prefer-offline`;
 * CI has just run `npm ci`), the registry otherwise.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers.js';

const run = promisify(execFile);
const skip = process.env.MTA_STS_SKIP_PACK_TEST === '1';

interface PackageJson {
  name: string;
  version: string;
  bin?: Record<string, string> | string;
  exports?: Record<string, unknown>;
  peerDependencies?: Record<string, string>;
}

const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as PackageJson;
const npmEnv = { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false', NO_COLOR: '1' };

describe.skipIf(skip)('npm pack + install in a fresh project', { timeout: 240_000 }, () => {
  let dir: string;
  let project: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mta-sts-pack-'));
    project = join(dir, 'consumer');
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: REPO_ROOT, env: npmEnv, maxBuffer: 16 * 1024 * 1024 });
    const filename = (JSON.parse(stdout.slice(stdout.indexOf('['))) as Array<{ filename: string }>)[0]!.filename;
    await run('mkdir', ['-p', project]);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
    // The optional peer dependencies too (nodemailer for ./nodemailer, smtp-server & co for ./testing), so that every
    // subpath can be imported.
    // better-sqlite3 is left out: a native build from source (minutes) that no import needs (it loads on first use).
    const peers = Object.keys(pkg.peerDependencies ?? {}).filter((name) => name !== 'better-sqlite3');
    await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', join(dir, filename), ...peers], { cwd: project, env: npmEnv, maxBuffer: 16 * 1024 * 1024 });
  }, 240_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('declares the mta-sts bin', () => {
    const bin = typeof pkg.bin === 'string' ? { [pkg.name]: pkg.bin } : (pkg.bin ?? {});
    expect(Object.keys(bin)).toContain('mta-sts');
    // `npx mta-sts-sender` must find this package's CLI, not ask the registry for a package named `mta-sts`.
    expect(bin['mta-sts-sender']).toBe(bin['mta-sts']);
  });

  it('npx mta-sts --help and --version work', async () => {
    const help = await run('npx', ['--no-install', 'mta-sts', '--help'], { cwd: project, env: npmEnv });
    expect(help.stdout).toMatch(/^Usage: mta-sts \[options\] \[command\]/);
    expect(help.stdout).toContain('check [options] [domain...]');
    const version = await run('npx', ['--no-install', 'mta-sts', '--version'], { cwd: project, env: npmEnv });
    expect(version.stdout.trim()).toBe(pkg.version);
  });

  it('a bad argument exits 2 from the installed binary', async () => {
    const error = (await run(join(project, 'node_modules/.bin/mta-sts'), ['check', '--timeout', 'x', 'example.com'], { cwd: project, env: npmEnv }).catch((e: unknown) => e)) as { code?: number; stderr?: string };
    expect(error.code).toBe(2);
    expect(error.stderr).toContain("option '--timeout <ms>' argument 'x' is invalid");
  });

  it('every subpath export loads from ESM (import) and from CJS (require)', async () => {
    const subpaths = Object.keys(pkg.exports ?? { '.': {} }).filter((s) => s !== './package.json');
    expect(subpaths).toContain('.');
    for (const subpath of subpaths) {
      const specifier = subpath === '.' ? pkg.name : `${pkg.name}/${subpath.slice(2)}`;
      const esm = await run(process.execPath, ['--input-type=module', '-e', `const m = await import(${JSON.stringify(specifier)}); console.log(Object.keys(m).length)`], { cwd: project });
      expect(Number(esm.stdout.trim()), `${specifier} (ESM)`).toBeGreaterThan(0);
      const cjs = await run(process.execPath, ['-e', `const m = require(${JSON.stringify(specifier)}); console.log(Object.keys(m).length)`], { cwd: project });
      expect(Number(cjs.stdout.trim()), `${specifier} (CJS)`).toBeGreaterThan(0);
    }
  });

  it('an error thrown by one subpath is an instanceof the class exported by another (one copy in dist, ESM and CJS)', async () => {
    // createMtaStsTransport and createMtaStsHooks build their engine from their own subpath; a bad engine option
    // makes that engine throw MTASTS_INVALID_OPTIONS, which must be the root export's MtaStsError.
    const probe = (load: string) => `${load}
      const out = [];
      for (const make of [() => nm.createMtaStsTransport({ dnsTimeoutMs: -1 }), () => hooks.createMtaStsHooks({ dnsTimeoutMs: -1 })]) {
        try { make(); out.push('no error'); } catch (error) { out.push(error instanceof root.MtaStsError && error.code === 'MTASTS_INVALID_OPTIONS'); }
      }
      console.log(JSON.stringify(out));`;
    const esm = await run(process.execPath, ['--input-type=module', '-e', probe(`const root = await import('${pkg.name}'); const nm = await import('${pkg.name}/nodemailer'); const hooks = await import('${pkg.name}/hooks');`)], { cwd: project });
    expect(JSON.parse(esm.stdout), 'ESM').toEqual([true, true]);
    const cjs = await run(process.execPath, ['-e', probe(`const root = require('${pkg.name}'); const nm = require('${pkg.name}/nodemailer'); const hooks = require('${pkg.name}/hooks');`)], { cwd: project });
    expect(JSON.parse(cjs.stdout), 'CJS').toEqual([true, true]);
  });
});
