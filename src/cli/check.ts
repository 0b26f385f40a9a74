/**
 * `mta-sts check`: the decision trace a sending MTA follows for one recipient domain (RFC 8461 §3–§5, RFC 8460 §3),
 * as plain data (types in `check-types.ts`). No printing and no process access here.
 *
 * The trace is the library's own: discovery and caching by `createMtaSts().getPolicy()`, MX lookup and matching by
 * `plan()`, MX TLS options by `tlsOptions()`, the TLS-RPT record by `lookupTlsRptRecord()`. The CLI only observes
 * (the engine's discovery trace: `getPolicy(domain, { trace })`) and judges (`check-rules.ts`).
 *
 * What counts as a **problem** (exit code 1) — something that makes a sender defer, refuse or ignore the policy:
 * - the domain name is invalid, or the domain does not exist (NXDOMAIN);
 * - a DNS query (TXT `_mta-sts`, MX) fails temporarily (SERVFAIL, timeout): the sender cannot decide;
 * - the `_mta-sts` TXT record is invalid, or there is more than one STS record (RFC 8461 §3.1);
 * - a valid TXT record exists but the policy cannot be fetched or does not parse (RFC 8461 §3.3);
 * - under an `enforce` policy: an MX host that matches none of the policy's `mx` patterns (RFC 8461 §4.1), and with
 *   `--probe` an MX host that does not offer STARTTLS, negotiates less than TLS 1.2, presents a certificate that
 *   does not validate for its name (RFC 8461 §4.2), or cannot be reached.
 *
 * The same MX and probe findings under a `testing` policy are **would fail under enforce** (mail is still
 * delivered; they are what TLS-RPT reports): their own category, counted as problems only with
 * `testingAsEnforce`. **Warnings** never change the exit code.
 */
import type { DiscoveryTraceStep, FetchTraceStep, MtaSts, TxtTraceStep } from '../engine.js';
import { MtaStsError } from '../errors.js';
import { policyUrl } from '../discovery/fetch-policy.js';
import { normalizeDomainOrUndefined } from '../domain.js';
import type { DeliveryPlan } from '../plan/plan.js';
import { parsePolicy, type PolicyMode } from '../policy/policy-file.js';
import { selectStsTxtRecord } from '../policy/txt-record.js';
import { lookupTlsRptRecord } from '../tlsrpt/index.js';
import type { PolicyLookup } from '../types.js';
import { probeHost, type ProbeSetup } from './check-probe.js';
import { judge } from './check-rules.js';
import type { CheckCategory, CheckResult, ErrorInfo, MxTrace, PolicyTrace, TlsRptTrace, TxtTrace } from './check-types.js';
import { quoted } from './printable.js';

export type * from './check-types.js';

/** What {@link checkDomain} needs. Everything network-facing is the engine's. */
export interface CheckContext extends ProbeSetup {
  engine: MtaSts;
  /** Deadline of each network step (one DNS query, the policy fetch, one probe), ms. */
  timeoutMs: number;
  /** FOR TESTS: the HTTPS port of policy hosts (the RFC fixes 443); only shown in the policy URL. */
  httpsPort?: number;
  /** Connect to each MX host, STARTTLS and validate the certificate. */
  probe: boolean;
  /** Count "would fail under enforce" (testing policies) as problems. */
  testingAsEnforce?: boolean;
}

export function errorInfo(error: unknown): ErrorInfo {
  if (error instanceof MtaStsError) return { code: error.code, message: error.message, ...(error.resultType ? { resultType: error.resultType } : {}) };
  const e = error as { code?: unknown; message?: unknown; resultType?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : 'ERROR';
  const message = typeof e?.message === 'string' ? e.message : String(error);
  return { code, message, ...(typeof e?.resultType === 'string' ? { resultType: e.resultType as ErrorInfo['resultType'] } : {}) };
}

/** Why `input` is not a domain name, with a suggestion when one is obvious (an e-mail address, a URL). */
export function invalidDomainMessage(input: string): string {
  const shown = quoted(input.length > 100 ? `${input.slice(0, 100)}…` : input);
  const at = input.lastIndexOf('@');
  if (at > 0 && !/\s/.test(input)) {
    const domain = normalizeDomainOrUndefined(input.slice(at + 1));
    if (domain !== undefined) return `${shown} is an e-mail address, not a domain name; did you mean ${domain}?`;
  }
  const url = /^[a-z][a-z0-9+.-]*:\/\/([^/:?#\s]+)/i.exec(input);
  if (url) {
    const domain = normalizeDomainOrUndefined(url[1]);
    if (domain !== undefined) return `${shown} is a URL, not a domain name; did you mean ${domain}?`;
  }
  if (/\s/.test(input.trim())) return `${shown} is not a domain name: one domain per line, without spaces`;
  return `not a valid domain name: ${shown}`;
}

/** Checks one domain. Never throws: every failure is in the result. */
export async function checkDomain(input: string, ctx: CheckContext, source?: string): Promise<CheckResult> {
  const started = performance.now();
  const domain = normalizeDomainOrUndefined(input);
  const base = { input, ...(source !== undefined ? { source } : {}) };
  if (domain === undefined) {
    const problems = [{ code: 'invalid-domain', message: invalidDomainMessage(input) }];
    return { ...base, category: 'broken', mode: null, problem: true, problems, wouldFailUnderEnforce: [], warnings: [], probed: ctx.probe, elapsedMs: Math.round(performance.now() - started) };
  }

  // A sender's first steps, concurrently: policy discovery, MX lookup and planning (sharing the same discovery),
  // and the TLS-RPT record.
  // The engine reports its discovery steps (TXT answer, fetch, cache decision); plan() joins the same discovery.
  const steps: DiscoveryTraceStep[] = [];
  const [lookup, planned, tlsrpt] = await Promise.all([
    ctx.engine.getPolicy(domain, { trace: (step) => steps.push(step) }),
    ctx.engine.plan(domain).then(
      (plan): { plan: DeliveryPlan } | { error: unknown } => ({ plan }),
      (error: unknown) => ({ error }),
    ),
    checkTlsRpt(domain, ctx),
  ]);
  const txtStep = steps.find((st): st is TxtTraceStep => st.step === 'txt');
  const fetchStep = steps.find((st): st is FetchTraceStep => st.step === 'fetch');
  const txt = txtTrace(domain, lookup, txtStep);
  const policy = policyTrace(domain, lookup, fetchStep, ctx.httpsPort);
  const mode: PolicyMode | null = lookup.status === 'policy' && lookup.policy ? lookup.policy.mode : null;
  const mx = mxTrace(planned);
  if (ctx.probe) await Promise.all(mx.hosts.filter((h) => h.match !== 'invalid-name').map((h) => probeHost(h, ctx.engine, ctx)));

  const findings = judge({ domain, mode, txt, policy, mx, tlsrpt, plan: 'plan' in planned ? planned.plan : undefined, probed: ctx.probe });
  const problem = findings.problems.length > 0 || (ctx.testingAsEnforce === true && findings.wouldFailUnderEnforce.length > 0);
  const category: CheckCategory =
    findings.problems.length > 0 ? 'broken' : findings.wouldFailUnderEnforce.length > 0 ? 'would-fail' : mode === 'enforce' || mode === 'testing' ? mode : 'none';
  return { ...base, domain, category, mode, problem, ...findings, txt, policy, mx, tlsrpt, probed: ctx.probe, elapsedMs: Math.round(performance.now() - started) };
}

/** The TXT step, from the engine's verdict and the records it reported seeing. */
function txtTrace(domain: string, lookup: PolicyLookup, step: TxtTraceStep | undefined): TxtTrace {
  const name = `_mta-sts.${domain}`;
  const records = step?.records ?? [];
  const code = lookup.error?.code;
  // The engine sets `txtId` once it has a valid record; failures after that are the policy fetch's.
  if (lookup.txtId !== undefined) {
    let extensions: TxtTrace['extensions'];
    try {
      extensions = selectStsTxtRecord(records.map((r) => [r]))?.extensions;
    } catch {
      // The engine accepted the record; extensions are only shown.
    }
    return { name, records, verdict: 'valid', id: lookup.txtId, ...(extensions && extensions.length > 0 ? { extensions } : {}) };
  }
  if (lookup.status === 'temp-error') return { name, records, verdict: 'dns-error', ...(lookup.error ? { error: errorInfo(lookup.error) } : {}) };
  if (lookup.status === 'invalid' && lookup.error) return { name, records, verdict: code === 'MTASTS_TXT_MULTIPLE' ? 'multiple' : 'invalid', error: errorInfo(lookup.error) };
  return { name, records, verdict: 'none' };
}

/** The policy step: the engine's fetch as it reported it (URL, HTTP status, content type, bytes, time, error). */
function policyTrace(domain: string, lookup: PolicyLookup, step: FetchTraceStep | undefined, httpsPort: number | undefined): PolicyTrace {
  const url = step?.url || policyUrl(domain, httpsPort);
  if (lookup.txtId === undefined) return { url, fetched: false, ok: false };
  const facts = {
    ...(step?.status !== undefined ? { httpStatus: step.status } : {}),
    ...(step?.contentType !== undefined ? { contentType: step.contentType } : {}),
    ...(step?.bytes !== undefined ? { bytes: step.bytes } : {}),
    ...(step ? { elapsedMs: step.elapsedMs } : {}),
  };
  const policy = lookup.status === 'policy' ? lookup.policy : undefined;
  if (policy) {
    let extensions: PolicyTrace['extensions'] = [];
    try {
      extensions = parsePolicy(policy.text).extensions;
    } catch {
      // The engine parsed it; extensions are only shown.
    }
    // No fetch step: the engine used a cached policy (nothing was fetched in this run).
    return { url, fetched: step !== undefined, ok: true, ...facts, ...(step ? {} : { fromCache: true }), mode: policy.mode, maxAge: policy.maxAge, mx: [...policy.mx], extensions, text: policy.text };
  }
  return { url, fetched: step !== undefined, ok: false, ...facts, ...(lookup.error ? { error: errorInfo(lookup.error) } : {}) };
}

/** The MX step, from the engine's plan (or the MX lookup failure that stopped it). */
function mxTrace(planned: { plan: DeliveryPlan } | { error: unknown }): MxTrace {
  if ('error' in planned) return { verdict: 'dns-error', hosts: [], error: errorInfo(planned.error) };
  const plan = planned.plan;
  const verdict: MxTrace['verdict'] = plan.nullMx ? 'null-mx' : plan.implicitMx ? 'implicit' : plan.candidates.length === 0 && plan.noCandidate?.action === 'bounce' ? 'nxdomain' : 'ok';
  const hosts = plan.candidates.map((c) => ({
    host: c.host,
    priority: c.priority,
    match: c.invalid ? ('invalid-name' as const) : c.matched === undefined ? ('not-applicable' as const) : c.matched ? ('matched' as const) : ('not-matched' as const),
    ...(c.pattern !== undefined ? { pattern: c.pattern } : {}),
  }));
  return { verdict, hosts };
}

async function checkTlsRpt(domain: string, ctx: CheckContext): Promise<TlsRptTrace> {
  const name = `_smtp._tls.${domain}`;
  try {
    const record = await lookupTlsRptRecord(domain, { resolver: ctx.engine.resolver, timeoutMs: ctx.timeoutMs });
    if (record === undefined) return { name, verdict: 'none' };
    return { name, verdict: 'valid', record: record.raw, rua: record.rua.map((d) => d.uri).filter((u, i, all) => all.indexOf(u) === i), ...(record.ignored.length > 0 ? { ignored: record.ignored } : {}) };
  } catch (error) {
    const info = errorInfo(error);
    const verdict: TlsRptTrace['verdict'] = info.code === 'TLSRPT_RECORD_MULTIPLE' ? 'multiple' : info.code === 'TLSRPT_RECORD_INVALID' ? 'invalid' : 'dns-error';
    return { name, verdict, error: info };
  }
}
