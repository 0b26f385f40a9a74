/**
 * A set of example recipient domains for a {@link TestWorld}, one per situation an operator meets: a correct
 * enforce domain, the usual breakages (policy host errors, invalid TXT record, STARTTLS stripped, certificate for
 * another name, MX not listed), a testing domain that would fail under enforce, and a policy with the mistakes
 * `mta-sts check` warns about. `mta-sts world` publishes them; they also make a quick fixture for a test suite.
 * All names are under `.example` (RFC 6761 §6.5), so nothing here can collide with a real domain.
 */
import type { TestWorld } from './world.js';

/** One example domain and what it demonstrates. */
export interface ExampleDomain {
  domain: string;
  /** What is (or is not) wrong with it, in a few words. */
  what: string;
}

/** The domains {@link addExampleDomains} publishes, in the order it publishes them. */
export const EXAMPLE_DOMAINS: readonly ExampleDomain[] = Object.freeze([
  { domain: 'good.example', what: 'enforce, MX valid, TLS-RPT by HTTPS' },
  { domain: 'nopolicy.example', what: 'no MTA-STS policy (not a problem)' },
  { domain: 'expired-testing.example', what: 'testing mode, MX certificate expired: would fail under enforce' },
  { domain: 'wrongcert.example', what: 'enforce, MX certificate for another name (--probe)' },
  { domain: 'nostarttls.example', what: 'enforce, STARTTLS stripped at the MX (--probe)' },
  { domain: 'unlisted.example', what: 'enforce, MX not covered by the policy' },
  { domain: 'fetch404.example', what: 'policy host answers 404' },
  { domain: 'badtxt.example', what: 'invalid _mta-sts TXT record' },
  { domain: 'sloppy.example', what: 'enforce with max_age 1 h, no TLS-RPT, mx patterns *.co.uk and a .con typo' },
]);

/** Publishes {@link EXAMPLE_DOMAINS} in `world` (MX hosts, policies, TLS-RPT records). Returns them. */
export async function addExampleDomains(world: TestWorld): Promise<readonly ExampleDomain[]> {
  await world.addMx('good.example', 'mx1.good.example');
  world.publishPolicy('good.example', { id: '20260101T000000', mode: 'enforce', mx: ['mx1.good.example'], maxAge: 1_209_600 });
  world.dns.addRecords('_smtp._tls.good.example', { txt: ['v=TLSRPTv1; rua=https://tlsrpt.good.example/v1/report'] });
  world.addHttpsHost('tlsrpt.good.example', { handler: (_req, res) => void res.writeHead(201).end() });

  await world.addMx('nopolicy.example', 'mx.nopolicy.example');

  await world.addMx('expired-testing.example', 'mx.expired-testing.example', { cert: 'expired' });
  world.publishPolicy('expired-testing.example', { id: 't1', mode: 'testing', mx: ['mx.expired-testing.example'], maxAge: 604_800 });
  world.dns.addRecords('_smtp._tls.expired-testing.example', { txt: ['v=TLSRPTv1; rua=mailto:tlsrpt@expired-testing.example'] });

  await world.addMx('wrongcert.example', 'mx.wrongcert.example', { cert: 'wrong-name' });
  world.publishPolicy('wrongcert.example', { id: 'w1', mode: 'enforce', mx: ['mx.wrongcert.example'], maxAge: 604_800 });
  world.dns.addRecords('_smtp._tls.wrongcert.example', { txt: ['v=TLSRPTv1; rua=mailto:tlsrpt@wrongcert.example'] });

  await world.addMx('nostarttls.example', 'mx.nostarttls.example', { starttls: false });
  world.publishPolicy('nostarttls.example', { id: 'n1', mode: 'enforce', mx: ['mx.nostarttls.example'], maxAge: 604_800 });
  world.dns.addRecords('_smtp._tls.nostarttls.example', { txt: ['v=TLSRPTv1; rua=mailto:tlsrpt@nostarttls.example'] });

  await world.addMx('unlisted.example', 'mx.elsewhere.example');
  world.publishPolicy('unlisted.example', { id: 'u1', mode: 'enforce', mx: ['mx.unlisted.example'], maxAge: 604_800 });
  world.dns.addRecords('_smtp._tls.unlisted.example', { txt: ['v=TLSRPTv1; rua=mailto:tlsrpt@unlisted.example'] });

  await world.addMx('fetch404.example', 'mx.fetch404.example');
  world.publishPolicy('fetch404.example', { id: 'f1', mode: 'enforce', mx: ['mx.fetch404.example'], host: { kind: 'status', status: 404 } });

  await world.addMx('badtxt.example', 'mx.badtxt.example');
  world.publishPolicy('badtxt.example', { id: 'b1', mode: 'enforce', mx: ['mx.badtxt.example'], txt: 'v=STSv1; id=not valid!;' });

  await world.addMx('sloppy.example', 'mx.sloppy.example');
  world.publishPolicy('sloppy.example', { id: 's1', mode: 'enforce', mx: ['mx.sloppy.example', '*.co.uk', 'mx2.sloppy.con'], maxAge: 3600 });
  return EXAMPLE_DOMAINS;
}
