/**
 * A custom SMTP client following the MTA-STS hook sequence, against the loopback test world.
 *
 *   npx tsx examples/custom-client.ts
 *
 * The client is Nodemailer's low-level SMTPConnection (any SMTP client works the same way):
 *   planDelivery(domain) → for each allowed candidate: addressesFor → connect by IP → STARTTLS with tlsOptionsFor
 *   → verifySession (or handshakeFailed) → MAIL/RCPT/DATA only when `proceed` → recordOutcome.
 * Every decision is also published on the diagnostics channel `mta-sts-sender:decision`, which an operator can
 * subscribe to from anywhere in the process for logs and metrics.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import type { TLSSocket } from 'node:tls';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { createMtaStsHooks, DECISION_CHANNEL, type MtaStsDecision } from 'mta-sts-sender/hooks';
import { nodemailerHandshakeFailure } from 'mta-sts-sender/nodemailer';
import { createTestWorld } from 'mta-sts-sender/testing';

const world = await createTestWorld();
await world.addMx('bank.example', 'mx0.attacker.example', { priority: 0 }); // injected MX record, not in the policy
await world.addMx('bank.example', 'mx1.bank.example', { priority: 10, starttls: false }); // STARTTLS stripped
await world.addMx('bank.example', 'mx2.bank.example', { priority: 20 }); // fine
world.publishPolicy('bank.example', { id: '20240101', mode: 'enforce', mx: ['*.bank.example'], maxAge: 604800 });

// Operators: count decisions from anywhere in the process.
const counts = new Map<string, number>();
diagnosticsChannel.subscribe(DECISION_CHANNEL, (message) => {
  const d = message as MtaStsDecision;
  const key = `${d.stage}:${d.action}${d.resultType ? `:${d.resultType}` : ''}`;
  counts.set(key, (counts.get(key) ?? 0) + 1);
});

const hooks = createMtaStsHooks({
  ...world.mtaStsOptions(),
  recorder: { record: (o) => console.log(`  [tls-rpt] ${o.policy.type} ${o.policy.domain}: ${o.success ? 'success' : `failure ${o.failure?.resultType} ${o.failure?.receivingMxHostname}`}`) },
});
hooks.on('decision', (d: MtaStsDecision) => console.log(`[${d.stage}] ${d.action}${d.mx ? ` ${d.mx}` : ''}${d.resultType ? ` (${d.resultType})` : ''}: ${d.reason}`));

async function deliver(domain: string, from: string, to: string[], message: string): Promise<string> {
  const plan = await hooks.planDelivery(domain);
  for (const candidate of plan.candidates) {
    if (!candidate.allowed) {
      hooks.recordOutcome(candidate, { success: false, resultType: candidate.resultType ?? 'validation-failure' });
      continue;
    }
    for (const ip of await hooks.addressesFor(candidate)) {
      const connection = new SMTPConnection({
        host: ip, // connect by IP...
        port: world.smtpPort, // FOR TESTS (25 in production)
        servername: candidate.host, // ...SNI and certificate name: the MX host name (RFC 8461 §4.2)
        name: 'client.sender.example',
        requireTLS: candidate.requireTls, // enforce: never continue without STARTTLS
        opportunisticTLS: !candidate.requireTls,
        tls: hooks.tlsOptionsFor(candidate), // TLS 1.2+, trust roots, rejectUnauthorized under enforce
        connectionTimeout: 5000,
        greetingTimeout: 5000,
      });
      const error = await new Promise<Error | undefined>((resolve) => {
        connection.once('error', resolve);
        connection.connect(() => resolve(undefined));
      });
      connection.on('error', () => undefined);
      if (error) {
        connection.close();
        const failed = (error as { code?: string }).code === 'ETLS' || connection.upgrading;
        if (failed) {
          // Nodemailer wraps TLS errors in codes of its own: translate them for the hooks.
          const failure = nodemailerHandshakeFailure(error);
          hooks.recordOutcome(candidate, hooks.handshakeFailed(candidate, failure.error, { ip, ...(failure.starttlsRefused ? { starttlsRefused: failure.starttlsRefused } : {}) }), { ip });
        }
        continue; // next address / MX
      }
      const verdict = hooks.verifySession(candidate, connection.secure ? (connection._socket as TLSSocket) : null, { ip });
      hooks.recordOutcome(candidate, verdict, { ip });
      if (!verdict.proceed) {
        connection.close();
        continue;
      }
      const info = await new Promise<{ response: string }>((resolve, reject) =>
        connection.send({ from, to }, message, (err, result) => (err ? reject(err) : resolve(result as { response: string }))),
      );
      connection.quit();
      return `delivered to ${candidate.host} [${ip}] over ${verdict.verdict.protocol}: ${info.response}`;
    }
  }
  // RFC 8461 §5.1: no MX passed: a temporary failure (defer), never a bounce.
  throw Object.assign(new Error(`no MX host of ${domain} passed its ${plan.mode} policy`), { responseCode: 451, temporary: true });
}

try {
  const result = await deliver('bank.example', 'app@sender.example', ['security@bank.example'], 'Subject: hello\r\n\r\nhi\r\n');
  console.log(`\n${result}`);
  console.log('MX servers received:', world.messages.map((m) => `${m.mxHost} secure=${m.secure} sni=${m.sni}`).join('; '));
  console.log('decision counts:', Object.fromEntries(counts));
  if (world.messages.length !== 1 || world.messages[0]?.mxHost !== 'mx2.bank.example') process.exitCode = 1;
} finally {
  await hooks.close();
  await world.close();
}
