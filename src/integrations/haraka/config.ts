/**
 * `config/mta-sts.ini`: the Haraka plugin's configuration, parsed strictly.
 *
 * Haraka's own ini reader logs and skips lines it does not understand and turns any unknown boolean word into
 * `false`. For a security setting that is the wrong default: a typo must not quietly weaken MTA-STS. So the plugin
 * reads the file's raw lines and parses them here: unknown sections or keys, duplicate keys, malformed lines and
 * out-of-range values are all {@link MtaStsError}s with code `MTASTS_INVALID_OPTIONS` naming the line.
 *
 * ```text
 * [main]
 * loglevel=info              ; debug | info | notice | warn | error | crit: this plugin's own threshold
 * lookup_timeout_ms=20000    ; deadline of the policy + MX lookup of one delivery attempt (then: defer)
 * starttls_timeout_ms=5000   ; wait for the reply to STARTTLS; unanswered: starttls-not-supported, next MX
 *
 * [engine]                   ; createMtaSts() options
 * dns_servers=192.0.2.53, 192.0.2.54
 * dns_timeout_ms=5000
 * fetch_timeout_ms=15000
 * ca_file=/etc/haraka/extra-roots.pem
 * policy_db=/var/lib/haraka/mta-sts-policies.db   ; policies kept across restarts, shared by the workers (SQLite)
 *
 * [tlsrpt]                   ; RFC 8460 reporting (createTlsRptReporter)
 * enabled=true
 * organization_name=Example Sender Inc.
 * contact_info=tlsrpt@sender.example
 * submitter=mta.sender.example
 * db=/var/lib/haraka/tlsrpt.db        ; counts and delivery state (SQLite, shared by the workers)
 * mail_host=relay.internal   ; report mail relay: must NOT enforce MTA-STS (RFC 8460 §5.3)
 * ```
 */
import { readFileSync } from 'node:fs';
import { MtaStsError } from '../../errors.js';
import { DEFAULT_STARTTLS_TIMEOUT_MS } from '../../tls/handshake-failure.js';

/** Haraka log levels the plugin writes at, lowest first. */
export const HARAKA_LOG_LEVELS = ['debug', 'info', 'notice', 'warn', 'error', 'crit'] as const;
export type HarakaLogLevel = (typeof HARAKA_LOG_LEVELS)[number];

/** The engine options the ini can set (see `MtaStsOptions`). */
export interface HarakaEngineConfig {
  dnsServers?: string[];
  dnsTimeoutMs?: number;
  fetchTimeoutMs?: number;
  fetchBackoffMs?: number;
  maxPolicyBytes?: number;
  maxMxHosts?: number;
  txtCheckIntervalMs?: number;
  refreshIntervalMs?: number;
  requireTextPlain?: boolean;
  systemRoots?: boolean;
  /** PEM text read from `ca_file`. */
  ca?: string;
  httpsPort?: number;
  /**
   * `policy_db`: the SQLite file of `createSqlitePolicyStore` (RFC 8461 §3.3: cached policies survive a restart of
   * Haraka, and its worker processes share them). Not an engine option: the plugin creates the store.
   */
  policyDb?: string;
}

/** The TLS-RPT reporter settings (see `TlsRptReporterOptions`). */
export interface HarakaTlsRptConfig {
  organizationName: string;
  contactInfo: string;
  submitter: string;
  /** The SQLite database of the reporter's store (`createSqliteTlsRptStore`). */
  db?: string;
  mailHost?: string;
  mailPort?: number;
  mailSecure?: boolean;
  mailFrom?: string;
  dkim?: { domainName: string; keySelector: string; privateKey: string };
  flushDelayMs?: number;
  checkIntervalMs?: number;
}

/** The parsed `mta-sts.ini`. */
export interface HarakaMtaStsConfig {
  /** Messages of this plugin below this level are not logged. Default `info`. */
  logLevel: HarakaLogLevel;
  /** Deadline of the policy and MX lookup of one delivery attempt, in ms; past it the message is deferred. Default 20000. */
  lookupTimeoutMs: number;
  /**
   * Time to wait for the MX's reply to STARTTLS, in ms (Haraka itself waits its whole socket timeout). Unanswered,
   * the connection is closed and the session recorded as `starttls-not-supported` (RFC 8460 §4.3.1); Haraka then
   * tries the next MX host. Applies to every connection the plugin watches (enforce, testing, and without a policy
   * when TLS-RPT is on). Default 5000.
   */
  starttlsTimeoutMs: number;
  /**
   * FOR TESTS ONLY: MX port (RFC 5321 fixes 25). When set, the plugin also answers `get_mx` for domains without an
   * enforce policy (with the MX hosts from its own resolver), since Haraka's own lookup always dials port 25.
   */
  mxPort?: number;
  engine: HarakaEngineConfig;
  /** Present when `[tlsrpt] enabled=true`. */
  tlsrpt?: HarakaTlsRptConfig;
}

type Kind = 'string' | 'list' | 'bool' | 'file' | { min: number; max: number };
const ms = (max: number, min = 0): Kind => ({ min, max });
const DAY = 86_400_000;

/** Every section and key the file may contain, with its type. */
const SCHEMA: Record<string, Record<string, Kind>> = {
  main: { loglevel: 'string', lookup_timeout_ms: ms(600_000, 1), starttls_timeout_ms: ms(600_000, 1), mx_port: ms(65_535, 1) },
  engine: {
    dns_servers: 'list',
    dns_timeout_ms: ms(600_000, 1),
    fetch_timeout_ms: ms(600_000, 1),
    fetch_backoff_ms: ms(7 * DAY),
    max_policy_bytes: ms(16 * 1024 * 1024, 1),
    max_mx_hosts: ms(1000, 1),
    txt_check_interval_ms: ms(DAY),
    refresh_interval_ms: ms(7 * DAY),
    require_text_plain: 'bool',
    system_roots: 'bool',
    ca_file: 'file',
    https_port: ms(65_535, 1),
    policy_db: 'string',
  },
  tlsrpt: {
    enabled: 'bool',
    organization_name: 'string',
    contact_info: 'string',
    submitter: 'string',
    db: 'string',
    mail_host: 'string',
    mail_port: ms(65_535, 1),
    mail_secure: 'bool',
    mail_from: 'string',
    dkim_domain: 'string',
    dkim_selector: 'string',
    dkim_private_key_file: 'file',
    flush_delay_ms: ms(DAY),
    check_interval_ms: ms(DAY, 10),
  },
};

type Value = string | number | boolean | string[];
type Sections = Record<string, Record<string, Value>>;

const invalid = (message: string, option?: string): MtaStsError =>
  new MtaStsError('MTASTS_INVALID_OPTIONS', `mta-sts.ini: ${message}`, option ? { details: { option } } : {});

/** One `key=value` value of the given kind. */
function parseValue(kind: Kind, raw: string, where: string): Value {
  if (kind === 'string') {
    if (raw === '') throw invalid(`${where} is empty`, where);
    return raw;
  }
  if (kind === 'list') {
    const items = raw.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
    if (items.length === 0) throw invalid(`${where} is empty`, where);
    return items;
  }
  if (kind === 'bool') {
    if (/^(true|yes|on|1)$/i.test(raw)) return true;
    if (/^(false|no|off|0)$/i.test(raw)) return false;
    throw invalid(`${where} must be true or false, got ${JSON.stringify(raw)}`, where);
  }
  if (kind === 'file') {
    try {
      return readFileSync(raw, 'utf8');
    } catch (error) {
      throw invalid(`${where}: cannot read ${JSON.stringify(raw)}: ${(error as Error).message}`, where);
    }
  }
  if (!/^\d+$/.test(raw) || Number(raw) < kind.min || Number(raw) > kind.max) {
    throw invalid(`${where} must be a whole number from ${kind.min} to ${kind.max}, got ${JSON.stringify(raw)}`, where);
  }
  return Number(raw);
}

/** Parses the raw lines of the file into sections, rejecting anything the schema does not know. */
export function parseIniLines(lines: readonly string[]): Sections {
  const sections: Sections = { main: {} };
  let section = 'main';
  lines.forEach((line, index) => {
    const at = `line ${index + 1}`;
    const text = line.trim();
    if (text === '' || text.startsWith(';') || text.startsWith('#')) return;
    const header = /^\[([^\]]*)\]$/.exec(text);
    if (header) {
      section = header[1]!.trim();
      if (!SCHEMA[section]) throw invalid(`${at}: unknown section [${section}] (known: ${Object.keys(SCHEMA).map((s) => `[${s}]`).join(', ')})`, section);
      sections[section] ??= {};
      return;
    }
    const pair = /^([A-Za-z0-9_]+)\s*=\s*(.*)$/.exec(text);
    if (!pair) throw invalid(`${at}: expected key=value, got ${JSON.stringify(text.slice(0, 80))}`);
    const key = pair[1]!.toLowerCase();
    const raw = pair[2]!.replace(/\s+[;#].*$/, '').trim();
    const kind = SCHEMA[section]![key];
    const where = `[${section}] ${key}`;
    if (!kind) throw invalid(`${at}: unknown key ${where} (known: ${Object.keys(SCHEMA[section]!).join(', ')})`, where);
    if (sections[section]![key] !== undefined) throw invalid(`${at}: ${where} is set twice`, where);
    sections[section]![key] = parseValue(kind, raw, where);
  });
  return sections;
}

/** Parses and validates `mta-sts.ini` (its raw lines; an absent file is an empty list: every default applies). */
export function parseHarakaConfig(lines: readonly string[]): HarakaMtaStsConfig {
  const s = parseIniLines(lines);
  const main = s.main ?? {};
  const engine = s.engine ?? {};
  const level = (main.loglevel as string | undefined)?.toLowerCase() ?? 'info';
  if (!(HARAKA_LOG_LEVELS as readonly string[]).includes(level)) throw invalid(`[main] loglevel must be one of ${HARAKA_LOG_LEVELS.join(', ')}, got ${JSON.stringify(level)}`, 'loglevel');
  const config: HarakaMtaStsConfig = {
    logLevel: level as HarakaLogLevel,
    lookupTimeoutMs: (main.lookup_timeout_ms as number | undefined) ?? 20_000,
    starttlsTimeoutMs: (main.starttls_timeout_ms as number | undefined) ?? DEFAULT_STARTTLS_TIMEOUT_MS,
    engine: {},
  };
  if (main.mx_port !== undefined) config.mxPort = main.mx_port as number;
  const e = config.engine;
  const copy = <K extends keyof HarakaEngineConfig>(key: K, from: string) => {
    if (engine[from] !== undefined) e[key] = engine[from] as HarakaEngineConfig[K];
  };
  copy('dnsServers', 'dns_servers');
  copy('dnsTimeoutMs', 'dns_timeout_ms');
  copy('fetchTimeoutMs', 'fetch_timeout_ms');
  copy('fetchBackoffMs', 'fetch_backoff_ms');
  copy('maxPolicyBytes', 'max_policy_bytes');
  copy('maxMxHosts', 'max_mx_hosts');
  copy('txtCheckIntervalMs', 'txt_check_interval_ms');
  copy('refreshIntervalMs', 'refresh_interval_ms');
  copy('requireTextPlain', 'require_text_plain');
  copy('systemRoots', 'system_roots');
  copy('ca', 'ca_file');
  copy('httpsPort', 'https_port');
  copy('policyDb', 'policy_db');
  if (e.ca !== undefined && !e.ca.includes('-----BEGIN CERTIFICATE-----')) throw invalid('[engine] ca_file holds no PEM certificate', 'ca_file');
  if (e.systemRoots === false && e.ca === undefined) throw invalid('[engine] system_roots=false needs ca_file (otherwise no certificate could validate)', 'system_roots');
  const tlsrpt = parseTlsRpt(s.tlsrpt);
  if (tlsrpt) config.tlsrpt = tlsrpt;
  return config;
}

function parseTlsRpt(section: Record<string, Value> | undefined): HarakaTlsRptConfig | undefined {
  if (!section || section.enabled !== true) return undefined;
  const str = (key: string) => section[key] as string | undefined;
  for (const key of ['organization_name', 'contact_info', 'submitter']) {
    if (str(key) === undefined) throw invalid(`[tlsrpt] ${key} is required when enabled=true`, key);
  }
  const config: HarakaTlsRptConfig = { organizationName: str('organization_name')!, contactInfo: str('contact_info')!, submitter: str('submitter')! };
  if (str('db') !== undefined) config.db = str('db')!;
  if (str('mail_host') !== undefined) config.mailHost = str('mail_host')!;
  if (section.mail_port !== undefined) config.mailPort = section.mail_port as number;
  if (section.mail_secure !== undefined) config.mailSecure = section.mail_secure as boolean;
  if (str('mail_from') !== undefined) config.mailFrom = str('mail_from')!;
  if (section.flush_delay_ms !== undefined) config.flushDelayMs = section.flush_delay_ms as number;
  if (section.check_interval_ms !== undefined) config.checkIntervalMs = section.check_interval_ms as number;
  const dkimKeys = ['dkim_domain', 'dkim_selector', 'dkim_private_key_file'].filter((k) => section[k] !== undefined);
  if (dkimKeys.length > 0 && dkimKeys.length < 3) throw invalid('[tlsrpt] dkim_domain, dkim_selector and dkim_private_key_file go together', 'dkim_domain');
  if (dkimKeys.length === 3) config.dkim = { domainName: str('dkim_domain')!, keySelector: str('dkim_selector')!, privateKey: str('dkim_private_key_file')! };
  if ((section.mail_port !== undefined || section.mail_secure !== undefined) && config.mailHost === undefined) throw invalid('[tlsrpt] mail_port / mail_secure need mail_host', 'mail_host');
  return config;
}
