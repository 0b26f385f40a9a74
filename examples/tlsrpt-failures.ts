/**
 * What TLS reports say about real failures: `npx tsx examples/tlsrpt-failures.ts`.
 *
 * The Nodemailer transport sends to broken recipient domains of the loopback test world, recording every session
 * with a TLS-RPT reporter; then the day is closed and the reports are posted to an HTTPS collector and printed:
 * - `expired.test`: the MX certificate expired (enforce: refused);
 * - `unlisted.test`: the MX host is not listed in the enforce policy;
 * - `broken-policy.test`: the policy file does not parse (reported with the text, "including any errors");
 * - `stale.test`: the policy host starts answering 404 after the policy was cached; mail flows under the cached
 *   policy and the session is marked `+fallback-to-cached-policy`.
 */
import nodemailer from 'nodemailer';
import { createDefaultResolver } from 'mta-sts-sender';
import { createMtaStsTransport } from 'mta-sts-sender/nodemailer';
import { createTestWorld } from 'mta-sts-sender/testing';
import { createTlsRptReporter, gunzipTlsRptReport, MemoryTlsRptStore, type TlsRptReport } from 'mta-sts-sender/tlsrpt';

const world = await createTestWorld();
try {
  const enforce = (mx: string, id = 'v1') => ({ id, mode: 'enforce' as const, mx: [mx], maxAge: 86400 });
  await world.addMx('expired.test', 'mx.expired.test', { cert: 'expired' });
  world.publishPolicy('expired.test', enforce('mx.expired.test'));
  await world.addMx('unlisted.test', 'mx.elsewhere.test');
  world.publishPolicy('unlisted.test', enforce('mx.unlisted.test'));
  await world.addMx('broken-policy.test', 'mx.broken-policy.test');
  world.publishPolicy('broken-policy.test', { ...enforce('mx.broken-policy.test'), body: 'version: STSv1\nmode: enforce\nmx: mx.broken-policy.test\nmax_age: one week\n' });
  await world.addMx('stale.test', 'mx.stale.test');
  world.publishPolicy('stale.test', enforce('mx.stale.test'));

  const received: TlsRptReport[] = [];
  world.addHttpsHost('collector.test', { handler: (_req, res, body) => void gunzipTlsRptReport(body).then((r) => (received.push(r), res.writeHead(200).end())) });
  for (const d of ['expired.test', 'unlisted.test', 'broken-policy.test', 'stale.test']) world.dns.setRecords(`_smtp._tls.${d}`, { txt: ['v=TLSRPTv1; rua=https://collector.test/'] });

  let clock = Date.now();
  const reporter = createTlsRptReporter({
    organizationName: 'Example Sender Inc.',
    contactInfo: 'tlsrpt@sender.example',
    submitter: 'mta.sender.example',
    store: new MemoryTlsRptStore(),
    resolver: createDefaultResolver({ dnsServers: world.dns.servers }),
    ca: world.ca.rootPem,
    httpsPort: world.httpsPort, // test only: the world's HTTPS port instead of 443
    allowInternalDestinations: true, // test only: the world's report endpoints are on loopback
    now: () => clock,
  });
  const transport = createMtaStsTransport({ ...world.mtaStsOptions(), smtpPort: world.smtpPort, name: 'mta.sender.example', recorder: reporter.recorder });
  const mailer = nodemailer.createTransport(transport);
  const send = (to: string) => mailer.sendMail({ from: 'a@sender.example', to, subject: 'hello', text: 'hello' }).then(() => 'delivered', (e: Error) => `not delivered (${e.message.split('\n')[0]})`);

  for (const to of ['a@expired.test', 'a@unlisted.test', 'a@broken-policy.test', 'a@stale.test']) console.error(`${to}: ${await send(to)}`);
  // The policy of stale.test changes id, but its host now answers 404: the cached policy keeps applying.
  world.publishPolicy('stale.test', { ...enforce('mx.stale.test', 'v2'), host: { kind: 'status', status: 404 } });
  console.error(`b@stale.test: ${await send('b@stale.test')}`);
  transport.close();

  clock += 86_400_000 + 3_600_000; // the UTC day is over
  const result = await reporter.flush();
  await reporter.close();
  if (result.sent.length !== 4) throw new Error(`expected 4 reports, got ${JSON.stringify(result)}`);
  for (const report of received.sort((a, b) => a.policies[0]!.policy['policy-domain'].localeCompare(b.policies[0]!.policy['policy-domain']))) {
    // Only what differs between the domains: the policy and its counts.
    console.log(JSON.stringify(report.policies, null, 1).replace(/\n\s*/g, ' '));
  }
} finally {
  await world.close();
}
