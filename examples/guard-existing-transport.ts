/**
 * Adding MTA-STS to an existing Nodemailer SMTP transport with one line, against the loopback test world.
 *
 *   npx tsx examples/guard-existing-transport.ts
 *
 * 1. A transport that talks straight to a recipient's MX host (`mx1.partner.example`, enforce policy): the guard
 *    enforces the policy for that host (STARTTLS, TLS 1.2+, certificate valid for the host name). When the host's
 *    certificate breaks, the message is refused with a temporary EMTASTS error instead of going to an impostor.
 * 2. A transport that relays through a smart host (`relay: true`): RFC 8461 §3.4 makes the smart host's domain the policy domain.
 *    Without a policy of its own, the guard passes the message through and says so once; once the smart host
 *    publishes an enforce policy, the guard applies it to the hop (validated TLS with SNI = the smart host).
 */
import net from 'node:net';
import nodemailer from 'nodemailer';
import { createMtaSts } from 'mta-sts-sender';
import { guardTransport } from 'mta-sts-sender/nodemailer';
import { createTestWorld } from 'mta-sts-sender/testing';

const world = await createTestWorld();
const mtaSts = createMtaSts(world.mtaStsOptions());
let ok = true;
try {
  const mx = await world.addMx('partner.example', 'mx1.partner.example');
  world.publishPolicy('partner.example', { id: '1', mode: 'enforce', mx: ['mx1.partner.example'], maxAge: 604800 });

  // 1. Direct to the partner's MX.
  const direct = nodemailer.createTransport({ host: 'mx1.partner.example', port: world.smtpPort, name: 'app.sender.example', connectionTimeout: 5000, greetingTimeout: 5000 });
  const guard = guardTransport(direct, { mtaSts }); // <- the one line
  guard.on('decision', (d) => {
    if (d.stage === 'session' || d.stage === 'delivery') console.log(`  [decision] ${d.domain} ${d.action}${d.resultType ? ` (${d.resultType})` : ''}`);
  });
  const info = await direct.sendMail({ from: 'app@sender.example', to: 'orders@partner.example', subject: 'order 1', text: 'hi' });
  const detail = (info as unknown as { mtaSts: Record<string, { mode: string; tlsVersion?: string; validated: boolean }> }).mtaSts['partner.example'];
  console.log(`direct: accepted ${info.accepted.join(', ')}; mode ${detail?.mode}, ${detail?.tlsVersion}, validated=${detail?.validated}`);
  console.log(`  the MX received it over ${mx.messages[0]?.tlsVersion} with SNI ${mx.messages[0]?.sni}`);

  mx.setCert('expired'); // someone now answers with a bad certificate
  try {
    await direct.sendMail({ from: 'app@sender.example', to: 'orders@partner.example', subject: 'order 2', text: 'hi' });
    ok = false;
  } catch (error) {
    const e = error as { code?: string; responseCode?: number; temporary?: boolean; attempts?: Array<{ mx: string; resultType?: string }> };
    console.log(`direct, expired certificate: refused, code ${e.code}, ${e.responseCode}, temporary=${e.temporary}, ${e.attempts?.map((a) => `${a.mx}: ${a.resultType}`).join('; ')}`);
  }
  ok &&= mx.messages.length === 1;

  // 2. Through a smart host (here another loopback SMTP server; Nodemailer gets a socket to it since the test world's
  //    names resolve only in its own DNS).
  const relay = await world.addMx('isp.example', 'smtp.isp.example');
  const viaRelay = nodemailer.createTransport({
    host: 'smtp.isp.example',
    port: world.smtpPort,
    tls: { ca: world.ca.rootPem },
    getSocket: (_options, callback) => callback(null, { connection: net.connect(world.smtpPort, relay.ip) }),
  });
  // relay: true says the host is a smart host: the MX answer (unauthenticated) cannot tell, so without it mail to an
  // enforce domain whose policy does not list the host (here partner.example) is deferred.
  const relayGuard = guardTransport(viaRelay, { mtaSts, relay: true });
  relayGuard.on('smart-host', (notice) => console.log(`smart-host notice: ${notice.reason}`));
  await viaRelay.sendMail({ from: 'app@sender.example', to: 'orders@partner.example', subject: 'order 3', text: 'via relay' });
  await viaRelay.sendMail({ from: 'app@sender.example', to: 'orders@partner.example', subject: 'order 4', text: 'via relay' });
  console.log(`relay: the smart host received ${relay.messages.length} message(s); it has no policy, so none was applied to that hop (warned once)`);
  ok &&= relay.messages.length === 2;

  // 3. The smart host publishes an enforce policy: it is now applied to the hop (RFC 8461 §3.4).
  world.publishPolicy('smtp.isp.example', { id: '1', mode: 'enforce', mx: ['smtp.isp.example'], maxAge: 604800 });
  const sent = await viaRelay.sendMail({ from: 'app@sender.example', to: 'orders@partner.example', subject: 'order 5', text: 'via relay, protected' });
  const hop = (sent as unknown as { mtaSts: Record<string, { policyDomain?: string; mode: string; validated: boolean }> }).mtaSts['partner.example'];
  console.log(`relay with a policy: policy domain ${hop?.policyDomain}, mode ${hop?.mode}, validated=${hop?.validated}; the smart host got it with SNI ${relay.messages[2]?.sni}`);
  ok &&= relay.messages.length === 3 && hop?.policyDomain === 'smtp.isp.example' && hop.validated;
  guard.unguard();
  relayGuard.unguard();
} finally {
  await mtaSts.close();
  await world.close();
}
if (!ok) {
  console.error('unexpected result');
  process.exitCode = 1;
}
