/**
 * Human-readable rendering of `mta-sts check` results. Pure: takes results and a picocolors instance (colours off
 * gives plain text), returns strings.
 */
import type pc from 'picocolors';
import type { CheckCategory, CheckResult, MxHostTrace, TxtTrace } from './check-types.js';
import { printable } from './printable.js';

/** A picocolors instance (`pc.createColors(enabled)`). */
export type Colors = ReturnType<typeof pc.createColors>;

const OK = '✓';
const BAD = '✗';
const WARN = '!';

function duration(seconds: number): string {
  if (seconds === 0) return '0 s';
  const units: Array<[number, string]> = [
    [86_400, 'd'],
    [3_600, 'h'],
    [60, 'min'],
  ];
  for (const [size, unit] of units) if (seconds % size === 0) return `${seconds / size} ${unit}`;
  return `${seconds} s`;
}

export function categoryLabel(c: Colors, category: CheckCategory): string {
  switch (category) {
    case 'enforce':
      return c.green('enforce');
    case 'testing':
      return c.yellow('testing');
    case 'would-fail':
      return c.magenta('would-fail');
    case 'none':
      return c.dim('none');
    case 'broken':
      return c.red(c.bold('broken'));
  }
}

function txtLines(c: Colors, txt: TxtTrace): string[] {
  const out = [`  ${c.bold('TXT')}     ${txt.name}`];
  for (const record of txt.records) out.push(`    ${c.dim(JSON.stringify(record))}`);
  switch (txt.verdict) {
    case 'valid':
      out.push(`    ${c.green(OK)} valid STS record, id ${c.bold(txt.id ?? '')}${txt.extensions && txt.extensions.length > 0 ? `, extensions ${txt.extensions.map((e) => `${e.name}=${e.value}`).join(' ')}` : ''}`);
      break;
    case 'none':
      out.push(`    ${c.dim('-')} no STS record: the domain publishes no MTA-STS policy`);
      break;
    case 'invalid':
    case 'multiple':
      out.push(`    ${c.red(BAD)} ${txt.error?.message ?? txt.verdict}`);
      break;
    case 'dns-error':
      out.push(`    ${c.red(BAD)} ${txt.error?.message ?? 'DNS failure'}`);
      break;
  }
  return out;
}

function mxHostLines(c: Colors, h: MxHostTrace, width: number): string[] {
  const name = `${String(h.priority).padStart(3)} ${h.host.padEnd(width)}`;
  let verdict: string;
  switch (h.match) {
    case 'matched':
      verdict = `${c.green(OK)} matches ${h.pattern}`;
      break;
    case 'not-matched':
      verdict = `${c.red(BAD)} matches no mx pattern of the policy`;
      break;
    case 'invalid-name':
      verdict = `${c.red(BAD)} not a valid host name`;
      break;
    case 'not-applicable':
      verdict = c.dim('(no policy to match)');
      break;
  }
  const out = [`    ${name}  ${verdict}`];
  const indent = '        ';
  if (h.addressError !== undefined) out.push(`${indent}${c.red(BAD)} probe: ${h.addressError}`);
  if (h.probe) {
    const p = h.probe;
    const where = `${p.address}:${p.port}`;
    const negotiated = [p.tlsVersion, p.cipher].filter(Boolean).join(' ');
    if (p.ok) out.push(`${indent}${c.green(OK)} probe ${where}: STARTTLS, ${negotiated || 'TLS'}, certificate valid for ${h.host} (${p.elapsedMs} ms)`);
    else out.push(`${indent}${c.red(BAD)} probe ${where}: ${p.resultType ? `${c.bold(p.resultType)}: ` : ''}${p.reason}${negotiated ? ` (${negotiated})` : ''} (${p.elapsedMs} ms)`);
    const cert = p.certificate;
    if (cert) {
      const left = cert.daysLeft < 0 ? c.red(`${BAD} expired ${-cert.daysLeft} day${cert.daysLeft === -1 ? '' : 's'} ago`) : cert.daysLeft < 14 ? c.yellow(`${WARN} ${cert.daysLeft} days left`) : `${cert.daysLeft} days left`;
      out.push(`${indent}  certificate: issuer ${cert.issuer}`);
      out.push(`${indent}    not after ${cert.notAfter} (${left})`);
      out.push(`${indent}    names ${cert.san.join(', ') || c.dim('(no DNS names)')}`);
      if (cert.fingerprint256) out.push(`${indent}    ${c.dim(`sha256 ${cert.fingerprint256}`)}`);
    }
  }
  return out;
}

/** The full decision trace of one domain, as printed by `mta-sts check <domain>`. */
export function formatCheck(c: Colors, r: CheckResult): string {
  const out: string[] = [];
  // The input is printed escaped (an entry of a --file list may hold ESC, NUL or invalid UTF-8).
  const head = printable(r.domain ?? r.input);
  out.push(`${c.bold(head)}${r.domain && r.domain !== r.input.toLowerCase().replace(/\.$/, '') ? c.dim(` (${printable(r.input)})`) : ''}  ${categoryLabel(c, r.category)}`);
  if (r.txt) out.push(...txtLines(c, r.txt));
  if (r.policy) {
    const p = r.policy;
    out.push(`  ${c.bold('Policy')}  ${p.url}`);
    const facts = [p.httpStatus !== undefined ? `HTTP ${p.httpStatus}` : undefined, p.contentType, p.bytes !== undefined ? `${p.bytes} bytes` : undefined, p.elapsedMs !== undefined ? `${p.elapsedMs} ms` : undefined].filter(Boolean).join(', ');
    if (p.ok) {
      out.push(`    ${c.green(OK)} ${p.fromCache ? c.dim('cached policy (not fetched in this run)') : facts}`);
      out.push(`    mode ${c.bold(p.mode ?? '')}, max_age ${p.maxAge} (${duration(p.maxAge ?? 0)})`);
      for (const mx of p.mx ?? []) out.push(`    mx ${mx}`);
      for (const ext of p.extensions ?? []) out.push(`    ${c.dim(`${ext.name}: ${ext.value}`)}`);
    } else if (!p.fetched && !p.error) {
      out.push(`    ${c.dim('-')} not fetched (no valid TXT record)`);
    } else {
      out.push(`    ${c.red(BAD)} ${p.error ? `${p.error.code}: ${p.error.message}` : 'failed'}${facts ? c.dim(` (${facts})`) : ''}`);
    }
  }
  if (r.mx) {
    const m = r.mx;
    const label = `  ${c.bold('MX')}      ${printable(r.domain ?? r.input)}`;
    switch (m.verdict) {
      case 'ok':
        out.push(label);
        break;
      case 'implicit':
        out.push(`${label} ${c.dim('(no MX records: the domain itself is the MX, RFC 5321 §5.1)')}`);
        break;
      case 'null-mx':
        out.push(`${label} ${c.dim('(null MX: the domain accepts no mail, RFC 7505)')}`);
        break;
      case 'nxdomain':
        out.push(`${label}\n    ${c.red(BAD)} the domain does not exist (NXDOMAIN)`);
        break;
      case 'dns-error':
        out.push(`${label}\n    ${c.red(BAD)} ${m.error?.message ?? 'DNS failure'}`);
        break;
    }
    const width = Math.max(0, ...m.hosts.map((h) => h.host.length));
    for (const h of m.hosts) out.push(...mxHostLines(c, h, width));
  }
  if (r.tlsrpt) {
    const t = r.tlsrpt;
    out.push(`  ${c.bold('TLS-RPT')} ${t.name}`);
    if (t.record) out.push(`    ${c.dim(JSON.stringify(t.record))}`);
    if (t.verdict === 'valid') out.push(`    ${c.green(OK)} reports go to ${(t.rua ?? []).join(', ')}`);
    else if (t.verdict === 'none') out.push(`    ${c.dim('-')} no TLS-RPT record: the domain receives no TLS reports`);
    else out.push(`    ${c.yellow(WARN)} ${t.error?.message ?? t.verdict}`);
    for (const i of t.ignored ?? []) out.push(`    ${c.yellow(WARN)} ignored ${i.uri}: ${i.reason}`);
  }
  const verdict =
    r.problems.length > 0
      ? c.red(c.bold(`${r.problems.length} problem${r.problems.length === 1 ? '' : 's'}`))
      : r.wouldFailUnderEnforce.length > 0
        ? c.magenta(c.bold('would fail under enforce'))
        : c.green('OK');
  const mode = r.mode === null ? 'no MTA-STS policy applies' : `a sender applies mode ${r.mode}`;
  out.push(`  ${c.bold('Verdict')} ${verdict}: ${mode}${r.probed ? '' : c.dim(' (MX not probed; add --probe)')} ${c.dim(`[${r.elapsedMs} ms]`)}`);
  for (const p of r.problems) out.push(`    ${c.red(BAD)} ${p.message}`);
  for (const f of r.wouldFailUnderEnforce) out.push(`    ${c.magenta(BAD)} would fail under enforce: ${f.message}`);
  for (const w of r.warnings) out.push(`    ${c.yellow(WARN)} ${w.message}`);
  return out.join('\n');
}

/** One line per domain, for batch mode. */
export function formatCompact(c: Colors, r: CheckResult, width: number): string {
  // The entry label is input text (a line of a --file list): printed escaped, never raw.
  const name = printable(r.domain ?? (r.source !== undefined ? `${r.source}: ${r.input}` : r.input)).padEnd(width);
  const cat = categoryLabel(c, r.category);
  const pad = ' '.repeat(Math.max(0, 10 - r.category.length));
  const notes = r.problems.length > 0 ? r.problems.map((p) => p.message).join('; ') : r.wouldFailUnderEnforce.length > 0 ? c.magenta(r.wouldFailUnderEnforce.map((f) => f.message).join('; ')) : r.warnings.length > 0 ? c.yellow(r.warnings.map((w) => w.message).join('; ')) : c.dim(r.mode === null ? 'no policy' : `mode ${r.mode}, ${r.mx?.hosts.length ?? 0} MX`);
  return `${name}  ${cat}${pad}  ${notes}`;
}

export interface CheckSummary {
  total: number;
  enforce: number;
  testing: number;
  'would-fail': number;
  none: number;
  broken: number;
  elapsedMs: number;
}

export function summarize(results: readonly CheckResult[], elapsedMs: number): CheckSummary {
  const s: CheckSummary = { total: results.length, enforce: 0, testing: 0, 'would-fail': 0, none: 0, broken: 0, elapsedMs };
  for (const r of results) s[r.category]++;
  return s;
}

/** The summary table of a batch. */
export function formatSummary(c: Colors, s: CheckSummary): string {
  const rows: Array<[CheckCategory, number, string]> = [
    ['enforce', s.enforce, 'policy in enforce mode, no problem found'],
    ['testing', s.testing, 'policy in testing mode, no problem found'],
    ['would-fail', s['would-fail'], 'policy in testing mode; would fail under enforce'],
    ['none', s.none, 'no policy (or mode none)'],
    ['broken', s.broken, 'at least one problem'],
  ];
  const width = String(s.total).length;
  const lines = [c.bold(`Summary: ${s.total} domain${s.total === 1 ? '' : 's'} in ${(s.elapsedMs / 1000).toFixed(1)} s`)];
  for (const [category, n, what] of rows) {
    const pad = ' '.repeat(10 - category.length);
    lines.push(`  ${categoryLabel(c, category)}${pad} ${String(n).padStart(width)}  ${c.dim(what)}`);
  }
  return lines.join('\n');
}
