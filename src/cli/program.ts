/**
 * The `mta-sts` command line: argument parsing (commander), output (human or JSON), exit codes.
 *
 * `runCli(argv, io)` is the whole CLI as a function: it writes to the injected streams and resolves with the exit
 * code (0 fine, 1 a checked domain has a problem / a report failed, 2 usage or internal error). `main.ts` only wires
 * it to the process.
 */
import { createReadStream, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { resolve as resolvePath } from 'node:path';
import { CommanderError, InvalidArgumentError, Option, Command } from 'commander';
import pc from 'picocolors';
import { SingleBar, Presets } from 'cli-progress';
import { domainKey, mapOrdered, parseDomainList } from './batch.js';
import { checkDomain, type CheckResult } from './check.js';
import { createCheckRuntime } from './context.js';
import { formatCheck, formatCompact, formatSummary, summarize, type Colors } from './format.js';
import { colorEnabled, EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, readAll, UsageError, type CliIo } from './io.js';
import { DEFAULT_TLSRPT_DB, runTlsRptPreview, runTlsRptSend, type TlsRptCommandOptions } from './tlsrpt.js';
import { runWorld, type WorldCommandOptions } from './world.js';

/** Largest domain list read from a file or stdin, counted in bytes read (a device such as /dev/zero has no size). */
const MAX_LIST_BYTES = 64 * 1024 * 1024;

function packageVersion(): string {
  try {
    // src/cli/program.ts and dist/cli/main.js are both two levels below the package root.
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
}

// ---- option parsers (commander calls them; they throw InvalidArgumentError for a clear message and exit 2) ----

function integer(min: number, max: number) {
  return (value: string): number => {
    if (!/^\d+$/.test(value.trim())) throw new InvalidArgumentError(`expected an integer from ${min} to ${max}.`);
    const n = Number(value);
    if (n < min || n > max) throw new InvalidArgumentError(`expected an integer from ${min} to ${max}.`);
    return n;
  };
}

/** `ip`, `ip:port` or `[ipv6]:port`. */
export function parseDnsServer(value: string): string {
  const v = value.trim();
  if (isIP(v) !== 0) return v;
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(v) ?? /^([^:]+):(\d{1,5})$/.exec(v);
  if (m && isIP(m[1]!) !== 0 && Number(m[2]) >= 1 && Number(m[2]) <= 65535) return v;
  throw new InvalidArgumentError('expected an IP address, optionally with a port (192.0.2.53, 192.0.2.53:5353, [2001:db8::53]:53).');
}

function collect<T>(parse: (v: string) => T) {
  return (value: string, previous: T[] | undefined): T[] => [...(previous ?? []), parse(value)];
}

interface CommonNetOptions {
  dnsServer?: string[];
  ca?: string[];
  timeout: number;
  color?: boolean;
  json?: boolean;
}

interface CheckCommandOptions extends CommonNetOptions {
  file?: string;
  probe?: boolean;
  smtpPort: number;
  httpsPort?: number;
  testingAsEnforce?: boolean;
  concurrency: number;
  progress?: boolean;
}

async function readCaFiles(files: readonly string[] | undefined, cwd: string): Promise<string[]> {
  const out: string[] = [];
  for (const file of files ?? []) {
    let pem: string;
    try {
      pem = await readFile(resolvePath(cwd, file), 'utf8');
    } catch (error) {
      throw new UsageError(`cannot read CA file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`CA file ${file} contains no PEM certificate`);
    out.push(pem);
  }
  return out;
}

function addNetOptions(cmd: Command, defaultTimeout: number, timeoutWhat: string): Command {
  return cmd
    .addOption(new Option('--dns-server <ip[:port]>', 'DNS server to query instead of the system resolvers (repeatable)').argParser(collect(parseDnsServer)))
    .addOption(new Option('--ca <file>', 'extra trusted CA certificate(s), PEM, in addition to the system roots (repeatable)').argParser(collect(String)))
    .addOption(new Option('--timeout <ms>', `deadline of each network step (${timeoutWhat})`).argParser(integer(1, 600_000)).default(defaultTimeout))
    .option('--json', 'machine-readable output: one JSON object per line')
    .option('--no-color', 'no colours (also: NO_COLOR=1); colours are used on a terminal only');
}

/** Builds the commander program. `setExit` receives the exit code of the action that ran. */
function buildProgram(io: CliIo, setExit: (code: number) => void): Command {
  const cwd = io.cwd ?? process.cwd();
  const program = new Command('mta-sts');
  program
    .description('Check MTA-STS (RFC 8461) and TLS-RPT (RFC 8460) from the sending side, and manage the TLS-RPT reports waiting in the database of a reporter.')
    .version(packageVersion(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({
      writeOut: (s) => void io.stdout.write(s),
      writeErr: (s) => void io.stderr.write(s),
      outputError: (s, write) => write(`mta-sts: ${s}`),
      getOutHelpWidth: () => io.stdout.columns ?? 100,
      getErrHelpWidth: () => io.stderr.columns ?? 100,
    })
    .addHelpText(
      'after',
      `
Exit codes:
  0  every checked domain is fine (a domain without a policy is fine)
  1  a checked domain has a problem, or a TLS report could not be sent
  2  usage error or internal error, or the output could not be written (a closed pipe, as in
     "mta-sts check … | head -1", ends the run quietly with 0)

Examples:
  $ mta-sts check gmail.com
  $ mta-sts check --probe example.com example.org
  $ mta-sts check --file domains.txt --concurrency 16 --json > results.jsonl
  $ mta-sts tlsrpt preview --db ${DEFAULT_TLSRPT_DB}
  $ mta-sts world          # a loopback test world to try all of this on`,
    );

  addCheckCommand(program, io, cwd, setExit);
  addTlsRptCommands(program, io, cwd, setExit);
  addWorldCommand(program, io, cwd, setExit);
  return program;
}

/** `mta-sts check`. */
function addCheckCommand(program: Command, io: CliIo, cwd: string, setExit: (code: number) => void): void {
  const check = program
    .command('check')
    .description(
      'Follow the decision trace of a sending MTA for each domain: the _mta-sts TXT record, the policy fetch, the parsed policy, the MX hosts and whether they match it, the TLS-RPT record; with --probe also STARTTLS and certificate validation at each MX.',
    )
    .argument('[domain...]', 'recipient domains to check')
    .option('-f, --file <path>', 'read domains from a file, one per line (# comments allowed); "-" reads standard input')
    .option('--probe', 'connect to each MX host, STARTTLS, and validate its certificate for the MX name (RFC 8461 §4.2)')
    .addOption(new Option('--concurrency <n>', 'domains checked at the same time').argParser(integer(1, 256)).default(8))
    .option('--no-progress', 'no progress bar (it is shown on a terminal only, for --file)');
  addNetOptions(check, 10_000, 'DNS query, policy fetch, probe');
  addPortOptions(check, 'policy hosts');
  check
    .addOption(new Option('--smtp-port <n>', 'SMTP port of MX hosts for --probe (for tests against a loopback world; real MX hosts listen on 25)').argParser(integer(1, 65535)).default(25))
    .addOption(new Option('--port <n>', 'old name of --smtp-port').argParser(integer(1, 65535)).hideHelp())
    .option('--testing-as-enforce', 'count domains in testing mode that would fail under enforce as problems (exit code 1)')
    .addHelpText(
      'after',
      `
A domain has a problem (exit code 1) when: its name is invalid or it does not exist; a DNS query fails
temporarily; its _mta-sts TXT record is invalid or duplicated; the policy cannot be fetched or does not parse;
under an enforce policy, an MX host matches no mx pattern, or (--probe) fails STARTTLS or certificate validation.
The same MX findings under a testing policy put the domain in its own category, "would fail under enforce"; they
count toward the exit code only with --testing-as-enforce. Warnings (TLS-RPT record errors, a max_age below one day,
an enforce policy without TLS-RPT, an mx pattern matching no MX or covering a public suffix, an unknown top-level
domain, a certificate expiring within 14 days) never do. No policy is not a problem.
The input is one domain per line; an e-mail address or a line with spaces is reported as an invalid entry.`,
    )
    .action(async (domains: string[], opts: CheckCommandOptions & { port?: number; policyPort?: number }) => {
      // The old names stay accepted (hidden): --port and --policy-port.
      const merged: CheckCommandOptions = { ...opts, smtpPort: opts.port ?? opts.smtpPort, ...(opts.httpsPort ?? opts.policyPort) !== undefined ? { httpsPort: (opts.httpsPort ?? opts.policyPort)! } : {} };
      setExit(await runCheck(domains, merged, io, cwd));
    });

}

/** `mta-sts tlsrpt preview|send`. */
function addTlsRptCommands(program: Command, io: CliIo, cwd: string, setExit: (code: number) => void): void {
  const tlsrpt = program.command('tlsrpt').description('TLS-RPT (RFC 8460) reports waiting in the SQLite database of createTlsRptReporter({ store: path }) (createSqliteTlsRptStore)');
  const dbOptions = (cmd: Command): Command =>
    cmd
      .option('--db <file>', 'the TLS-RPT database (SQLite file of createSqliteTlsRptStore)', DEFAULT_TLSRPT_DB)
      .option('--org <name>', 'organization-name of the reports (default: the submitter)')
      .option('--contact <email>', 'contact-info of the reports (default: postmaster@<submitter>)')
      .option('--submitter <domain>', `domain of the sending MTA (default: this host name, ${hostname()})`);

  const preview = tlsrpt.command('preview').description('Show the reports not sent yet: closed days (due) and the current day (still counting). Opens the database read-only; sends nothing.');
  dbOptions(preview)
    .option('--json', 'one JSON object per report: { day, policyDomain, closed, report, delivery }')
    .option('--no-color', 'no colours')
    .action(async (opts: TlsRptCommandOptions) => {
      setExit(await runTlsRptPreview(opts, io, cwd));
    });

  const send = tlsrpt
    .command('send')
    .description(
      "Send every report of a closed UTC day now (ignoring the scheduled delay and jitter) to the rua destinations of the policy domain's _smtp._tls record; sent reports leave the database, failed ones stay for a retry. Safe beside a running reporter on the same database: each report is sent once.",
    );
  dbOptions(send);
  addNetOptions(send, 30_000, 'DNS query, HTTPS POST');
  send
    .option('--smtp <url>', 'Nodemailer SMTP URL for mailto: destinations, e.g. smtp://relay.example:587 (it must not enforce MTA-STS, RFC 8460 §5.3); without it, reports that can only go to mailto: stay in the database')
    .option('--from <address>', 'From of report mail (default noreply-tlsrpt@<submitter>)')
    .option('--dkim-domain <domain>', 'DKIM-sign report mail for this domain (RFC 8460 §5.3 requires a signature)')
    .option('--dkim-selector <selector>', 'DKIM selector')
    .option('--dkim-key <file>', 'DKIM private key (PEM)')
    .option('--allow-internal-destinations', 'also send to report destinations inside this network (loopback, private addresses, names like localhost or *.test): for test worlds only')
  addPortOptions(send, 'report endpoints (https: rua)');
  send
    .action(async (opts: TlsRptCommandOptions) => {
      setExit(await runTlsRptSend(opts, io, cwd));
    });

}

/** `mta-sts world`. */
function addWorldCommand(program: Command, io: CliIo, cwd: string, setExit: (code: number) => void): void {
  const world = program
    .command('world')
    .description(
      'Start the loopback test world (DNS server, test CA, HTTPS policy hosts, SMTP MX hosts on 127.0.0.0/8) with a set of example domains, good and broken, and print the options that point mta-sts (or your own code) at it. Runs until interrupted (Ctrl-C). Needs the optional peer dependencies smtp-server, dns-packet and node-forge.',
    )
    .option('--ca-file <path>', 'where to write the CA certificate (PEM); default: a new temporary directory, removed on exit')
    .option('--json', 'print one JSON object { dnsServer, caFile, httpsPort, smtpPort, domains, args } instead of text')
    .option('--no-color', 'no colours');
  world.action(async (opts: WorldCommandOptions) => {
    setExit(await runWorld(opts, io, cwd));
  });

}

/** `--https-port` (and its old name `--policy-port`, hidden): the HTTPS port the RFCs fix at 443, for test worlds. */
function addPortOptions(cmd: Command, what: string): void {
  cmd
    .addOption(new Option('--https-port <n>', `HTTPS port of ${what} (for tests against a loopback world; the RFCs fix 443)`).argParser(integer(1, 65535)))
    .addOption(new Option('--policy-port <n>', 'old name of --https-port').argParser(integer(1, 65535)).hideHelp());
}

/** Reads a domain list from a file or stdin, refusing more than {@link MAX_LIST_BYTES} bytes read. */
async function readDomainList(file: string, io: CliIo, cwd: string): Promise<string> {
  if (file === '-') return readAll(io.stdin, MAX_LIST_BYTES, 'standard input');
  try {
    return await readAll(createReadStream(resolvePath(cwd, file)), MAX_LIST_BYTES, file);
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

async function runCheck(args: string[], opts: CheckCommandOptions, io: CliIo, cwd: string): Promise<number> {
  // The command line and a list are handled alike: every entry is checked, and an invalid one is reported as such.
  const entries: Array<{ input: string; source?: string }> = [];
  const seen = new Set<string>();
  const add = (input: string, source?: string) => {
    const key = domainKey(input);
    if (seen.has(key)) return;
    seen.add(key);
    entries.push({ input, ...(source !== undefined ? { source } : {}) });
  };
  for (const arg of args) add(arg);
  const batch = opts.file !== undefined;
  if (opts.file !== undefined) {
    const text = await readDomainList(opts.file, io, cwd);
    const name = opts.file === '-' ? 'stdin' : opts.file;
    for (const entry of parseDomainList(text)) add(entry.input, `${name}:${entry.line}`);
  }
  if (entries.length === 0) {
    if (batch) throw new UsageError(`no domains in ${opts.file === '-' ? 'standard input' : opts.file}`);
    throw new UsageError('give at least one domain, or --file <path>');
  }

  const ca = await readCaFiles(opts.ca, cwd);
  const c: Colors = pc.createColors(colorEnabled(io.stdout, io.env, opts.color));
  const runtime = createCheckRuntime({
    dnsServers: opts.dnsServer ?? [],
    ca,
    timeoutMs: opts.timeout,
    probe: opts.probe === true,
    testingAsEnforce: opts.testingAsEnforce === true,
    smtpPort: opts.smtpPort,
    ...(opts.httpsPort !== undefined ? { httpsPort: opts.httpsPort } : {}),
  });

  const showProgress = batch && opts.progress !== false && io.stderr.isTTY === true && entries.length > 1;
  // With the bar and the results on the same terminal, results wait until the bar is gone.
  const holdOutput = showProgress && io.stdout.isTTY === true;
  const held: string[] = [];
  const emit = (text: string) => (holdOutput ? held.push(text) : io.stdout.write(`${text}\n`));
  const width = Math.min(40, Math.max(...entries.map((d) => d.input.length)));
  const bar = showProgress
    ? new SingleBar(
        { stream: io.stderr as NodeJS.WritableStream, format: 'checking {bar} {value}/{total} domains | {eta_formatted} left', hideCursor: true, clearOnComplete: true, etaBuffer: 50 },
        Presets.shades_classic,
      )
    : undefined;
  const started = performance.now();
  let results: CheckResult[];
  try {
    bar?.start(entries.length, 0);
    results = await mapOrdered(entries, opts.concurrency, (entry) => checkDomain(entry.input, runtime.ctx, entry.source), {
      onSettled: () => bar?.increment(),
      onResult: (result, index) => {
        if (opts.json) emit(JSON.stringify(result));
        else if (batch) emit(formatCompact(c, result, width));
        else emit(`${index > 0 ? '\n' : ''}${formatCheck(c, result)}`);
      },
    });
  } finally {
    bar?.stop();
    await runtime.close();
  }
  for (const text of held) io.stdout.write(`${text}\n`);
  if (!opts.json && (batch || entries.length > 1)) io.stdout.write(`\n${formatSummary(c, summarize(results, Math.round(performance.now() - started)))}\n`);
  return results.some((r) => r.problem) ? EXIT_PROBLEM : EXIT_OK;
}

/**
 * Runs the CLI with `argv` (the arguments after the program name). Never throws, never exits: resolves with the
 * exit code.
 */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let exitCode = EXIT_OK;
  const program = buildProgram(io, (code) => {
    exitCode = code;
  });
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end here with exit code 0; parse errors were already printed by commander.
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.exitCode === 0) return EXIT_OK;
      // `mta-sts` / `mta-sts tlsrpt` without a subcommand print help to stderr.
      return EXIT_USAGE;
    }
    if (error instanceof UsageError) {
      io.stderr.write(`mta-sts: error: ${error.message}\n(run with --help for usage)\n`);
      return EXIT_USAGE;
    }
    io.stderr.write(`mta-sts: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    return EXIT_USAGE;
  }
}
