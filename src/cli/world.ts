/**
 * `mta-sts world`: starts the loopback test world (`mta-sts-sender/testing`) with the example domains, prints the
 * options that point `mta-sts` (or a program using the library) at it, and runs until SIGINT / SIGTERM.
 *
 * The world is loaded when this command runs, never before: it needs the optional peer dependencies
 * `smtp-server`, `dns-packet` and `node-forge`, which the rest of the CLI does not. The module is imported by URL
 * relative to this file (`dist/testing/index.js` next to `dist/cli/main.js`), so the bundler leaves it out of the
 * CLI bundle.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import pc from 'picocolors';
import { colorEnabled, EXIT_OK, UsageError, type CliIo } from './io.js';

type TestingModule = typeof import('../testing/index.js');

export interface WorldCommandOptions {
  caFile?: string;
  json?: boolean;
  color?: boolean;
}

/** What `mta-sts world --json` prints. */
export interface WorldInfo {
  dnsServer: string;
  caFile: string;
  /** HTTPS port of every policy host and report endpoint (`--https-port`; the library's `httpsPort`). */
  httpsPort: number;
  /** SMTP port of every MX host (`--smtp-port`; the world's `smtpPort`). */
  smtpPort: number;
  /** The options to add to `mta-sts check` / `mta-sts tlsrpt send`. */
  args: string[];
  domains: Array<{ domain: string; what: string }>;
}

async function loadTesting(): Promise<TestingModule> {
  const url = new URL('../testing/index.js', import.meta.url).href;
  try {
    return (await import(url)) as TestingModule;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new UsageError(`mta-sts world needs the optional packages smtp-server, dns-packet and node-forge (npm install smtp-server dns-packet node-forge): ${(error as Error).message}`);
    }
    throw error;
  }
}

/** Resolves when the process receives SIGINT or SIGTERM. */
function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off('SIGINT', stop).off('SIGTERM', stop);
      resolve(signal);
    };
    process.on('SIGINT', stop).on('SIGTERM', stop);
  });
}

export function formatWorldInfo(info: WorldInfo, colors: boolean): string {
  const c = pc.createColors(colors);
  const width = Math.max(...info.domains.map((d) => d.domain.length));
  return [
    c.bold('mta-sts test world running on loopback (Ctrl-C stops it)'),
    `  DNS server   ${info.dnsServer}    --dns-server ${info.dnsServer}`,
    `  CA file      ${info.caFile}    --ca ${info.caFile}`,
    `  HTTPS port   ${info.httpsPort}    --https-port ${info.httpsPort}   (policy hosts, report endpoints; library: httpsPort)`,
    `  SMTP port    ${info.smtpPort}    --smtp-port ${info.smtpPort}   (MX hosts, for --probe; library: smtpPort)`,
    '',
    c.bold('Domains'),
    ...info.domains.map((d) => `  ${d.domain.padEnd(width)}  ${c.dim(d.what)}`),
    '',
    c.bold('Try'),
    `  mta-sts check --probe ${info.args.join(' ')} ${info.domains.map((d) => d.domain).join(' ')}`,
    c.dim('  (mta-sts tlsrpt send to these report endpoints needs --allow-internal-destinations: they are on loopback)'),
    '',
  ].join('\n');
}

export async function runWorld(opts: WorldCommandOptions, io: CliIo, cwd: string): Promise<number> {
  const testing = await loadTesting();
  // Listening from the start: an interrupt during start-up stops the world as soon as it is up, and cleans up.
  const stopped = untilSignal();
  const world = await startWorld(testing);
  const tmp = opts.caFile === undefined ? mkdtempSync(join(tmpdir(), 'mta-sts-world-')) : undefined;
  const caFile = opts.caFile === undefined ? join(tmp!, 'ca.pem') : resolvePath(cwd, opts.caFile);
  try {
    const domains = await testing.addExampleDomains(world);
    try {
      writeFileSync(caFile, world.ca.rootPem);
    } catch (error) {
      throw new UsageError(`cannot write the CA file ${caFile}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    const dnsServer = world.dns.servers[0]!;
    const args = ['--dns-server', dnsServer, '--ca', caFile, '--https-port', String(world.httpsPort), '--smtp-port', String(world.smtpPort)];
    const info: WorldInfo = { dnsServer, caFile, httpsPort: world.httpsPort, smtpPort: world.smtpPort, args, domains: domains.map((d) => ({ ...d })) };
    io.stdout.write(opts.json ? `${JSON.stringify(info)}\n` : formatWorldInfo(info, colorEnabled(io.stdout, io.env, opts.color)));
    await stopped;
    return EXIT_OK;
  } finally {
    await world.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
}

/** Starts the world; missing optional packages are a usage error naming all of them in one line. */
async function startWorld(testing: TestingModule): Promise<Awaited<ReturnType<TestingModule['createTestWorld']>>> {
  try {
    return await testing.createTestWorld();
  } catch (error) {
    if ((error as { code?: unknown }).code === 'MTASTS_MISSING_PEER') throw new UsageError(`mta-sts world: ${(error as Error).message}`);
    throw error;
  }
}
