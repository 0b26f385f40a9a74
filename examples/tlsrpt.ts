/**
 * TLS reporting (RFC 8460) end to end against the loopback test world: `npx tsx examples/tlsrpt.ts`.
 *
 * The recipient domain `example.test` publishes `_smtp._tls.example.test` with an HTTPS and a mailto report
 * address; the reporter records a few sessions during one UTC day, the clock moves past midnight, `flush()` sends
 * the day's report to both addresses, and the report JSON that was sent is printed.
 */
import { createDefaultResolver } from 'mta-sts-sender';
import { createTestWorld } from 'mta-sts-sender/testing';
import { createTlsRptReporter, gunzipTlsRptReport, MemoryTlsRptStore, type TlsRptPolicyRef } from 'mta-sts-sender/tlsrpt';

const world = await createTestWorld();
try {
  // The recipient domain: an MX host, and a TLSRPT record with two report destinations.
  const mx = await world.addMx('example.test', 'mx.example.test');
  world.dns.setRecords('_smtp._tls.example.test', { txt: ['v=TLSRPTv1; rua=https://tlsrpt.example.test/v1/report,mailto:tlsrpt@example.test'] });
  world.addHttpsHost('tlsrpt.example.test', { handler: (_req, res) => res.writeHead(200).end() });

  // An injected clock: 2026-11-22 10:00 UTC.
  let now = Date.UTC(2026, 10, 22, 10);
  const reporter = createTlsRptReporter({
    organizationName: 'Example Sender Inc.',
    contactInfo: 'tlsrpt@sender.example',
    submitter: 'mta.sender.example',
    store: new MemoryTlsRptStore(), // in production: a database path, e.g. '/var/lib/mta-sts-sender/tlsrpt.db' (survives restarts)
    resolver: createDefaultResolver({ dnsServers: world.dns.servers }),
    ca: world.ca.rootPem, // trust the test CA for the HTTPS endpoint
    httpsPort: world.httpsPort, // test only: the world's HTTPS port instead of 443
    allowInternalDestinations: true, // test only: the world's report endpoints and *.test names are on loopback
    // The report mail goes straight to the test MX here; in production use a relay that does not enforce MTA-STS.
    mailTransport: { host: mx.ip, port: world.smtpPort, tls: { ca: [world.ca.rootPem], servername: mx.host } },
    now: () => now,
    onEvent: (event) => console.error(`event: ${event.type}${'policyDomain' in event ? ` ${event.policyDomain}` : ''}`),
  });

  // What the MTA-STS part of the library records after each SMTP session.
  const policy: TlsRptPolicyRef = {
    type: 'sts',
    domain: 'example.test',
    policyString: ['version: STSv1', 'mode: enforce', 'mx: mx.example.test', 'max_age: 86400'],
    mxHost: ['mx.example.test'],
  };
  for (let i = 0; i < 5; i++) reporter.recorder.record({ policy, success: true });
  reporter.recorder.record({
    policy,
    success: false,
    failure: { resultType: 'certificate-expired', sendingMtaIp: '192.0.2.1', receivingMxHostname: 'mx.example.test', receivingIp: mx.ip, failureReasonCode: 'CERT_HAS_EXPIRED' },
  });
  reporter.recorder.record({ policy: { type: 'no-policy-found', domain: 'unreported.test' }, success: true });

  // The UTC day is over: send its reports now (a started reporter would do it after a random delay).
  now = Date.UTC(2026, 10, 23, 1);
  const result = await reporter.flush();
  await reporter.close();

  const sent = result.sent[0];
  if (!sent || result.sent.length !== 1) throw new Error(`expected one report, got ${JSON.stringify(result)}`);
  const posted = await gunzipTlsRptReport(world.httpsRequests.at(-1)!.body);
  if (JSON.stringify(posted) !== JSON.stringify(sent.report)) throw new Error('the HTTPS endpoint received something else');
  if (world.messages.length !== 1) throw new Error('expected one report mail');
  console.error(`sent ${sent.reportId} to ${sent.delivered.join(' and ')}; skipped: ${result.skipped.map((s) => s.policyDomain).join(', ')}`);
  console.log(JSON.stringify(sent.report, null, 2));
} finally {
  await world.close();
}
