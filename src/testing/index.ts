/**
 * `mta-sts-sender/testing`: a loopback world of real DNS, HTTPS and SMTP servers for testing MTA-STS senders.
 *
 * Start one with {@link createTestWorld}; it is what this library's own tests, examples and demo run against, and it
 * is meant for users' test suites too. Nothing is mocked: the world's servers listen on 127.0.0.0/8 and speak the
 * real protocols, so a library (or an MTA) under test needs no special code paths, only the world's DNS server, CA
 * and ports (see {@link TestWorld.mtaStsOptions}). Linux routes all of 127.0.0.0/8 to loopback, which MX hosts rely
 * on; other systems need loopback aliases.
 *
 * @packageDocumentation
 */
export { createTestWorld } from './world.js';
export type { MtaStsTestOptions, PublishPolicyOptions, TestWorld, TestWorldOptions } from './world.js';
export { CERT_VARIANTS, createTestCa, WRONG_CERT_NAME } from './ca.js';
export type { CertVariant, ChainVariant, IntermediateOptions, IssueOptions, IssuedCert, TestCa } from './ca.js';
export { startTestDnsServer } from './dns-server.js';
export type { DnsFailure, DnsMxRecord, DnsQueryLogEntry, DnsRecords, DnsRecordType, TestDnsServer, TestDnsServerOptions } from './dns-server.js';
export { startTestHttpsServer, UNKNOWN_HOST_CERT_NAME } from './https-hosts.js';
export type { HttpsHandler, HttpsHostOptions, HttpsRequestLogEntry, TestHttpsServer, TestHttpsServerOptions } from './https-hosts.js';
export { formatPolicy, POLICY_PATH, REDIRECT_TARGET_PATH } from './policy-host.js';
export type { PolicyFields, PolicyHostBehaviour } from './policy-host.js';
export type { MxHostOptions, ReceivedMessage, TestMxHost } from './smtp-hosts.js';
export { silentLogger } from './logger.js';
export type { TestWorldLogger } from './logger.js';
export { addExampleDomains, EXAMPLE_DOMAINS } from './example-domains.js';
export type { ExampleDomain } from './example-domains.js';
