/**
 * A real Haraka (the `Haraka` dev dependency) as a child process, for end-to-end tests of the plugin.
 *
 * `haraka -i <tmpdir>` creates the config skeleton; the harness then writes `smtp.ini` (loopback listener,
 * `nodes=0`, so the PID is the one to stop), `outbound.ini` (`local_mx_ok=true`: the test MX hosts live on
 * 127.0.0.0/8), the bundled `relay` plugin with `relay_acl_allow` = 127.0.0.1, the plugin line, `mta-sts.ini` and a
 * small observer plugin that appends every `delivered` / `deferred` / `bounce` outcome to `events.jsonl`. Mail is
 * queued with Nodemailer and judged by what the world's MX hosts received. Every wait is bounded; Haraka is stopped
 * by its PID (SIGINT, then SIGKILL).
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, mkdirSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import net from 'node:net';
import nodemailer from 'nodemailer';
import type { TestWorld } from '../../src/testing/index.js';

export const ROOT = resolve(import.meta.dirname, '../..');
const HARAKA_BIN = join(ROOT, 'node_modules/Haraka/bin/haraka');

/** One outcome seen by the observer plugin. */
export interface HarakaEvent {
  event: 'delivered' | 'deferred' | 'bounce';
  domain: string;
  host?: string;
  ip?: string;
  secured?: boolean;
  err?: string;
  num_failures?: number;
  from?: string;
}

const OBSERVER = `'use strict'
// Test observer: appends delivery outcomes to $HARAKA/events.jsonl.
const fs = require('node:fs')
const path = require('node:path')
const out = path.join(process.env.HARAKA, 'events.jsonl')
const w = (o) => fs.appendFileSync(out, JSON.stringify(o) + '\\n')
exports.hook_delivered = function (next, hmail, p) {
  w({ event: 'delivered', domain: hmail.todo.domain, host: p[0], ip: p[1], secured: p[7], from: String(hmail.todo.mail_from) })
  next()
}
exports.hook_deferred = function (next, hmail, p) {
  w({ event: 'deferred', domain: hmail.todo.domain, err: String(p.err), num_failures: hmail.num_failures, from: String(hmail.todo.mail_from) })
  next()
}
exports.hook_bounce = function (next, hmail, err) {
  w({ event: 'bounce', domain: hmail.todo.domain, err: String(err), from: String(hmail.todo.mail_from) })
  next()
}
`;

export interface HarakaOptions {
  /** Lines of config/mta-sts.ini. */
  mtaStsIni: string[];
  /** outbound.ini temp_fail_intervals. Default `1h`. */
  tempFailIntervals?: string;
  /** The config/plugins line that loads the plugin. Default `mta-sts-sender/haraka`. */
  pluginLine?: string;
  /** Link `<dir>/node_modules/mta-sts-sender` to this repository. Default true (the install test installs a tarball). */
  linkPackage?: boolean;
  /** Run in an existing directory (already `haraka -i`'d), e.g. one with the package installed. */
  dir?: string;
  /** outbound.ini local_mx_ok. Default true: the test MX hosts live on loopback addresses. */
  localMxOk?: boolean;
}

/** A running Haraka. */
export interface RunningHaraka {
  readonly dir: string;
  readonly port: number;
  readonly pid: number;
  /** Haraka's stdout and stderr so far. */
  output(): string;
  events(): HarakaEvent[];
  /** Waits (bounded) for the first event of a domain's message. */
  waitFor(domain: string, timeoutMs?: number): Promise<HarakaEvent>;
  /** Waits (bounded) until Haraka's output matches. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<void>;
  /** Queues one message to `to` (relayed: Haraka delivers it outbound). */
  send(to: string, subject?: string): Promise<void>;
  writeConfig(name: string, text: string): void;
  stop(): Promise<void>;
}

/** Fails with a clear message when the plugin build is missing or older than its sources. */
export function assertBuilt(): void {
  const built = join(ROOT, 'dist/haraka/index.cjs');
  if (!existsSync(built)) throw new Error('dist/haraka/index.cjs is missing: run `npm run build` before the Haraka tests');
  const srcDir = join(ROOT, 'src/integrations/haraka');
  const newest = Math.max(...readdirSync(srcDir).map((f) => statSync(join(srcDir, f)).mtimeMs));
  if (statSync(built).mtimeMs < newest) throw new Error('dist/haraka/index.cjs is older than src/integrations/haraka: run `npm run build`');
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** Creates a Haraka directory with `haraka -i`. */
export function harakaInstall(): string {
  const dir = mkdtempSync(join(tmpdir(), 'mta-sts-haraka-'));
  execFileSync(process.execPath, [HARAKA_BIN, '-i', dir], { stdio: 'ignore', timeout: 15_000 });
  return dir;
}

/** Starts Haraka (bounded: listening within 15 s or it is killed and the start fails). */
export async function startHaraka(options: HarakaOptions): Promise<RunningHaraka> {
  const dir = options.dir ?? harakaInstall();
  const port = await freePort();
  const cfg = (name: string, text: string) => writeFileSync(join(dir, 'config', name), text);
  cfg('smtp.ini', `[main]\nlisten=127.0.0.1:${port}\nnodes=0\n`);
  cfg('outbound.ini', `[main]\nlocal_mx_ok=${options.localMxOk ?? true}\ntemp_fail_intervals=${options.tempFailIntervals ?? '1h'}\n`);
  cfg('log.ini', `[main]\nlevel=${process.env.HARAKA_LOG_LEVEL ?? 'info'}\ntimestamps=false\nformat=default\n`);
  cfg('relay.ini', '[relay]\nacl=true\n');
  cfg('relay_acl_allow', '127.0.0.1/32\n');
  cfg('me', 'haraka.test\n');
  cfg('plugins', ['relay', options.pluginLine ?? 'mta-sts-sender/haraka', 'test_observer', ''].join('\n'));
  cfg('mta-sts.ini', options.mtaStsIni.join('\n') + '\n');
  writeFileSync(join(dir, 'plugins', 'test_observer.js'), OBSERVER);
  if (options.linkPackage ?? true) {
    mkdirSync(join(dir, 'node_modules'), { recursive: true });
    if (!existsSync(join(dir, 'node_modules/mta-sts-sender'))) symlinkSync(ROOT, join(dir, 'node_modules/mta-sts-sender'), 'dir');
  }
  const child: ChildProcess = spawn(process.execPath, [HARAKA_BIN, '-c', dir], { cwd: dir, env: { ...process.env, HARAKA: dir, NODE_ENV: 'production' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const eventsFile = join(dir, 'events.jsonl');
  const events = (): HarakaEvent[] =>
    existsSync(eventsFile)
      ? readFileSync(eventsFile, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as HarakaEvent)
      : [];
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGINT');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  };
  const poll = async <T>(what: string, check: () => T | undefined, timeoutMs: number): Promise<T> => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const value = check();
      if (value !== undefined) return value;
      if (child.exitCode !== null) throw new Error(`Haraka exited (${child.exitCode}) while waiting for ${what}:\n${out.slice(-3000)}`);
      if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}:\n${out.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const haraka: RunningHaraka = {
    dir,
    port,
    pid: child.pid!,
    output: () => out,
    events,
    waitFor: (domain, timeoutMs = 10_000) => poll(`an outcome for ${domain}`, () => events().find((e) => e.domain === domain && e.from !== '<>'), timeoutMs),
    waitForOutput: (pattern, timeoutMs = 10_000) => poll(`output ${pattern}`, () => (pattern.test(out) ? true : undefined), timeoutMs).then(() => undefined),
    async send(to, subject = 'test') {
      const transport = nodemailer.createTransport({ host: '127.0.0.1', port, ignoreTLS: true, connectionTimeout: 5000, greetingTimeout: 5000, socketTimeout: 10_000 });
      try {
        await transport.sendMail({ from: 'sender@haraka-sender.test', to, subject, text: `hello ${subject}` });
      } finally {
        transport.close();
      }
    },
    writeConfig: cfg,
    stop,
  };
  try {
    await poll('Haraka to listen', () => (/Listening on/i.test(out) || /listening/i.test(out) ? true : undefined), 15_000);
  } catch (error) {
    await stop();
    throw error;
  }
  return haraka;
}

/** Stops Haraka and removes its directory. */
export async function disposeHaraka(haraka: RunningHaraka | undefined): Promise<void> {
  if (!haraka) return;
  await haraka.stop();
  rmSync(haraka.dir, { recursive: true, force: true });
}

/**
 * The `mta-sts.ini` lines that point the plugin at a test world: its DNS server, CA file and ports, TLS-RPT into the
 * SQLite file `dbFile`. `main` adds lines to `[main]` (timeouts of one test file).
 */
export function worldIni(world: TestWorld, caFile: string, dbFile: string, main: readonly string[] = []): string[] {
  return [
    '[main]',
    'loglevel=debug',
    ...main,
    `mx_port=${world.smtpPort}`,
    '[engine]',
    `dns_servers=${world.mtaStsOptions().dnsServers[0]}`,
    'dns_timeout_ms=2000',
    'fetch_timeout_ms=3000',
    `ca_file=${caFile}`,
    `https_port=${world.httpsPort}`,
    '[tlsrpt]',
    'enabled=true',
    'organization_name=Haraka Test',
    'contact_info=tlsrpt@haraka-sender.test',
    'submitter=haraka-sender.test',
    `db=${dbFile}`,
    'flush_delay_ms=0',
  ];
}
