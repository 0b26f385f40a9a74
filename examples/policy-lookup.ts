/**
 * The core engine on its own: discover a domain's policy, plan delivery, and judge each MX host's TLS.
 * Runs against the loopback test world: `node --import tsx examples/policy-lookup.ts`.
 */
import { createMtaSts, probeStartTls } from 'mta-sts-sender';
import { createTestWorld } from 'mta-sts-sender/testing';

const world = await createTestWorld();
try {
  // A domain with an enforce policy, one genuine MX host and one that an attacker slipped into DNS.
  world.publishPolicy('example.test', { id: '20261123', mode: 'enforce', mx: ['*.mx.example.test'], maxAge: 604800 });
  await world.addMx('example.test', 'eu1.mx.example.test', { priority: 10 });
  await world.addMx('example.test', 'mail.attacker.test', { priority: 5 });

  const mtaSts = createMtaSts(world.mtaStsOptions());
  const lookup = await mtaSts.getPolicy('example.test');
  console.log(`policy: status=${lookup.status} source=${lookup.source} mode=${lookup.policy?.mode} mx=${lookup.policy?.mx.join(',')}`);

  const plan = await mtaSts.plan('example.test');
  for (const candidate of plan.candidates) {
    console.log(`  MX ${candidate.priority} ${candidate.host}: ${candidate.allowed ? 'allowed' : 'REFUSED'} (${candidate.reason})`);
    if (!candidate.allowed) continue;
    const [address] = await mtaSts.resolver.resolve4(candidate.host);
    const probe = await probeStartTls(candidate.host, { address: address!, smtpPort: world.smtpPort, tls: candidate.tls, timeoutMs: 5000 });
    console.log(`    STARTTLS ${probe.starttlsOffered ? 'offered' : 'missing'}, ${probe.protocol ?? 'no TLS'}: ${probe.verification.ok ? 'certificate valid for the MX name' : `${probe.verification.resultType}: ${probe.verification.reason}`}`);
  }
  if (plan.noCandidate) console.log(`  no permitted MX: ${plan.noCandidate.action} (${plan.noCandidate.reason})`);
  await mtaSts.close();
} finally {
  await world.close();
}
