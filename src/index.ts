/**
 * mta-sts-sender: the sending side of MTA-STS (RFC 8461).
 *
 * A receiving domain publishes a TXT record at `_mta-sts.<domain>` and a policy file at
 * `https://mta-sts.<domain>/.well-known/mta-sts.txt` naming the MX hosts that may receive its mail and requiring
 * them to be reached over TLS 1.2+ with a valid certificate. This package discovers and caches those policies,
 * matches MX hosts against them, validates MX certificates and plans delivery accordingly. The pure parts (TXT
 * parser, policy parser, MX matcher, certificate host check) are exported for use on their own.
 *
 * Three policy types, by role: {@link PolicyFile} (what {@link parsePolicy} reads from a policy file),
 * {@link ActivePolicy} (the policy in force for a domain, from `getPolicy`), {@link PolicyStoreEntry} (what a
 * {@link PolicyStore} keeps). Every error is a {@link MtaStsSenderError}.
 *
 * @packageDocumentation
 */
// The engine (discovery, cache, planning) and the types of its API.
export { createMtaSts } from './engine.js';
export type { MtaSts, MtaStsOptions, GetPolicyOptions, PlanOptions } from './engine.js';
export type { DiscoveryTraceStep, DiscoveryTracer, TxtTraceStep, FetchTraceStep, CacheTraceStep } from './engine.js';
export type { MtaStsEvents, MtaStsEventName, MtaStsListener } from './engine/events.js';
export type { StoreErrorEvent, StoreOperation } from './cache/tiered.js';
export type { ActivePolicy, PolicyLookup, PolicySource, PolicyStatus } from './types.js';
export type { DeliveryPlan, MxCandidate, NoCandidateAction, EffectiveMode } from './plan/plan.js';
export type { MxTlsOptions } from './tls/connect-options.js';
export type { Logger } from './logger.js';
// Errors: one base class for every subpath.
export { MtaStsSenderError, MtaStsError, TLSRPT_RESULT_TYPES } from './errors.js';
export type { ErrorDetails, MtaStsSenderErrorOptions, MtaStsSenderErrorJSON, MtaStsErrorCode, MtaStsErrorOptions, TlsRptResultType } from './errors.js';
// Policy stores.
export { MemoryPolicyStore } from './cache/store.js';
export type { PolicyStoreEntry, PolicyStore, StoredFetchFailure, MemoryPolicyStoreOptions } from './cache/store.js';
export { createSqlitePolicyStore, SqlitePolicyStore } from './cache/sqlite-store.js';
export type { SqlitePolicyStoreOptions, SqlitePolicyStoreEvent } from './cache/sqlite-store.js';
// The DNS seam.
export { createDefaultResolver } from './discovery/resolver.js';
export type { DnsResolver, MxRecord, DefaultResolver, DefaultResolverOptions } from './discovery/resolver.js';
// The pure RFC 8461 parts: TXT record (§3.1), policy file (§3.2), MX matching (§4.1), TLS checks (§4.2).
export { parseStsTxtRecord, selectStsTxtRecord } from './policy/txt-record.js';
export type { StsTxtRecord } from './policy/txt-record.js';
export { parsePolicy, MAX_MAX_AGE } from './policy/policy-file.js';
export type { PolicyFile, PolicyMode, ParsePolicyOptions } from './policy/policy-file.js';
export { mxMatchesPattern, mxMatchesPolicy, findMatchingPattern } from './mx/match.js';
export { normalizeDomain } from './domain.js';
export { verifyTls } from './tls/verify.js';
export type { TlsSessionInfo, TlsVerification } from './tls/verify.js';
export { certificateMatchesHost } from './tls/host-identity.js';
export type { CertificateForHostCheck } from './tls/host-identity.js';
export { probeStartTls } from './tls/starttls-probe.js';
export type { StartTlsProbeOptions, StartTlsProbeResult, ProbedCertificate, NegotiatedCipher } from './tls/starttls-probe.js';
