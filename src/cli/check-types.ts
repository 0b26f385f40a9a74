/**
 * The data `mta-sts check` produces for one domain: the decision trace a sending MTA follows (RFC 8461 §3–§5,
 * RFC 8460 §3) and the verdict. Printed as is by `--json`; `format.ts` renders it for people.
 */
import type { TlsRptResultType } from '../errors.js';
import type { PolicyMode } from '../policy/policy-file.js';

/**
 * The summary bucket of a domain:
 * - `broken`: at least one problem (see `check.ts`);
 * - `would-fail`: a `testing` policy under which something would fail if the domain switched to `enforce`;
 * - `enforce` / `testing`: the policy's mode, nothing wrong found;
 * - `none`: no policy published, or mode `none`.
 */
export type CheckCategory = 'enforce' | 'testing' | 'would-fail' | 'none' | 'broken';

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
   * - `invalid` / `multiple`: RFC 8461 §3.1 violations; the domain has no usable record.
   * - `dns-error`: the query failed temporarily.
   */
  verdict: 'valid' | 'none' | 'invalid' | 'multiple' | 'dns-error';
  id?: string;
  extensions?: Array<{ name: string; value: string }>;
  error?: ErrorInfo;
}

export interface PolicyTrace {
  url: string;
  /** False when no fetch was made (no valid TXT record: a sender does not fetch; or a cached policy applied). */
  fetched: boolean;
  /** The policy came from the engine's cache, not from a fetch in this run. */
  fromCache?: boolean;
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

/** The certificate an MX host presented to a probe, whether or not it validated (see `check-probe.ts`). */
export interface CertificateTrace {
  subject: string;
  issuer: string;
  /** ISO 8601. */
  notAfter: string;
  /** Whole days until `notAfter` (negative once expired). */
  daysLeft: number;
  /** subjectAltName DNS names. */
  san: string[];
  /** SHA-256 fingerprint, colon-separated hex. */
  fingerprint256?: string;
}

export interface ProbeTrace {
  address: string;
  port: number;
  /** Did the server offer STARTTLS? */
  starttls: boolean;
  /** STARTTLS, TLS 1.2+ and a certificate valid for the MX name (RFC 8461 §4.2). */
  ok: boolean;
  tlsVersion?: string;
  /** The negotiated cipher suite (IETF name when known), when the handshake completed. */
  cipher?: string;
  certificate?: CertificateTrace;
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
  /** Where the input came from, for list entries: `<file>:<line>`. */
  source?: string;
  /** The normalised domain (A-labels, lower case), when valid. */
  domain?: string;
  category: CheckCategory;
  /** The mode a sender applies: the policy's, or `null` when there is no usable policy. */
  mode: PolicyMode | null;
  /** True when the domain counts toward exit code 1: a problem, or (with `--testing-as-enforce`) a would-fail. */
  problem: boolean;
  problems: Finding[];
  /** Under a `testing` policy: what would make senders refuse or defer mail if the policy were `enforce`. */
  wouldFailUnderEnforce: Finding[];
  warnings: Finding[];
  txt?: TxtTrace;
  policy?: PolicyTrace;
  mx?: MxTrace;
  tlsrpt?: TlsRptTrace;
  /** Whether MX hosts were probed. */
  probed: boolean;
  elapsedMs: number;
}
