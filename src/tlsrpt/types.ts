/**
 * The shapes shared by the TLS reporting modules and by the rest of the library.
 *
 * SMTP TLS Reporting (RFC 8460) has a sending MTA count, per policy domain and per UTC day, how many SMTP sessions
 * negotiated TLS as the domain's policy (MTA-STS, DANE or none) required, and which ones failed and why. The rest
 * of the library describes each finished session as a {@link SessionOutcome} and hands it to a
 * {@link TlsRptRecorder}; the recorder aggregates counts (never message content or addresses), and once the day
 * is over a report in the RFC 8460 §4.4 JSON format is sent to the addresses the domain publishes in its
 * `_smtp._tls` TXT record (§3), by mail (§5.3) or HTTPS POST (§5.4).
 */
import type { TlsRptResultType } from '../errors.js';
import type { Logger } from '../logger.js';

export type { TlsRptResultType } from '../errors.js';

/** RFC 8460 §4.4 `policy-type`. */
export type TlsRptPolicyType = 'sts' | 'tlsa' | 'no-policy-found';

/** The policy that applied to a session (RFC 8460 §4.4 `policy` object). */
export interface TlsRptPolicyRef {
  type: TlsRptPolicyType;
  /** The policy domain (the recipient domain whose policy applied). Reports are sent to this domain. */
  domain: string;
  /** The policy text, one array element per line (for `sts`), or the TLSA records (for `tlsa`). */
  policyString?: string[];
  /** The policy's `mx` patterns (for `sts`). */
  mxHost?: string[];
}

/** Why a session failed (RFC 8460 §4.4 `failure-details` entry, without the count). */
export interface TlsRptFailure {
  /** RFC 8460 §4.3 result type. */
  resultType: TlsRptResultType;
  /** IP address of the sending MTA. */
  sendingMtaIp?: string;
  /** Host name of the MX the session was attempted with. */
  receivingMxHostname?: string;
  /** The EHLO/HELO banner name the receiving MX announced. */
  receivingMxHelo?: string;
  /** Destination IP address of the session. */
  receivingIp?: string;
  /** A URI with additional information about the failure (RFC 8460 §4.4 `additional-information`). */
  additionalInformation?: string;
  /** A TLS error code or message (RFC 8460 §4.4 `failure-reason-code`). */
  failureReasonCode?: string;
}

/** One finished SMTP session (or one policy failure that prevented a session), as the library reports it. */
export interface SessionOutcome {
  policy: TlsRptPolicyRef;
  /** When the session happened, ms since the epoch. Default: the recorder's clock. Decides the UTC day. */
  at?: number;
  /** True when TLS was negotiated as the policy required. */
  success: boolean;
  /** Why it failed. Ignored when `success` is true; a failed outcome without it counts as `validation-failure`. */
  failure?: TlsRptFailure;
  /**
   * True for the session that delivered a TLS report itself. Such sessions are never counted (RFC 8460 §5.3:
   * report sessions SHOULD NOT be included in the next report). Outcomes recorded while a report is being
   * delivered by this module are excluded automatically (see `runAsReportDelivery`), so integrations only need
   * this flag when they deliver reports through some other path.
   */
  reportDelivery?: boolean;
}

/**
 * Where the library feeds session outcomes. `record` never throws and never blocks. The integrations guard against
 * custom recorders that do: a throw or a rejected promise (e.g. `async` with a database outage) drops the outcome,
 * logged once per burst, and never affects delivery.
 */
export interface TlsRptRecorder {
  record(outcome: SessionOutcome): void;
}

/** One aggregated failure detail: a {@link TlsRptFailure} and how many sessions had exactly it. */
export interface AggregatedFailure extends TlsRptFailure {
  count: number;
}

/** Everything counted for one policy of one policy domain over a report period. */
export interface AggregatedPolicy {
  policy: TlsRptPolicyRef;
  /** RFC 8460 §4.2.1 `total-successful-session-count`. */
  successCount: number;
  /** RFC 8460 §4.2.2 `total-failure-session-count`. */
  failureCount: number;
  failures: AggregatedFailure[];
}

/** RFC 8460 §4.4 `failure-details` entry. */
export interface TlsRptReportFailureDetail {
  'result-type': TlsRptResultType;
  'sending-mta-ip'?: string;
  'receiving-mx-hostname'?: string;
  'receiving-mx-helo'?: string;
  'receiving-ip'?: string;
  'failed-session-count': number;
  'additional-information'?: string;
  'failure-reason-code'?: string;
}

/** RFC 8460 §4.4 `policies` entry. */
export interface TlsRptReportPolicy {
  policy: {
    'policy-type': TlsRptPolicyType;
    'policy-string'?: string[];
    'policy-domain': string;
    'mx-host'?: string[];
  };
  summary: {
    'total-successful-session-count': number;
    'total-failure-session-count': number;
  };
  'failure-details'?: TlsRptReportFailureDetail[];
}

/** The RFC 8460 §4.4 aggregate report, exactly as serialised to JSON. */
export interface TlsRptReport {
  'organization-name': string;
  'date-range': {
    'start-datetime': string;
    'end-datetime': string;
  };
  'contact-info': string;
  'report-id': string;
  policies: TlsRptReportPolicy[];
}

/** The library's logging seam (`console`, pino and winston adapters fit; every method is optional). */
export type TlsRptLogger = Logger;
