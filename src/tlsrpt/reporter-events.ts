/**
 * The events of the TLS reporter (RFC 8460 §4.1 scheduling, §5 delivery, §5.5 retries), what one `flush()` did, the
 * preview of pending reports, and the reporter's interface. Types only: the reporter is in `scheduler.ts`.
 */
import type { DroppedOutcomeReason, TlsRptAggregator } from './recorder.js';
import type { TlsRptRefusalReason } from './destination-policy.js';
import type { TlsRptError } from './errors.js';
import type { DeliveryState } from './store.js';
import type { TlsRptReport } from './types.js';

/** A destination that failed, and why. */
export interface TlsRptDestinationFailure {
  uri: string;
  error: TlsRptError;
}

/** A report was accepted by at least one destination. */
export interface TlsRptSentEvent {
  type: 'sent';
  day: string;
  policyDomain: string;
  reportId: string;
  report: TlsRptReport;
  /** The attempt that succeeded (1 = first). */
  attempt: number;
  /** URIs that accepted the report. */
  delivered: string[];
  /** URIs that did not (the report still counts as delivered, §3). */
  failures: TlsRptDestinationFailure[];
}

/** Every destination failed; another attempt is scheduled. */
export interface TlsRptFailedEvent {
  type: 'failed';
  day: string;
  policyDomain: string;
  reportId: string;
  attempt: number;
  nextAttemptAt: number;
  /**
   * False for a forced attempt (`flush()`) made before the report's next scheduled attempt: it does not count
   * toward `retry.attempts` and leaves the schedule unchanged.
   */
  counted: boolean;
  error: TlsRptError;
  failures: TlsRptDestinationFailure[];
}

/**
 * The report was not attempted because of a configuration or usage error (an unusable `mailTransport`, ...): no
 * delivery state changed, nothing counts as an attempt; fix the configuration.
 */
export interface TlsRptNotAttemptedEvent {
  type: 'not-attempted';
  day: string;
  policyDomain: string;
  reportId: string;
  error: TlsRptError;
  failures: TlsRptDestinationFailure[];
}

/** Something the operator should know. */
export interface TlsRptWarningEvent {
  type: 'warning';
  /**
   * - `TLSRPT_UNSIGNED_MAIL`: report mail is configured without DKIM (RFC 8460 §5.3); emitted once, at creation;
   * - `TLSRPT_FIELD_INVALID`: a failure field of a recorded outcome had not its RFC 8460 §4.4 syntax (`field`) and
   *   was left out (the session still counts); once per UTC day and field;
   * - `TLSRPT_STORE_EVICTION`: the store may lose counts (a Redis whose `maxmemory-policy` is not `noeviction`, or
   *   whose policy could not be read); once, when the store starts.
   */
  code: 'TLSRPT_UNSIGNED_MAIL' | 'TLSRPT_FIELD_INVALID' | 'TLSRPT_STORE_EVICTION';
  message: string;
  /** `TLSRPT_FIELD_INVALID`: the field left out (`sendingMtaIp`, `receivingIp`, `receivingMxHostname`, ...). */
  field?: string;
  /** `TLSRPT_FIELD_INVALID`: the UTC day and policy domain of the first outcome concerned. */
  day?: string;
  policyDomain?: string;
}

/** The report was given up. */
export interface TlsRptDroppedEvent {
  type: 'dropped';
  day: string;
  policyDomain: string;
  reportId: string;
  reason: 'retries-exhausted' | 'too-large';
  attempts: number;
  error: TlsRptError;
}

/**
 * The policy domain has no usable TLSRPT record (none, several, invalid, or every destination refused:
 * `TLSRPT_DESTINATION_REFUSED`): nothing is sent (§3).
 */
export interface TlsRptSkippedNoRecordEvent {
  type: 'skipped-no-record';
  day: string;
  policyDomain: string;
  /** Why the record is unusable, when there is one (`TLSRPT_RECORD_MULTIPLE`, `TLSRPT_RECORD_INVALID`, `TLSRPT_DESTINATION_REFUSED`). */
  error?: TlsRptError;
}

/** The record only has destinations this reporter cannot use (`mailto:` without a mail transport). */
export interface TlsRptSkippedNoTransportEvent {
  type: 'skipped-no-transport';
  day: string;
  policyDomain: string;
  uris: string[];
  /** True when the report stayed in the store (`keepUndeliverable`); otherwise it was removed. */
  kept?: boolean;
}

/**
 * A destination of the record that this report was not sent to because it points inside the sender's network or
 * at a name that is not public (see `allowInternalDestinations`); the report still goes to the others.
 */
export interface TlsRptDestinationRefusedEvent {
  type: 'destination-refused';
  day: string;
  policyDomain: string;
  reportId: string;
  /** `mailto:<address>` or the `https:` URI as published. */
  destination: string;
  /** `internal-address` (an IP literal, or found at connect time), `userinfo`, or `non-public-name`. */
  reason: TlsRptRefusalReason;
  /** `TLSRPT_DESTINATION_REFUSED`, with `details.reason`. */
  error: TlsRptError;
}

/** The record named more distinct destinations than `maxDestinationsPerReport`: the rest were left out. */
export interface TlsRptDestinationsLimitedEvent {
  type: 'destinations-limited';
  day: string;
  policyDomain: string;
  reportId: string;
  /** Destinations in the record (a `mailto:` list counted per address). */
  published: number;
  /** Duplicates among them (removed). */
  duplicates: number;
  /** `maxDestinationsPerReport`. */
  limit: number;
  /** Distinct destinations left out. */
  leftOut: number;
}

/** Events of the reporter. */
export type TlsRptEvent =
  | TlsRptSentEvent
  | TlsRptFailedEvent
  | TlsRptDroppedEvent
  | TlsRptSkippedNoRecordEvent
  | TlsRptSkippedNoTransportEvent
  | TlsRptNotAttemptedEvent
  | TlsRptWarningEvent
  | TlsRptDestinationRefusedEvent
  | TlsRptDestinationsLimitedEvent
  | { type: 'spool-corrupt'; error: TlsRptError }
  /** A store failure (`TLSRPT_STORE_FAILED`), or counts that vanished from the store (`TLSRPT_COUNTS_LOST`). */
  | { type: 'store-error'; error: TlsRptError }
  | { type: 'outcomes-dropped'; reason: DroppedOutcomeReason; day?: string; policyDomain?: string };

/** What one `flush()` (or scheduled check) did. */
export interface FlushResult {
  sent: TlsRptSentEvent[];
  failed: TlsRptFailedEvent[];
  dropped: TlsRptDroppedEvent[];
  skipped: Array<TlsRptSkippedNoRecordEvent | TlsRptSkippedNoTransportEvent>;
  /** Reports not attempted because of a configuration error (absent when there were none). */
  notAttempted?: TlsRptNotAttemptedEvent[];
  /** Destinations refused (absent when there were none). */
  refused?: TlsRptDestinationRefusedEvent[];
  /** Reports whose destinations were capped at `maxDestinationsPerReport` (absent when there were none). */
  limited?: TlsRptDestinationsLimitedEvent[];
}

/** A report not sent yet, as it would be built now. */
export interface PendingReport {
  day: string;
  policyDomain: string;
  /** True when the day is over (the report is due, or waiting for its delay, jitter or a retry). */
  closed: boolean;
  /** The report as it would be built now (the id is final once delivery state exists). */
  report: TlsRptReport;
  delivery?: DeliveryState;
}

/** The reporter. */
export interface TlsRptReporter {
  /** Feed session outcomes here (see {@link TlsRptAggregator}). */
  readonly recorder: TlsRptAggregator;
  /**
   * Sends every report of a closed day now, ignoring delay, jitter and backoff (for tests and CLIs). A failure
   * ahead of the report's next scheduled attempt is reported (`failed` with `counted: false`) but does not count,
   * so repeated runs never drop a report before its retry window (RFC 8460 §5.5) is over. Safe against a store
   * that live processes are writing to: only the counts that were sent are removed (`TlsRptStore.settle`).
   */
  flush(): Promise<FlushResult>;
  /** Preview of the reports not sent yet (closed and current days), including unflushed counts. */
  pending(): Promise<PendingReport[]>;
  /** Starts the periodic check for due reports (timers are unref'ed). Idempotent. */
  start(): void;
  /**
   * Stops the timers, writes pending counts, closes what the reporter created. Idempotent. Rejects with
   * `TLSRPT_STORE_FAILED` (after closing everything) when the pending counts could not be written: its
   * `details.unpersistedSessions` says how many recorded sessions were lost.
   */
  close(): Promise<void>;
  /** Configuration warnings found at creation (also logged and emitted as `warning` events). */
  readonly warnings: readonly TlsRptWarningEvent[];
}
