/**
 * `npm run demo`: MTA-STS and TLS-RPT from the sending side, end to end, in about ten seconds.
 *
 * Starts the loopback test world (a DNS server, HTTPS policy hosts and SMTP MX hosts on 127.0.0.0/8, all with
 * certificates from a throw-away CA) and sends real mail through the library's Nodemailer transport:
 *
 *   1. an enforce domain: delivered over validated TLS;
 *   2. an enforce domain whose MX had STARTTLS stripped: refused, with the reason;
 *   3. an enforce domain whose MX presents a certificate for another name: refused;
 *   4. a testing domain with an expired MX certificate: delivered, and the failure lands in the TLS-RPT report,
 *      which is sent (HTTPS POST, gzip) once the UTC day is over and printed here;
 *   5. `mta-sts check --probe` for two of the world's domains.
 *
 * Nothing leaves the machine; everything is torn down at the end. Linux only (MX hosts use several loopback
 * addresses; other systems need loopback aliases).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import nodemailer from 'nodemailer';
import pc from 'picocolors';
import { createDefaultResolver } from 'mta-sts-sender';
import { createMtaStsTransport, MtaStsDeliveryError, type MtaStsSentMessageInfo } from 'mta-sts-sender/nodemailer';
import { createTestWorld } from 'mta-sts-sender/testing';
import { createTlsRptReporter, type TlsRptReport } from 'mta-sts-sender/tlsrpt';

const c = pc.createColors(process.stdout.isTTY === true && !process.env.NO_COLOR);
const DAY_MS = 86_400_000;
const started = performance.now();

function step(n: number, title: string): void {
  console.log(`\n${c.bold(c.cyan(`── ${n}. ${title}`))}`);
}
function line(text = ''): void {
  console.log(`   ${text}`);
}

const world = await createTestWorld();
const tmp = mkdtempSync(join(tmpdir(), 'mta-sts-demo-'));
let exitCode = 0;
try {
  console.log(c.bold('mta-sts-sender demo'));
  line(c.dim(`loopback world: DNS ${world.dns.servers[0]}, policy hosts on :${world.httpsPort}, MX hosts on 127.x.y.z:${world.smtpPort}`));

  // ---- the world: four recipient domains, each with its policy and MX host ----
  await world.addMx('secure.example', 'mx1.secure.example');
  world.publishPolicy('secure.example', { id: '20250101T000000', mode: 'enforce', mx: ['mx1.secure.example'] });
  await world.addMx('stripped.example', 'mx.stripped.example', { starttls: false });
  world.publishPolicy('stripped.example', { id: 's1', mode: 'enforce', mx: ['mx.stripped.example'] });
  await world.addMx('badcert.example', 'mx.badcert.example', { cert: 'wrong-name' });
  world.publishPolicy('badcert.example', { id: 'b1', mode: 'enforce', mx: ['mx.badcert.example'] });
  await world.addMx('trial.example', 'mx.trial.example', { cert: 'expired' });
  world.publishPolicy('trial.example', { id: 't1', mode: 'testing', mx: ['mx.trial.example'] });
  // trial.example wants TLS reports by HTTPS POST (RFC 8460 §3); the endpoint is a host of the world.
  world.dns.addRecords('_smtp._tls.trial.example', { txt: ['v=TLSRPTv1; rua=https://tlsrpt.trial.example/v1/report'] });
  const reports: Array<{ contentType: string | undefined; report: TlsRptReport }> = [];
  world.addHttpsHost('tlsrpt.trial.example', {
    handler: (req, res, body) => {
      reports.push({ contentType: req.headers['content-type'], report: JSON.parse(gunzipSync(body).toString('utf8')) as TlsRptReport });
      res.writeHead(200).end();
    },
  });

  // ---- the sender: the Nodemailer transport, feeding a TLS-RPT reporter ----
  // The reporter's clock can be moved a day ahead, so that today's counts become a closed day that is reported.
  let clockShift = 0;
  const options = world.mtaStsOptions();
  const reporter = createTlsRptReporter({
    organizationName: 'Demo Sender Inc.',
    contactInfo: 'tlsrpt@sender.example',
    submitter: 'mta.sender.example',
    resolver: createDefaultResolver({ dnsServers: options.dnsServers }),
    ca: options.ca,
    httpsPort: world.httpsPort, // FOR TESTS: the world's HTTPS port instead of 443
    allowInternalDestinations: true, // FOR TESTS: the world's report endpoints are on loopback
    now: () => Date.now() + clockShift,
    delayMs: 0,
    jitterMs: 0,
  });
  const transport = createMtaStsTransport({
    ...options,
    name: 'mta.sender.example',
    recorder: reporter.recorder,
    fetchTimeoutMs: 3000,
    dnsTimeoutMs: 2000,
    connectionTimeoutMs: 2000,
    greetingTimeoutMs: 2000,
    smtpPort: world.smtpPort, // FOR TESTS ONLY: the world's SMTP port instead of 25
  });
  const mailer = nodemailer.createTransport(transport);
  const send = (to: string) => mailer.sendMail({ from: 'alerts@sender.example', to, subject: `hello ${to}`, text: 'Sent with MTA-STS.' }) as Promise<MtaStsSentMessageInfo>;

  const deliver = async (to: string): Promise<void> => {
    const domain = to.split('@')[1]!;
    try {
      const info = await send(to);
      const r = info.mtaSts[domain]!;
      line(`${c.green('✓ delivered')} to ${r.mx} (${r.ip}) — mode ${c.bold(r.mode)}, policy id ${r.policyId}`);
      line(`  ${r.secure ? `STARTTLS ${r.tlsVersion}` : 'plaintext'}, certificate ${r.validated ? c.green('validated for the MX name') : c.yellow(`not valid (${r.resultType}) — delivered anyway: testing mode only reports`)}`);
      line(c.dim(`  ${info.response}`));
    } catch (error) {
      if (!(error instanceof MtaStsDeliveryError)) throw error;
      line(`${c.red('✗ refused')} (${error.code}, ${error.temporary ? 'temporary: a queueing MTA defers, never bounces' : 'permanent'})`);
      line(c.dim(`  ${error.response}`));
      for (const a of error.attempts) line(`  ${a.mx}${a.ip ? ` (${a.ip})` : ''}: ${a.outcome} at ${a.stage}: ${c.bold(a.resultType ?? '')} ${a.reason}`);
    }
  };

  step(1, 'enforce domain, valid MX: delivered over validated TLS');
  await deliver('alice@secure.example');
  const got = world.messages.find((m) => m.recipients.includes('alice@secure.example'));
  line(c.dim(`  the MX saw: secure=${got?.secure}, ${got?.tlsVersion}, SNI ${got?.sni}`));

  step(2, 'enforce domain, MX with STARTTLS stripped (a downgrade attack): refused');
  await deliver('bob@stripped.example');
  line(c.dim(`  messages received by mx.stripped.example: ${world.messages.filter((m) => m.mxHost === 'mx.stripped.example').length}`));

  step(3, 'enforce domain, MX certificate for another name: refused');
  await deliver('carol@badcert.example');

  step(4, 'testing domain, expired MX certificate: delivered, and reported (TLS-RPT)');
  await deliver('dave@trial.example');
  clockShift = DAY_MS; // a day later: the UTC day of the delivery is closed, its report is due
  const flushed = await reporter.flush();
  for (const sent of flushed.sent) line(`${c.green('✓ TLS report sent')} for ${sent.policyDomain} (${sent.day}) to ${sent.delivered.join(', ')}`);
  const received = reports[0];
  if (!received) throw new Error('no TLS report was received');
  line(c.dim(`  the report endpoint received ${received.contentType}; the report (RFC 8460 §4.4):`));
  for (const text of JSON.stringify(received.report, null, 2).split('\n')) line(c.dim(`  ${text}`));

  step(5, 'mta-sts check --probe (the CLI, on two of the world\'s domains)');
  const caFile = join(tmp, 'world-ca.pem');
  writeFileSync(caFile, world.ca.rootPem);
  // The package's own `mta-sts` command, as `npx mta-sts-sender` runs it.
  const cli = join(dirname(createRequire(import.meta.url).resolve('mta-sts-sender/package.json')), 'dist/cli/main.js');
  const args = ['check', '--probe', '--dns-server', options.dnsServers[0]!, '--ca', caFile, '--https-port', String(world.httpsPort), '--smtp-port', String(world.smtpPort), '--timeout', '3000', 'secure.example', 'badcert.example'];
  // Asynchronous: the test world's servers run in this process and must keep answering.
  const [code] = (await once(spawn(process.execPath, [cli, ...args], { stdio: 'inherit' }), 'exit')) as [number | null];
  line(c.dim(`(mta-sts check exit code ${code}: badcert.example has a problem)`));

  transport.close();
  await reporter.close();
  console.log(`\n${c.green('Done')} in ${((performance.now() - started) / 1000).toFixed(1)} s.`);
} catch (error) {
  console.error(c.red(`demo failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`));
  exitCode = 1;
} finally {
  await world.close();
  rmSync(tmp, { recursive: true, force: true });
}
process.exitCode = exitCode;
