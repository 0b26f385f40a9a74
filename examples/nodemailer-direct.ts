/**
 * Direct-to-MX delivery with Nodemailer and MTA-STS, against the loopback test world.
 *
 *   npx tsx examples/nodemailer-direct.ts
 *
 * Three recipient domains, one message: `secure.example` (enforce, valid MX), `broken.example` (enforce, its only MX
 * presents an expired certificate) and `trial.example` (testing, self-signed certificate). The first is delivered
 * over validated TLS, the second is refused with a temporary EMTASTS error (nothing is sent to the impostor), the
 * third is delivered and the failure is reported for TLS-RPT.
 */
import nodemailer from 'nodemailer';
import { createMtaStsTransport, type MtaStsSentMessageInfo } from 'mta-sts-sender/nodemailer';
import { createTestWorld } from 'mta-sts-sender/testing';
import type { SessionOutcome } from 'mta-sts-sender/tlsrpt';

const world = await createTestWorld();
try {
  await world.addMx('secure.example', 'mx1.secure.example');
  world.publishPolicy('secure.example', { id: '2024a', mode: 'enforce', mx: ['mx1.secure.example'], maxAge: 604800 });
  await world.addMx('broken.example', 'mx1.broken.example', { cert: 'expired' });
  world.publishPolicy('broken.example', { id: '7', mode: 'enforce', mx: ['*.broken.example'], maxAge: 604800 });
  await world.addMx('trial.example', 'mx.trial.example', { cert: 'self-signed' });
  world.publishPolicy('trial.example', { id: 't1', mode: 'testing', mx: ['mx.trial.example'], maxAge: 86400 });

  const outcomes: SessionOutcome[] = [];
  const transport = createMtaStsTransport({
    ...world.mtaStsOptions(), // DNS server, CA and policy port of the test world (omit in production)
    name: 'mailer.sender.example',
    recorder: { record: (outcome) => outcomes.push(outcome) }, // a TlsRptAggregator in production
    connectionTimeoutMs: 5000,
    greetingTimeoutMs: 5000,
    smtpPort: world.smtpPort, // FOR TESTS ONLY: MX hosts listen here instead of 25
  });
  transport.on('decision', (d) => {
    if (d.stage === 'session' || d.stage === 'delivery') console.log(`  [decision] ${d.domain} ${d.action}${d.resultType ? ` (${d.resultType})` : ''}: ${d.reason}`);
  });
  const mailer = nodemailer.createTransport(transport);

  const info = (await mailer.sendMail({
    from: 'alerts@sender.example',
    to: ['ops@secure.example', 'ops@broken.example', 'ops@trial.example'],
    subject: 'MTA-STS demo',
    text: 'Hello over TLS.',
  })) as unknown as MtaStsSentMessageInfo;

  console.log('\naccepted:', info.accepted.join(', '));
  console.log('rejected:', info.rejected.join(', '), '| deferred (retry later):', info.deferred.join(', '));
  for (const [domain, r] of Object.entries(info.mtaSts)) {
    console.log(`${domain}: ${r.status}, mode ${r.mode}${r.policyId ? ` (policy ${r.policyId})` : ''}` + (r.mx ? `, via ${r.mx} [${r.ip}] ${r.secure ? r.tlsVersion : 'plaintext'}, validated=${r.validated}` : '') + (r.resultType ? `, reported: ${r.resultType}` : ''));
    if (r.error) console.log(`  error ${(r.error as { code?: string }).code}: ${(r.error as { response?: string }).response}`);
  }
  console.log('\nwhat the MX servers received:');
  for (const m of world.messages) console.log(`  ${m.mxHost}: ${m.recipients.join(', ')} secure=${m.secure} ${m.tlsVersion ?? ''} sni=${m.sni ?? '-'}`);
  console.log('\nTLS-RPT outcomes:');
  for (const o of outcomes) console.log(`  ${o.policy.type} ${o.policy.domain}: ${o.success ? 'success' : `failure ${o.failure?.resultType} at ${o.failure?.receivingMxHostname}`}`);

  const ok = world.messages.length === 2 && !world.messages.some((m) => m.mxHost === 'mx1.broken.example') && info.deferred.includes('ops@broken.example');
  transport.close();
  if (!ok) {
    console.error('unexpected result');
    process.exitCode = 1;
  }
} finally {
  await world.close();
}
