/**
 * Runs the `mta-sts` CLI as a child process, as a user would.
 *
 * The CLI is built once per test file with tsup (the same bundler and options as `npm run build`) into a temporary
 * package directory (`package.json` copy, `node_modules` symlink, `dist/cli/main.js`), because starting Node with
 * the tsx loader costs about two seconds per process on small machines, the built file a fraction of that. The
 * source entry is still run through tsx by one test (see `runMtaStsFromSource`).
 */
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'tsup';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SOURCE_MAIN = join(REPO_ROOT, 'src/cli/main.ts');

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface RunOptions {
  input?: string;
  env?: Record<string, string | undefined>;
  cwd?: string;
  timeoutMs?: number;
  /** For {@link runMtaStsFromSource}: another TypeScript entry to run instead of `src/cli/main.ts`. */
  entry?: string;
}

let built: { dir: string; main: string } | undefined;

/** Builds `src/cli/main.ts` into a temporary package directory. Call in `beforeAll`; undo with {@link removeBuiltCli}. */
export async function buildCli(): Promise<string> {
  if (built) return built.main;
  // To see what an older build does with these tests: MTA_STS_CLI_UNDER_TEST=/path/to/dist/cli/main.js.
  const other = process.env.MTA_STS_CLI_UNDER_TEST;
  if (other) return other;
  const dir = mkdtempSync(join(tmpdir(), 'mta-sts-cli-build-'));
  copyFileSync(join(REPO_ROOT, 'package.json'), join(dir, 'package.json'));
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  await build({
    // The testing module too: `mta-sts world` loads it from dist/testing/ at run time.
    entry: { 'cli/main': join(REPO_ROOT, 'src/cli/main.ts'), 'testing/index': join(REPO_ROOT, 'src/testing/index.ts') },
    format: ['esm'],
    outDir: join(dir, 'dist'),
    config: false,
    silent: true,
    dts: false,
    clean: false,
    sourcemap: false,
    target: 'node20',
    splitting: false,
    shims: true,
    tsconfig: join(REPO_ROOT, 'tsconfig.json'),
  });
  built = { dir, main: join(dir, 'dist/cli/main.js') };
  return built.main;
}

export function removeBuiltCli(): void {
  if (built) rmSync(built.dir, { recursive: true, force: true });
  built = undefined;
}

function runNode(nodeArgs: readonly string[], options: RunOptions): Promise<CliRun> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    // Colours off unless a test asks for them (the parent's FORCE_COLOR would otherwise leak in).
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', FORCE_COLOR: undefined, ...options.env };
    for (const key of Object.keys(env)) if (env[key] === undefined) delete env[key];
    const child = spawn(process.execPath, [...nodeArgs], { cwd: options.cwd ?? REPO_ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Math.round(performance.now() - started) });
    });
    child.stdin.on('error', () => {}).end(options.input ?? '');
  });
}

/** Runs the built CLI (see {@link buildCli}) with `args`. */
export async function runMtaSts(args: readonly string[], options: RunOptions = {}): Promise<CliRun> {
  return runNode([await buildCli(), ...args], options);
}

/** Runs `node --import tsx src/cli/main.ts ...args` (the development entry; slow to start). */
export function runMtaStsFromSource(args: readonly string[], options: RunOptions = {}): Promise<CliRun> {
  return runNode(['--import', 'tsx', options.entry ?? SOURCE_MAIN, ...args], options);
}

/** Parses JSON lines output. */
export function jsonLines<T = Record<string, unknown>>(text: string): T[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as T);
}
