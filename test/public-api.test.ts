/**
 * The public surface, recorded so that it grows only deliberately: every subpath's runtime exports (loaded from the
 * source entry modules, as ESM) and every exported name including types (read with the TypeScript compiler).
 * A change here is an API change: update the snapshot on purpose and say so in CHANGELOG.md.
 */
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ENTRIES = {
  '.': 'src/index.ts',
  './hooks': 'src/integrations/hooks.ts',
  './nodemailer': 'src/integrations/nodemailer/index.ts',
  './tlsrpt': 'src/tlsrpt/index.ts',
  './redis': 'src/redis/index.ts',
  './haraka': 'src/integrations/haraka/index.ts',
  './testing': 'src/testing/index.ts',
} as const;

const root = path.resolve(import.meta.dirname, '..');

async function runtimeNames(entry: string): Promise<string[]> {
  const module = (await import(path.join(root, entry))) as Record<string, unknown>;
  return Object.keys(module).sort();
}

/** Every exported name (values and types) of each entry, as the compiler sees it. */
function allNames(): Record<string, string[]> {
  const files = Object.values(ENTRIES).map((f) => path.join(root, f));
  const program = ts.createProgram(files, { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, strict: true, noEmit: true, skipLibCheck: true });
  const checker = program.getTypeChecker();
  const out: Record<string, string[]> = {};
  for (const [subpath, file] of Object.entries(ENTRIES)) {
    const source = program.getSourceFile(path.join(root, file))!;
    const symbol = checker.getSymbolAtLocation(source)!;
    out[subpath] = checker.getExportsOfModule(symbol).map((s) => s.name).sort();
  }
  return out;
}

describe('public API', () => {
  it('runtime exports of every subpath (ESM, from the source entry modules)', async () => {
    const names: Record<string, string> = {};
    for (const [subpath, entry] of Object.entries(ENTRIES)) names[subpath] = (await runtimeNames(entry)).join(' ');
    expect(names).toMatchInlineSnapshot(`
      {
        ".": "MAX_MAX_AGE MemoryPolicyStore MtaStsError MtaStsSenderError SqlitePolicyStore TLSRPT_RESULT_TYPES certificateMatchesHost createDefaultResolver createMtaSts createSqlitePolicyStore findMatchingPattern mxMatchesPattern mxMatchesPolicy normalizeDomain parsePolicy parseStsTxtRecord probeStartTls selectStsTxtRecord verifyTls",
        "./haraka": "HARAKA HARAKA_LOG_LEVELS SUPPORTED_HARAKA_RANGE createHarakaPlugin parseHarakaConfig",
        "./hooks": "DECISION_CHANNEL MtaStsHooks createMtaStsHooks",
        "./nodemailer": "MtaStsDeliveryError MtaStsGuard MtaStsTransport TRANSPORT_VERSION createMtaStsTransport guardTransport nodemailerHandshakeFailure",
        "./redis": "RedisPolicyStore RedisTlsRptStore createRedisPolicyStore createRedisTlsRptStore",
        "./testing": "CERT_VARIANTS EXAMPLE_DOMAINS POLICY_PATH REDIRECT_TARGET_PATH UNKNOWN_HOST_CERT_NAME WRONG_CERT_NAME addExampleDomains createTestCa createTestWorld formatPolicy silentLogger startTestDnsServer startTestHttpsServer",
        "./tlsrpt": "DEFAULT_AGGREGATION_LIMITS MemoryTlsRptStore SqliteTlsRptStore TLSRPT_ERROR_CODES TLSRPT_GZIP_MEDIA_TYPE TLSRPT_JSON_MEDIA_TYPE TLSRPT_REPORT_JSON_SCHEMA TLSRPT_RESULT_TYPES TlsRptAggregator TlsRptError buildTlsRptReport createSqliteTlsRptStore createTlsRptReporter gunzipTlsRptReport gzipTlsRptReport lookupTlsRptRecord mergeDomainDayCounts parseTlsRptRecord postTlsRptReport selectTlsRptRecord sendTlsRptMail subtractDomainDayCounts tlsRptFileName",
      }
    `);
  });

  it('every exported name, types included, of every subpath', () => {
    const names = Object.fromEntries(Object.entries(allNames()).map(([k, v]) => [k, v.join(' ')]));
    expect(names).toMatchInlineSnapshot(`
      {
        ".": "ActivePolicy CacheTraceStep CertificateForHostCheck DefaultResolver DefaultResolverOptions DeliveryPlan DiscoveryTraceStep DiscoveryTracer DnsResolver EffectiveMode ErrorDetails FetchTraceStep GetPolicyOptions Logger MAX_MAX_AGE MemoryPolicyStore MemoryPolicyStoreOptions MtaSts MtaStsError MtaStsErrorCode MtaStsErrorOptions MtaStsEventName MtaStsEvents MtaStsListener MtaStsOptions MtaStsSenderError MtaStsSenderErrorJSON MtaStsSenderErrorOptions MxCandidate MxRecord MxTlsOptions NegotiatedCipher NoCandidateAction ParsePolicyOptions PlanOptions PolicyFile PolicyLookup PolicyMode PolicySource PolicyStatus PolicyStore PolicyStoreEntry ProbedCertificate SqlitePolicyStore SqlitePolicyStoreEvent SqlitePolicyStoreOptions StartTlsProbeOptions StartTlsProbeResult StoreErrorEvent StoreOperation StoredFetchFailure StsTxtRecord TLSRPT_RESULT_TYPES TlsRptResultType TlsSessionInfo TlsVerification TxtTraceStep certificateMatchesHost createDefaultResolver createMtaSts createSqlitePolicyStore findMatchingPattern mxMatchesPattern mxMatchesPolicy normalizeDomain parsePolicy parseStsTxtRecord probeStartTls selectStsTxtRecord verifyTls",
        "./haraka": "HARAKA HARAKA_LOG_LEVELS HarakaEngineConfig HarakaLogLevel HarakaMtaStsConfig HarakaMtaStsPlugin HarakaNext HarakaPluginOptions HarakaTlsRptConfig SUPPORTED_HARAKA_RANGE createHarakaPlugin parseHarakaConfig",
        "./hooks": "ClientTlsIdentity DECISION_CHANNEL DecisionAction DecisionInput DecisionStage DeliveryFailedInput DeliveryFailure FinalAction HooksDeliveryPlan MtaStsDecision MtaStsHooks MtaStsHooksOptions OutcomeInput PlanDeliveryOptions SessionContext SessionVerdict StartTlsRefusal createMtaStsHooks",
        "./nodemailer": "DomainDeliveryResult GuardTransportOptions MtaStsDeliveryError MtaStsDeliveryErrorCode MtaStsGuard MtaStsSentMessageInfo MtaStsTransport MtaStsTransportOptions MxAttempt NodemailerHandshakeFailure SendCallback SmartHostNotice SmtpTransportLike TRANSPORT_VERSION createMtaStsTransport guardTransport nodemailerHandshakeFailure",
        "./redis": "RedisClientLike RedisPolicyStore RedisPolicyStoreEvent RedisPolicyStoreOptions RedisTlsRptStore RedisTlsRptStoreOptions createRedisPolicyStore createRedisTlsRptStore",
        "./testing": "CERT_VARIANTS CertVariant ChainVariant DnsFailure DnsMxRecord DnsQueryLogEntry DnsRecordType DnsRecords EXAMPLE_DOMAINS ExampleDomain HttpsHandler HttpsHostOptions HttpsRequestLogEntry IntermediateOptions IssueOptions IssuedCert MtaStsTestOptions MxHostOptions POLICY_PATH PolicyFields PolicyHostBehaviour PublishPolicyOptions REDIRECT_TARGET_PATH ReceivedMessage TestCa TestDnsServer TestDnsServerOptions TestHttpsServer TestHttpsServerOptions TestMxHost TestWorld TestWorldLogger TestWorldOptions UNKNOWN_HOST_CERT_NAME WRONG_CERT_NAME addExampleDomains createTestCa createTestWorld formatPolicy silentLogger startTestDnsServer startTestHttpsServer",
        "./tlsrpt": "AggregatedFailure AggregatedPolicy AggregationLimits BuildTlsRptReportInput DEFAULT_AGGREGATION_LIMITS DeliveryState DomainDayCounts DomainDayKey DroppedOutcomeReason FlushResult LookupTlsRptRecordOptions MemoryTlsRptStore PendingReport PostTlsRptReportOptions SessionOutcome SqliteTlsRptStore SqliteTlsRptStoreOptions StoredDomainDay TLSRPT_ERROR_CODES TLSRPT_GZIP_MEDIA_TYPE TLSRPT_JSON_MEDIA_TYPE TLSRPT_REPORT_JSON_SCHEMA TLSRPT_RESULT_TYPES TlsRptAggregator TlsRptAggregatorOptions TlsRptAggregatorStats TlsRptDestination TlsRptDestinationFailure TlsRptDestinationRefusedEvent TlsRptDestinationsLimitedEvent TlsRptDroppedEvent TlsRptError TlsRptErrorCode TlsRptErrorOptions TlsRptEvent TlsRptFailedEvent TlsRptFailure TlsRptFileNameInput TlsRptHttpsResult TlsRptIgnoredUri TlsRptLogger TlsRptMailOptions TlsRptMailResult TlsRptMailTransport TlsRptMailTransportInput TlsRptNotAttemptedEvent TlsRptPolicyRef TlsRptPolicyType TlsRptRecord TlsRptRecorder TlsRptRefusalReason TlsRptReport TlsRptReportFailureDetail TlsRptReportPolicy TlsRptReporter TlsRptReporterOptions TlsRptResultType TlsRptRetryOptions TlsRptSentEvent TlsRptSkippedNoRecordEvent TlsRptSkippedNoTransportEvent TlsRptStore TlsRptStoreEvent TlsRptWarningEvent buildTlsRptReport createSqliteTlsRptStore createTlsRptReporter gunzipTlsRptReport gzipTlsRptReport lookupTlsRptRecord mergeDomainDayCounts parseTlsRptRecord postTlsRptReport selectTlsRptRecord sendTlsRptMail subtractDomainDayCounts tlsRptFileName",
      }
    `);
  }, 60_000);
});
