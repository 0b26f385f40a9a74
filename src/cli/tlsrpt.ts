/**
 * `mta-sts tlsrpt preview|send`: the reports waiting in a TLS-RPT database (the SQLite file of
 * `createSqliteTlsRptStore`, as written by `createTlsRptReporter({ store: path })`), shown or sent now through the
 * reporter's own `pending()` / `flush()`.
 */
import { createPrivateKey } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { rootCertificates } from 'node:tls';
import { resolve as resolvePath } from 'node:path';
import pc from 'picocolors';
import { createDefaultResolver } from '../discovery/resolver.js';
import { normalizeDomainOrUndefined } from '../domain.js';
import { unknownTopLevelDomain } from '../mx/public-suffix.js';
import { MtaStsError } from '../errors.js';
import { createSqliteTlsRptStore, createTlsRptReporter, TlsRptError, type FlushResult, type PendingReport, type SqliteTlsRptStore, type TlsRptReporter, type TlsRptReporterOptions } from '../tlsrpt/index.js';
import type { Colors } from './format.js';
import { colorEnabled, EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, UsageError, type CliIo } from './io.js';

/** The database `--db` defaults to (the README's example `store`). */
export const DEFAULT_TLSRPT_DB = '/var/lib/mta-sts-sender/tlsrpt.db';

export interface TlsRptCommandOptions {
  db: string;
  org?: string;
  contact?: string;
  submitter?: string;
  json?: boolean;
  color?: boolean;
  // send only
  dnsServer?: string[];
  ca?: string[];
  timeout?: number;
  smtp?: string;
  from?: string;
  dkimDomain?: string;
  dkimSelector?: string;
  dkimKey?: string;
  httpsPort?: number;
  /** `--allow-internal-destinations`: the reporter's `allowInternalDestinations` (test worlds). */
  allowInternalDestinations?: boolean;
  /** Old name of `httpsPort` (hidden option `--policy-port`). */
  policyPort?: number;
}

function colors(io: CliIo, flag: boolean | undefined): Colors {
  return pc.createColors(colorEnabled(io.stdout, io.env, flag));
}

/**
 * Opens the database of `--db`. A missing file, a file that is not a TLS-RPT database, or a missing driver is a
 * usage error; `readOnly` (preview) writes nothing, corrupt records included.
 */
async function openDatabase(opts: TlsRptCommandOptions, cwd: string, readOnly = false): Promise<{ path: string; store: SqliteTlsRptStore; corrupt: TlsRptError[] }> {
  const path = resolvePath(cwd, opts.db);
  let isFile = false;
  try {
    isFile = (await stat(path)).isFile();
  } catch (error) {
    throw new UsageError(`cannot open TLS-RPT database ${opts.db}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  if (!isFile) throw new UsageError(`${opts.db} is not a file (--db takes the SQLite database of the reporter's store)`);
  let store: SqliteTlsRptStore;
  try {
    store = createSqliteTlsRptStore({ path, readOnly });
  } catch (error) {
    if (error instanceof TlsRptError || error instanceof MtaStsError) throw new UsageError(`cannot open TLS-RPT database ${opts.db}: ${error.message}`);
    throw error;
  }
  const corrupt: TlsRptError[] = [];
  store.subscribe((event) => corrupt.push(event.error));
  return { path, store, corrupt };
}

/** The identity in every report (RFC 8460 §4.4 organization-name, contact-info) and the report-id domain. */
export function identity(opts: TlsRptCommandOptions): Pick<TlsRptReporterOptions, 'organizationName' | 'contactInfo' | 'submitter'> {
  const submitterInput = opts.submitter ?? hostname();
  const submitter = normalizeDomainOrUndefined(submitterInput);
  if (submitter === undefined) throw new UsageError(`--submitter must be a domain name (got ${JSON.stringify(submitterInput)})`);
  if (opts.contact !== undefined && !/^[^\s@]+@[^\s@]+$/.test(opts.contact)) throw new UsageError(`--contact must be an e-mail address (got ${JSON.stringify(opts.contact)})`);
  return { organizationName: opts.org ?? submitter, contactInfo: opts.contact ?? `postmaster@${submitter}`, submitter };
}

/**
 * A warning when the submitter is not under a known top-level domain (a bare host name such as the default
 * `hostname()` often is): it ends every report-id (RFC 8460 §4.4) and the default contact address.
 */
function submitterWarning(submitter: string, io: CliIo): void {
  const tld = unknownTopLevelDomain(submitter);
  if (tld !== undefined) {
    io.stderr.write(`mta-sts: warning: the submitter ${submitter} is not under a known top-level domain (.${tld}); report-ids and the default contact use it: give --submitter with your MTA's domain name\n`);
  }
}

function sessions(p: PendingReport): { ok: number; failed: number } {
  let ok = 0;
  let failed = 0;
  for (const policy of p.report.policies) {
    ok += policy.summary['total-successful-session-count'];
    failed += policy.summary['total-failure-session-count'];
  }
  return { ok, failed };
}

/** Human rendering of one pending report. */
export function formatPendingReport(c: Colors, p: PendingReport): string {
  const { ok, failed } = sessions(p);
  const state = p.closed ? (p.delivery && p.delivery.attempts > 0 ? c.yellow(`retrying (${p.delivery.attempts} failed attempt${p.delivery.attempts === 1 ? '' : 's'}${p.delivery.lastError ? `: ${p.delivery.lastError}` : ''})`) : c.green('due')) : c.dim('current day, still counting');
  const lines = [`${c.bold(p.policyDomain)}  ${p.day}  ${state}`, `  sessions: ${c.green(`${ok} successful`)}, ${failed > 0 ? c.red(`${failed} failed`) : '0 failed'}`];
  for (const policy of p.report.policies) {
    const pol = policy.policy;
    lines.push(`  policy ${pol['policy-type']} ${pol['policy-domain']}${pol['mx-host'] ? ` (mx ${pol['mx-host'].join(', ')})` : ''}: ${policy.summary['total-successful-session-count']} ok, ${policy.summary['total-failure-session-count']} failed`);
    for (const f of policy['failure-details'] ?? []) {
      const where = [f['receiving-mx-hostname'], f['receiving-ip']].filter(Boolean).join(' ');
      lines.push(`    ${c.red(f['result-type'])} ×${f['failed-session-count']}${where ? ` ${where}` : ''}${f['failure-reason-code'] ? c.dim(` (${f['failure-reason-code']})`) : ''}`);
    }
  }
  if (p.delivery) lines.push(c.dim(`  due ${new Date(p.delivery.dueAt).toISOString()}${p.delivery.attempts > 0 ? `, next attempt ${new Date(p.delivery.nextAttemptAt).toISOString()}` : ''}`));
  return lines.join('\n');
}

export async function runTlsRptPreview(opts: TlsRptCommandOptions, io: CliIo, cwd: string): Promise<number> {
  const who = identity(opts); // usage errors before the database is opened
  const { path, store, corrupt } = await openDatabase(opts, cwd, true);
  submitterWarning(who.submitter, io);
  const c = colors(io, opts.color);
  let reporter: TlsRptReporter;
  try {
    reporter = createTlsRptReporter({ ...who, store, resolver: createDefaultResolver() });
  } catch (error) {
    await store.close();
    throw reporterUsageError(error);
  }
  try {
    const pending = await reporter.pending();
    if (opts.json) {
      // The identity `tlsrpt send` with the same options puts in the report (also inside `report`).
      for (const p of pending) io.stdout.write(`${JSON.stringify({ ...p, organizationName: who.organizationName, contactInfo: who.contactInfo, submitter: who.submitter })}\n`);
    } else {
      const due = pending.filter((p) => p.closed).length;
      io.stdout.write(`${c.bold(`Database ${path}`)}: ${pending.length} pending report${pending.length === 1 ? '' : 's'} (${due} for closed days)\n`);
      for (const p of pending) io.stdout.write(`\n${formatPendingReport(c, p)}\n`);
    }
    for (const e of corrupt) {
      const why = e.cause instanceof Error ? e.cause.message : e.message;
      io.stderr.write(`mta-sts: warning: the record of ${e.domain ?? '?'} ${String(e.details.day ?? '')} in ${path} is corrupt and was skipped (left in place): ${why}\n`);
    }
    return EXIT_OK;
  } finally {
    await reporter.close();
    await store.close();
  }
}

/** A reporter that cannot be created from the CLI's options (MTASTS_INVALID_OPTIONS, ...) is a usage error. */
function reporterUsageError(error: unknown): unknown {
  if (error instanceof MtaStsError || error instanceof TypeError || error instanceof RangeError) return new UsageError(error.message);
  return error;
}

/** `--smtp`: a Nodemailer SMTP URL (`smtp://` or `smtps://`); anything else is a usage error. */
export function parseSmtpUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`--smtp must be an SMTP URL such as smtp://relay.example:587 (got ${JSON.stringify(value)})`);
  }
  if (url.protocol !== 'smtp:' && url.protocol !== 'smtps:') throw new UsageError(`--smtp must be an smtp:// or smtps:// URL (got ${JSON.stringify(value)})`);
  if (url.hostname === '') throw new UsageError(`--smtp has no host name (got ${JSON.stringify(value)})`);
  return value;
}

async function readSendFiles(opts: TlsRptCommandOptions, cwd: string): Promise<{ ca: string[]; dkim: TlsRptReporterOptions['dkim'] }> {
  const ca: string[] = [];
  for (const file of opts.ca ?? []) {
    try {
      ca.push(await readFile(resolvePath(cwd, file), 'utf8'));
    } catch (error) {
      throw new UsageError(`cannot read CA file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
  }
  let dkim: TlsRptReporterOptions['dkim'];
  if (opts.dkimDomain !== undefined || opts.dkimSelector !== undefined || opts.dkimKey !== undefined) {
    if (opts.dkimDomain === undefined || opts.dkimSelector === undefined || opts.dkimKey === undefined) throw new UsageError('--dkim-domain, --dkim-selector and --dkim-key go together');
    let privateKey: string;
    try {
      privateKey = await readFile(resolvePath(cwd, opts.dkimKey), 'utf8');
    } catch (error) {
      throw new UsageError(`cannot read DKIM key ${opts.dkimKey}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    try {
      // Nodemailer sends unsigned mail when the key does not load: refuse it here (RFC 8460 §5.3).
      createPrivateKey(privateKey);
    } catch (error) {
      throw new UsageError(`--dkim-key ${opts.dkimKey} is not a private key (PEM): ${(error as Error).message}`);
    }
    dkim = { domainName: opts.dkimDomain, keySelector: opts.dkimSelector, privateKey };
  }
  return { ca, dkim };
}

export async function runTlsRptSend(opts: TlsRptCommandOptions, io: CliIo, cwd: string): Promise<number> {
  // Every usage error comes before the database is touched: a typo must never count as a delivery attempt.
  const who = identity(opts);
  if (opts.smtp !== undefined) parseSmtpUrl(opts.smtp);
  if (opts.from !== undefined && !/^[^\s@]+@[^\s@]+$/.test(opts.from)) throw new UsageError(`--from must be an e-mail address (got ${JSON.stringify(opts.from)})`);
  const { ca, dkim } = await readSendFiles(opts, cwd);
  const httpsPort = opts.httpsPort ?? opts.policyPort;
  const { store, corrupt } = await openDatabase(opts, cwd);
  const storeErrors: TlsRptError[] = [];
  const c = colors(io, opts.color);
  const timeoutMs = opts.timeout ?? 30_000;
  const resolver = createDefaultResolver({ ...(opts.dnsServer && opts.dnsServer.length > 0 ? { dnsServers: opts.dnsServer } : {}), timeoutMs: Math.max(100, Math.floor(timeoutMs / 2)), tries: 2 });
  let reporter: TlsRptReporter;
  try {
    reporter = createTlsRptReporter({
      ...who,
      // The database itself: live writers (an MTA recording into the same file) are safe, and so are other senders:
      // each report is claimed in a transaction and sent once (createSqliteTlsRptStore).
      store,
      onEvent: (event) => {
        if (event.type === 'store-error') storeErrors.push(event.error);
      },
      resolver,
      dnsTimeoutMs: timeoutMs,
      httpsTimeoutMs: timeoutMs,
      // Without --smtp, reports that can only go to mailto: stay in the database for a run with --smtp.
      keepUndeliverable: true,
      ...(ca.length > 0 ? { ca: [...rootCertificates, ...ca] } : {}),
      // --ca also applies to the relay's STARTTLS certificate.
      ...(opts.smtp !== undefined ? { mailTransport: ca.length > 0 ? { url: opts.smtp, tls: { ca: [...rootCertificates, ...ca] } } : opts.smtp } : {}),
      ...(opts.from !== undefined ? { mailFrom: opts.from } : {}),
      ...(dkim ? { dkim } : {}),
      ...(httpsPort !== undefined ? { httpsPort } : {}),
      ...(opts.allowInternalDestinations === true ? { allowInternalDestinations: true } : {}),
    });
  } catch (error) {
    await store.close();
    throw reporterUsageError(error);
  }
  submitterWarning(who.submitter, io);
  // The reporter's own configuration warnings (RFC 8460 §5.3: report mail without DKIM), printed once.
  for (const w of reporter.warnings) io.stderr.write(`mta-sts: warning: ${w.message}\n`);
  let result: FlushResult;
  try {
    result = await reporter.flush();
  } finally {
    await reporter.close();
    await store.close();
  }
  printSendResult(result, opts, c, io);
  printDestinationWarnings(result, io);
  for (const e of corrupt) io.stderr.write(`mta-sts: warning: ${e.message}\n`);
  // A full or read-only disk: reported once per problem, never retried in a loop.
  for (const e of storeErrors) io.stderr.write(`mta-sts: error: ${e.message}\n`);
  const notAttempted = result.notAttempted ?? [];
  if (notAttempted.length > 0) {
    // A configuration error, not a delivery failure: nothing was attempted, nothing counted.
    const reasons = [...new Set(notAttempted.map((e) => e.error.message))];
    io.stderr.write(`mta-sts: error: ${notAttempted.length} report${notAttempted.length === 1 ? '' : 's'} not sent because of the configuration: ${reasons.join('; ')}\n`);
    return EXIT_USAGE;
  }
  return result.failed.length > 0 || result.dropped.length > 0 || storeErrors.length > 0 ? EXIT_PROBLEM : EXIT_OK;
}

/** Destinations left out (`maxDestinationsPerReport`) or refused (internal targets), as warnings on stderr. */
function printDestinationWarnings(result: FlushResult, io: CliIo): void {
  for (const e of result.limited ?? []) {
    io.stderr.write(`mta-sts: warning: ${e.policyDomain} ${e.day}: the record names ${e.published} report destinations (${e.duplicates} duplicates); sent to the first ${e.limit}, ${e.leftOut} left out\n`);
  }
  for (const e of result.refused ?? []) {
    // JSON quoting: a decoded mailto: address may hold control characters.
    io.stderr.write(`mta-sts: warning: ${e.policyDomain} ${e.day}: destination ${JSON.stringify(e.destination)} refused (${e.reason}); --allow-internal-destinations allows it in test worlds\n`);
  }
}

/** Prints what `tlsrpt send` did: one line (or JSON object) per report, then a count. */
function printSendResult(result: FlushResult, opts: TlsRptCommandOptions, c: Colors, io: CliIo): void {
  const events = [...result.sent, ...result.failed, ...result.dropped, ...result.skipped, ...(result.notAttempted ?? [])].sort((a, b) => (a.day === b.day ? a.policyDomain.localeCompare(b.policyDomain) : a.day < b.day ? -1 : 1));
  const kept = result.skipped.filter((e) => e.type === 'skipped-no-transport' && e.kept === true).length;
  for (const e of events) {
    if (opts.json) {
      // The report itself is left out (use `preview --json` for it); errors as their JSON view.
      const { report: _report, ...rest } = e as typeof e & { report?: unknown };
      io.stdout.write(`${JSON.stringify(rest)}\n`);
      continue;
    }
    const head = `${e.policyDomain} ${e.day}`;
    switch (e.type) {
      case 'sent':
        io.stdout.write(`${c.green('sent')}     ${head} → ${e.delivered.join(', ')} ${c.dim(`(${e.reportId})`)}\n`);
        for (const f of e.failures) io.stdout.write(`         ${c.yellow('!')} ${f.uri}: ${f.error.message}\n`);
        break;
      case 'failed':
        io.stdout.write(`${c.red('failed')}   ${head}: ${e.error.message}; kept for a retry after ${new Date(e.nextAttemptAt).toISOString()}\n`);
        for (const f of e.failures) io.stdout.write(`         ${c.red('✗')} ${f.uri}: ${f.error.message}\n`);
        break;
      case 'dropped':
        io.stdout.write(`${c.red('dropped')}  ${head}: ${e.reason} (${e.error.message})\n`);
        break;
      case 'skipped-no-record':
        io.stdout.write(`${c.dim('skipped')}  ${head}: no usable TLS-RPT record${e.error ? ` (${e.error.message})` : ''}\n`);
        break;
      case 'skipped-no-transport':
        if (e.kept) io.stdout.write(`${c.yellow('kept')}     ${head}: only mailto: destinations (${e.uris.join(', ')}); give --smtp to send it\n`);
        else io.stdout.write(`${c.dim('skipped')}  ${head}: only mailto: destinations and no --smtp (${e.uris.join(', ')})\n`);
        break;
      case 'not-attempted':
        io.stdout.write(`${c.red('not sent')} ${head}: ${e.error.message} (configuration error; the report stays in the database)\n`);
        break;
    }
  }
  if (!opts.json) {
    if (events.length === 0) io.stdout.write('nothing to send: no reports for closed days in the database\n');
    const notSent = result.notAttempted?.length ?? 0;
    io.stdout.write(`${result.sent.length} sent, ${result.failed.length} failed, ${result.dropped.length} dropped, ${result.skipped.length - kept} skipped, ${kept} kept (need --smtp)${notSent > 0 ? `, ${notSent} not sent (configuration error)` : ''}\n`);
  }
}
