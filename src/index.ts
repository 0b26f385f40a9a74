/**
 * mta-sts-sender: the sending side of MTA-STS (RFC 8461).
 *
 * A receiving domain publishes a TXT record at `_mta-sts.<domain>` and a policy file at
 * `https://mta-sts.<domain>/.well-known/mta-sts.txt` naming the MX hosts that may receive its mail and requiring
 * them to be reached over TLS 1.2+ with a valid certificate. This package discovers and caches those policies,
 * matches MX hosts against them, validates MX certificates and plans delivery accordingly. The pure parts (TXT
 * parser, policy parser, MX matcher, certificate host check) are exported for use on their own.
 *
 * @packageDocumentation
 */
export { createMtaSts } from './engine.js';
export type { MtaSts, MtaStsOptions, GetPolicyOptions, PlanOptions } from './engine.js';
export type { DiscoveryTraceStep, DiscoveryTracer } from './engine.js';
export type { MtaStsEvents, MtaStsEventName, MtaStsListener } from './engine/events.js';
export type { StoreErrorEvent, StoreOperation } from './cache/tiered.js';
export type { MtaStsPolicy, PolicyLookup, PolicySource, PolicyStatus } from './types.js';
export { MtaStsError, isMtaStsError, TLSRPT_RESULT_TYPES } from './errors.js';
export type { MtaStsErrorCode, MtaStsErrorOptions, TlsRptResultType } from './errors.js';
export { parseStsTxtRecord, selectStsTxtRecord, isStsTxtRecord, MAX_TXT_RECORD_LENGTH } from './policy/txt-record.js';
export type { StsTxtRecord } from './policy/txt-record.js';
export { parsePolicy, normalizeMxPattern, MAX_MAX_AGE } from './policy/policy-file.js';
export type { StsPolicy, PolicyMode, ParsePolicyOptions } from './policy/policy-file.js';
export { mxMatchesPattern, mxMatchesPolicy, findMatchingPattern } from './mx/match.js';
export { normalizeDomain, normalizeDomainOrUndefined } from './domain.js';
export { MemoryPolicyStore } from './cache/store.js';
export type { CachedPolicy, PolicyStore, StoredFetchFailure, MemoryPolicyStoreOptions, MaybePromise } from './cache/store.js';
export { createFilePolicyStore, FilePolicyStore } from './cache/file-store.js';
export type { FilePolicyStoreOptions, FilePolicyStoreEvent } from './cache/file-store.js';
export { createDefaultResolver, isDnsNotFound } from './discovery/resolver.js';
export type { DnsResolver, MxRecord, DefaultResolverOptions } from './discovery/resolver.js';
export { fetchPolicy, policyUrl } from './discovery/fetch-policy.js';
export type { FetchPolicyOptions, FetchedPolicy } from './discovery/fetch-policy.js';
export { verifyTls } from './tls/verify.js';
export type { TlsSessionInfo, TlsVerification } from './tls/verify.js';
export { certificateMatchesHost, strictCheckServerIdentity } from './tls/host-identity.js';
export type { CertificateForHostCheck } from './tls/host-identity.js';
export { resultTypeForTlsError, isProtocolVersionError } from './tls/tls-errors.js';
export { mxTlsOptions } from './tls/connect-options.js';
export type { MxTlsOptions } from './tls/connect-options.js';
export { probeStartTls } from './tls/starttls-probe.js';
export type { StartTlsProbeOptions, StartTlsProbeResult } from './tls/starttls-probe.js';
export { buildPlan, planForReportDelivery } from './plan/plan.js';
export type { DeliveryPlan, MxCandidate, NoCandidateAction, EffectiveMode, BuildPlanInput } from './plan/plan.js';
export type { Logger } from './logger.js';
