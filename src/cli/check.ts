/**
 * `mta-sts check`: the decision trace a sending MTA follows for one recipient domain (RFC 8461 §3–§5, RFC 8460 §3),
 * as plain data. No printing and no process access here: the CLI formats the result (human or JSON) elsewhere, so
 * this is usable and testable on its own.
 *
 * What counts as a **problem** (exit code 1) — something that makes a sender defer, refuse or ignore the policy:
 * - the domain name is invalid, or the domain does not exist (NXDOMAIN);
 * - a DNS query (TXT `_mta-sts`, MX) fails temporarily (SERVFAIL, timeout): the sender cannot decide;
 * - the `_mta-sts` TXT record is invalid, or there is more than one STS record (§3.1);
 * - a valid TXT record exists but the policy cannot be fetched or does not parse (§3.3: any fetch error, a
 *   certificate that does not validate, a status other than 200, a wrong content type, an oversized body);
 * - under an `enforce` policy: an MX host that matches none of the policy's `mx` patterns (§4.1), and with
 *   `--probe` an MX host that does not offer STARTTLS, negotiates less than TLS 1.2, presents a certificate that
 *   does not validate for its name (§4.2), or cannot be reached.
 *
 * **Warnings** do not change the exit code: the same MX and probe findings under a `testing` policy (mail is still
 * delivered; they are what TLS-RPT reports), probe failures for a domain without a policy (opportunistic TLS), an
 * invalid or unreachable TLS-RPT record. A domain that publishes no policy at all is not a problem.
 */
import type { Dispatcher } from 'undici';
import { resolveAddresses } from '../discovery/lookup.js';
import { fetchPolicy, policyUrl } from '../discovery/fetch-policy.js';
import { lookupMx, orderMxHosts } from '../discovery/mx.js';
import { queryDns, type DnsResolver, type MxRecord } from '../discovery/resolver.js';
import { normalizeDomainOrUndefined } from '../domain.js';
import { isMtaStsError, type TlsRptResultType } from '../errors.js';
import { findMatchingPattern } from '../mx/match.js';
import { selectStsTxtRecord } from '../policy/txt-record.js';
import type { PolicyMode } from '../policy/policy-file.js';
import { probeStartTls } from '../tls/starttls-probe.js';
import { mxTlsOptions } from '../tls/connect-options.js';
import { lookupTlsRptRecord } from '../tlsrpt/index.js';

/** The summary bucket of a domain. `broken`: at least one problem. `none`: no policy published, or mode `none`. */
export type CheckCategory = 'enforce' | 'testing' | 'none' | 'broken';

/** One finding. `code` is stable (for scripts); `message` is for people. */
export interface Finding {
  code: string;
  message: string;
  /** The RFC 8460 result type a sender would report for it, when there is one. */
  resultType?: TlsRptResultType;
}

export interface ErrorInfo {
  code: string;
  message: string;
  resultType?: TlsRptResultType;
}

export interface TxtTrace {
  /** `_mta-sts.<domain>` */
  name: string;
  /** Every TXT record at the name (character-strings concatenated), STS or not. */
  records: string[];
  /**
   * - `valid`: exactly one STS record, and it parses.
   * - `none`: no STS record (NXDOMAIN, NODATA, or only non-STS TXT records): the domain has no policy.
   * - `invalid` / `multiple`: §3.1 violations; the domain has no usable record.
   * - `dns-error`: the query failed temporarily.
   */
  verdict: 'valid' | 'none' | 'invalid' | 'multiple' | 'dns-error';
  id?: string;
  extensions?: Array<{ name: string; value: string }>;
  error?: ErrorInfo;
}

export interface PolicyTrace {
  url: string;
  /** False when the fetch was skipped (no valid TXT record: a sender does not fetch). */
  fetched: boolean;
  ok: boolean;
  httpStatus?: number;
  contentType?: string;
  bytes?: number;
  elapsedMs?: number;
  mode?: PolicyMode;
  maxAge?: number;
  mx?: string[];
  extensions?: Array<{ name: string; value: string }>;
  /** The policy text as served (only on success). */
  text?: string;
  error?: ErrorInfo;
}

export interface ProbeTrace {
  address: string;
  port: number;
  /** Did the server offer STARTTLS? */
  starttls: boolean;
  /** STARTTLS, TLS 1.2+ and a certificate valid for the MX name (RFC 8461 §4.2). */
  ok: boolean;
  tlsVersion?: string;
  /** RFC 8460 result type of the failure. */
  resultType?: TlsRptResultType;
  reason: string;
  elapsedMs: number;
}

export interface MxHostTrace {
  host: string;
  priority: number;
  /**
   * - `matched`: the host matches a pattern of the policy (`pattern`).
   * - `not-matched`: it matches none (refused under enforce, reported under testing).
   * - `not-applicable`: no policy with `mx` patterns applies.
   * - `invalid-name`: the MX target is not a valid host name.
   */
  match: 'matched' | 'not-matched' | 'not-applicable' | 'invalid-name';
  pattern?: string;
  /** Addresses the host resolves to (only looked up with `--probe`). */
  addresses?: string[];
  addressError?: string;
  probe?: ProbeTrace;
}

export interface MxTrace {
  /**
   * - `ok`: MX records found.
   * - `implicit`: no MX records; the domain itself is the MX (RFC 5321 §5.1).
   * - `null-mx`: the domain accepts no mail (RFC 7505).
   * - `nxdomain`: the domain does not exist.
   * - `dns-error`: the query failed temporarily.
   */
  verdict: 'ok' | 'implicit' | 'null-mx' | 'nxdomain' | 'dns-error';
  hosts: MxHostTrace[];
  error?: ErrorInfo;
}

export interface TlsRptTrace {
  /** `_smtp._tls.<domain>` */
  name: string;
  verdict: 'valid' | 'none' | 'invalid' | 'multiple' | 'dns-error';
  /** The record text. */
  record?: string;
  /** Report destinations (`mailto:` / `https:` URIs). */
  rua?: string[];
  /** `rua` URIs that were skipped, with the reason. */
  ignored?: Array<{ uri: string; reason: string }>;
  error?: ErrorInfo;
}

/** The result of checking one domain: the full decision trace plus the verdict. */
export interface CheckResult {
  /** The domain as given. */
  input: string;
  /** The normalised domain (A-labels, lower case), when valid. */
  domain?: string;
  category: CheckCategory;
  /** The mode a sender applies: the policy's, or `null` when there is no usable policy. */
  mode: PolicyMode | null;
  /** True when at least one finding is a problem (see the module doc). */
  problem: boolean;
  problems: Finding[];
  warnings: Finding[];
  txt?: TxtTrace;
  policy?: PolicyTrace;
  mx?: MxTrace;
  tlsrpt?: TlsRptTrace;
  /** Whether MX hosts were probed. */
  probed: boolean;
  elapsedMs: number;
}

/** What {@link checkDomain} needs. Everything network-facing is injected. */
export interface CheckContext {
  resolver: DnsResolver;
  /** undici dispatcher for the policy fetch (see `createPolicyAgent`). */
  dispatcher: Dispatcher;
  /** Trust roots for MX TLS (undefined: Node's bundled roots). */
  trustRoots: (string | Buffer)[] | undefined;
  /** Deadline of each network step (one DNS query, the policy fetch, one probe), ms. */
  timeoutMs: number;
  /** FOR TESTS: the policy host's HTTPS port (the RFC fixes 443). */
  policyPort?: number;
  /** Connect to each MX host, STARTTLS and validate the certificate. */
  probe: boolean;
  /** SMTP port for probes. Default 25 (FOR TESTS: another port). */
  smtpPort?: number;
  /** Largest policy accepted, bytes. Default 65536. */
  maxPolicyBytes?: number;
  /** Most MX hosts considered. Default 16 (as the engine). */
  maxMxHosts?: number;
  /** Name announced in EHLO by probes. */
  ehloName?: string;
}

function errorInfo(error: unknown): ErrorInfo {
  if (isMtaStsError(error)) return { code: error.code, message: error.message, ...(error.resultType ? { resultType: error.resultType } : {}) };
  const e = error as { code?: unknown; message?: unknown; resultType?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : 'ERROR';
  const message = typeof e?.message === 'string' ? e.message : String(error);
  return { code, message, ...(typeof e?.resultType === 'string' ? { resultType: e.resultType as TlsRptResultType } : {}) };
}

/** Checks one domain. Never throws: every failure is in the result. */
export async function checkDomain(input: string, ctx: CheckContext): Promise<CheckResult> {
  const started = performance.now();
  const problems: Finding[] = [];
  const warnings: Finding[] = [];
  const domain = normalizeDomainOrUndefined(input);
  const finish = (partial: Omit<CheckResult, 'input' | 'category' | 'problem' | 'problems' | 'warnings' | 'elapsedMs' | 'probed'>): CheckResult => {
    const problem = problems.length > 0;
    const category: CheckCategory = problem ? 'broken' : partial.mode === 'enforce' || partial.mode === 'testing' ? partial.mode : 'none';
    const { mode, ...traces } = partial;
    // Verdict first, then the trace in the order a sender follows it.
    return { input, ...(partial.domain !== undefined ? { domain: partial.domain } : {}), category, mode, problem, problems, warnings, ...traces, probed: ctx.probe, elapsedMs: Math.round(performance.now() - started) };
  };
  if (domain === undefined) {
    problems.push({ code: 'invalid-domain', message: `not a valid domain name: ${JSON.stringify(input.slice(0, 100))}` });
    return finish({ mode: null });
  }

  // The sender's first steps run concurrently: the policy TXT record, the MX records, the TLS-RPT record.
  const [txt, mxAnswer, tlsrpt] = await Promise.all([checkTxt(domain, ctx), lookupMxTrace(domain, ctx), checkTlsRpt(domain, ctx)]);

  if (txt.verdict === 'invalid' || txt.verdict === 'multiple') {
    problems.push({ code: txt.verdict === 'multiple' ? 'txt-multiple' : 'txt-invalid', message: `${txt.name}: ${txt.error?.message ?? 'invalid record'}; senders ignore it`, resultType: 'sts-policy-invalid' });
  } else if (txt.verdict === 'dns-error') {
    problems.push({ code: 'txt-dns-error', message: `${txt.name}: ${txt.error?.message ?? 'DNS failure'}`, resultType: 'sts-policy-fetch-error' });
  }

  // §3.3: the policy is fetched only when a valid TXT record announces one.
  const url = policyUrl(domain, ctx.policyPort);
  let policy: PolicyTrace;
  if (txt.verdict === 'valid') {
    policy = await fetchPolicyTrace(domain, url, ctx);
    if (!policy.ok) {
      const invalid = policy.error?.resultType === 'sts-policy-invalid';
      problems.push({
        code: invalid ? 'policy-invalid' : policy.error?.code === 'MTASTS_WEBPKI_INVALID' ? 'policy-webpki-invalid' : 'policy-fetch-failed',
        message: `policy ${invalid ? 'is invalid' : 'could not be fetched'}: ${policy.error?.message ?? 'unknown error'}`,
        ...(policy.error?.resultType ? { resultType: policy.error.resultType } : {}),
      });
    }
  } else {
    policy = { url, fetched: false, ok: false };
  }
  const mode: PolicyMode | null = policy.ok && policy.mode ? policy.mode : null;
  const patterns = mode === 'enforce' || mode === 'testing' ? (policy.mx ?? []) : undefined;

  const mx: MxTrace = { verdict: mxAnswer.verdict, hosts: [], ...(mxAnswer.error ? { error: mxAnswer.error } : {}) };
  if (mxAnswer.verdict === 'dns-error') problems.push({ code: 'mx-dns-error', message: `MX lookup failed: ${mxAnswer.error?.message ?? 'DNS failure'}` });
  if (mxAnswer.verdict === 'nxdomain') problems.push({ code: 'domain-not-found', message: `${domain} does not exist (NXDOMAIN)` });
  const maxMx = ctx.maxMxHosts ?? 16;
  for (const { host, priority, invalid } of orderMxHosts(mxAnswer.records, maxMx)) {
    if (invalid) {
      mx.hosts.push({ host, priority, match: 'invalid-name' });
      continue;
    }
    const entry: MxHostTrace = { host, priority, match: 'not-applicable' };
    if (patterns) {
      const pattern = findMatchingPattern(host, patterns);
      entry.match = pattern === undefined ? 'not-matched' : 'matched';
      if (pattern !== undefined) entry.pattern = pattern;
    }
    mx.hosts.push(entry);
  }
  for (const entry of mx.hosts) {
    if (entry.match === 'invalid-name') {
      (mode === 'enforce' ? problems : warnings).push({ code: 'mx-invalid-name', message: `MX target ${JSON.stringify(entry.host)} is not a valid host name` });
    } else if (entry.match === 'not-matched') {
      if (mode === 'enforce') problems.push({ code: 'mx-not-matching', message: `MX ${entry.host} matches no mx pattern of the enforce policy: senders refuse to deliver to it (RFC 8461 §4.1)`, resultType: 'validation-failure' });
      else warnings.push({ code: 'mx-not-matching', message: `MX ${entry.host} matches no mx pattern of the testing policy: it would be refused under enforce, and is reported (RFC 8461 §4.1)`, resultType: 'validation-failure' });
    }
  }
  if (mode === 'enforce' && mx.hosts.length > 0 && mx.hosts.every((h) => h.match !== 'matched')) {
    problems.push({ code: 'mx-none-allowed', message: 'no MX host matches the enforce policy: senders defer all mail to this domain (RFC 8461 §5.1)' });
  }

  if (ctx.probe) {
    await Promise.all(mx.hosts.filter((h) => h.match !== 'invalid-name').map((h) => probeHost(h, ctx)));
    for (const entry of mx.hosts) {
      const failed = entry.addressError !== undefined || (entry.probe !== undefined && !entry.probe.ok);
      if (!failed) continue;
      const message = entry.addressError !== undefined ? `MX ${entry.host}: ${entry.addressError}` : `MX ${entry.host} (${entry.probe!.address}): ${entry.probe!.reason}`;
      const finding: Finding = { code: 'probe-failed', message, ...(entry.probe?.resultType ? { resultType: entry.probe.resultType } : {}) };
      // Under enforce a failed probe means the sender refuses this host; otherwise it still delivers.
      (mode === 'enforce' ? problems : warnings).push(finding);
    }
  }

  if (tlsrpt.verdict === 'invalid' || tlsrpt.verdict === 'multiple') warnings.push({ code: `tlsrpt-${tlsrpt.verdict}`, message: `${tlsrpt.name}: ${tlsrpt.error?.message ?? 'invalid record'}; senders do not report` });
  else if (tlsrpt.verdict === 'dns-error') warnings.push({ code: 'tlsrpt-dns-error', message: `${tlsrpt.name}: ${tlsrpt.error?.message ?? 'DNS failure'}` });

  return finish({ domain, mode, txt, policy, mx, tlsrpt });
}

async function checkTxt(domain: string, ctx: CheckContext): Promise<TxtTrace> {
  const name = `_mta-sts.${domain}`;
  const answer = await queryDns(() => ctx.resolver.resolveTxt(name), { name, type: 'TXT', domain }, ctx.timeoutMs);
  if (answer.kind === 'error') return { name, records: [], verdict: 'dns-error', error: errorInfo(answer.error) };
  if (answer.kind === 'not-found') return { name, records: [], verdict: 'none' };
  const records = answer.value.map((r) => r.join(''));
  try {
    const record = selectStsTxtRecord(answer.value);
    if (record === undefined) return { name, records, verdict: 'none' };
    return { name, records, verdict: 'valid', id: record.id, extensions: record.extensions };
  } catch (error) {
    const info = errorInfo(error);
    return { name, records, verdict: info.code === 'MTASTS_TXT_MULTIPLE' ? 'multiple' : 'invalid', error: info };
  }
}

async function lookupMxTrace(domain: string, ctx: CheckContext): Promise<{ verdict: MxTrace['verdict']; records: MxRecord[]; error?: ErrorInfo }> {
  const answer = await lookupMx(ctx.resolver, domain, ctx.timeoutMs);
  if (answer.kind === 'error') return { verdict: 'dns-error', records: [], error: errorInfo(answer.error) };
  return { verdict: answer.kind, records: answer.kind === 'ok' || answer.kind === 'implicit' ? answer.records : [] };
}

async function fetchPolicyTrace(domain: string, url: string, ctx: CheckContext): Promise<PolicyTrace> {
  const started = performance.now();
  try {
    const fetched = await fetchPolicy(domain, {
      dispatcher: ctx.dispatcher,
      timeoutMs: ctx.timeoutMs,
      maxBytes: ctx.maxPolicyBytes ?? 65_536,
      requireTextPlain: true,
      ...(ctx.policyPort !== undefined ? { port: ctx.policyPort } : {}),
    });
    const p = fetched.policy;
    return {
      url: fetched.url,
      fetched: true,
      ok: true,
      httpStatus: fetched.status,
      ...(fetched.contentType !== undefined ? { contentType: fetched.contentType } : {}),
      bytes: fetched.bytes,
      elapsedMs: fetched.elapsedMs,
      mode: p.mode,
      maxAge: p.maxAge,
      mx: p.mx,
      extensions: p.extensions,
      text: fetched.text,
    };
  } catch (error) {
    const details = isMtaStsError(error) ? error.details : {};
    const status = typeof details.status === 'number' ? details.status : undefined;
    const contentType = typeof details.contentType === 'string' ? details.contentType : undefined;
    const bytes = typeof details.bytes === 'number' ? details.bytes : undefined;
    return {
      url,
      fetched: true,
      ok: false,
      ...(status !== undefined ? { httpStatus: status } : {}),
      ...(contentType !== undefined ? { contentType } : {}),
      ...(bytes !== undefined ? { bytes } : {}),
      elapsedMs: Math.round(performance.now() - started),
      error: errorInfo(error),
    };
  }
}

async function checkTlsRpt(domain: string, ctx: CheckContext): Promise<TlsRptTrace> {
  const name = `_smtp._tls.${domain}`;
  try {
    const record = await lookupTlsRptRecord(domain, { resolver: ctx.resolver, timeoutMs: ctx.timeoutMs });
    if (record === undefined) return { name, verdict: 'none' };
    return { name, verdict: 'valid', record: record.raw, rua: record.rua.map((d) => d.uri).filter((u, i, all) => all.indexOf(u) === i), ...(record.ignored.length > 0 ? { ignored: record.ignored } : {}) };
  } catch (error) {
    const info = errorInfo(error);
    const verdict: TlsRptTrace['verdict'] = info.code === 'TLSRPT_RECORD_MULTIPLE' ? 'multiple' : info.code === 'TLSRPT_RECORD_INVALID' ? 'invalid' : 'dns-error';
    return { name, verdict, error: info };
  }
}

async function probeHost(entry: MxHostTrace, ctx: CheckContext): Promise<void> {
  let addresses: string[];
  try {
    addresses = (await resolveAddresses(ctx.resolver, entry.host, ctx.timeoutMs)).map((a) => a.address);
  } catch (error) {
    entry.addressError = `no address: ${(error as Error).message}`;
    return;
  }
  entry.addresses = addresses;
  const address = addresses[0]!;
  const port = ctx.smtpPort ?? 25;
  const result = await probeStartTls(entry.host, {
    address,
    port,
    // Strict (enforce) options: the handshake itself fails for a certificate that does not validate (§4.2).
    tls: mxTlsOptions(entry.host, ctx.trustRoots, true),
    timeoutMs: ctx.timeoutMs,
    ...(ctx.ehloName ? { ehloName: ctx.ehloName } : {}),
  });
  const ok = result.verification.ok && result.error === undefined;
  const resultType = result.verification.resultType ?? result.resultType;
  entry.probe = {
    address,
    port,
    starttls: result.starttlsOffered,
    ok,
    ...(result.protocol ? { tlsVersion: result.protocol } : {}),
    ...(!ok && resultType ? { resultType } : {}),
    reason: result.error !== undefined && !result.verification.reason ? result.error : result.verification.reason,
    elapsedMs: result.elapsedMs,
  };
}
