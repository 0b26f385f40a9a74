/**
 * The loopback test world: DNS, a CA, MTA-STS policy hosts and SMTP MX hosts, started with one call.
 *
 * Everything is a real server on loopback, so a test drives the library exactly as production would: DNS queries go
 * over UDP/TCP to the world's DNS server, policies are fetched over HTTPS and validated against the world's CA, and
 * mail is delivered over SMTP with STARTTLS to MX hosts that each have their own 127.x.y.z address. Tests then
 * change the world (publish a new policy id, break a certificate, strip STARTTLS, fail DNS) and observe what the
 * library does. `close()` tears it all down without leaving handles behind.
 */
import { createTestCa, type TestCa } from './ca.js';
import { assertPeers } from '../peers.js';
import { normalizeDnsName, startTestDnsServer, type TestDnsServer } from './dns-server.js';
import { startTestHttpsServer, type TestHttpsServer, type HttpsHostOptions, type HttpsRequestLogEntry } from './https-hosts.js';
import { silentLogger, type TestWorldLogger } from './logger.js';
import { answerPolicyRequest, behaviourCert, formatPolicy, type PolicyFields, type PolicyHostBehaviour } from './policy-host.js';
import { findFreePort, LoopbackAddressPool, type MxHostOptions, type ReceivedMessage, type TestMxHost } from './smtp-hosts.js';
import { createMxFleet } from './world-mx.js';

/** Options of {@link createTestWorld}. */
export interface TestWorldOptions {
  /** Where the world's servers report (see {@link TestWorldLogger}); `console` works. Default: silent. */
  logger?: TestWorldLogger;
}

/** What {@link TestWorld.publishPolicy} publishes. */
export interface PublishPolicyOptions extends PolicyFields {
  /** The policy id in the TXT record. */
  id: string;
  /** The policy file text, served as is; default: built from `mode`, `mx` and `maxAge` (see {@link formatPolicy}). */
  body?: string;
  /**
   * The TXT records at `_mta-sts.<domain>`: default `v=STSv1; id=<id>;`; a string or an array of strings (one
   * record each) replaces it; `null` publishes no TXT record.
   */
  txt?: string | readonly string[] | null;
  /** How the policy host answers. Default `{ kind: 'ok' }`. */
  host?: PolicyHostBehaviour;
}

/** The options that point the library's engine at a world. */
export interface MtaStsTestOptions {
  dnsServers: string[];
  ca: string[];
  /** The engine's FOR-TESTS-ONLY `httpsPort`: where the world's policy hosts listen. */
  httpsPort: number;
}

/** A running test world. Create it with {@link createTestWorld}. */
export interface TestWorld {
  /** The DNS server (127.0.0.1, UDP and TCP). */
  readonly dns: TestDnsServer;
  /** The CA all `valid` certificates chain to. */
  readonly ca: TestCa;
  /** The port every HTTPS host (policy hosts, report endpoints) listens on, on 127.0.0.1: the library's `httpsPort`. */
  readonly httpsPort: number;
  /** The port every MX host listens on (each on its own loopback address). */
  readonly smtpPort: number;
  /** `{ dnsServers, ca: [rootPem], httpsPort }` for the library's engine. */
  mtaStsOptions(): MtaStsTestOptions;
  /**
   * Publishes an MTA-STS policy for `domain`: the TXT record `_mta-sts.<domain>`, `A mta-sts.<domain> -> 127.0.0.1`
   * and the policy host. Calling it again replaces all three (e.g. to change the id or the policy mid-test).
   */
  publishPolicy(domain: string, policy: PublishPolicyOptions): void;
  /** Changes only how the policy host of `domain` answers. Throws when no policy was published for `domain`. */
  setPolicyHost(domain: string, behaviour: PolicyHostBehaviour): void;
  /** Removes the TXT record, the policy host and its A record. */
  unpublishPolicy(domain: string): void;
  /** Adds (or replaces) an HTTPS host on `httpsPort`, with `A <hostname> -> 127.0.0.1`. */
  addHttpsHost(hostname: string, options: HttpsHostOptions): void;
  /** Removes an HTTPS host (its A record stays: clients then get a certificate for no name they know). */
  removeHttpsHost(hostname: string): void;
  /** Every request any HTTPS host received, oldest first. */
  readonly httpsRequests: HttpsRequestLogEntry[];
  /**
   * Starts an SMTP MX host `host` on a new loopback address at `smtpPort`, and publishes `MX <priority> <host>` for
   * `domain` and `A <host> -> <address>`. When `host` already runs (e.g. an MX shared by several domains), only the
   * MX record is added and the running host is returned; options other than `priority` are then not allowed.
   */
  addMx(domain: string, host: string, options?: MxHostOptions): Promise<TestMxHost>;
  /** Every message any MX host accepted, oldest first. */
  readonly messages: ReceivedMessage[];
  /** Stops every server and drops every connection. Idempotent. */
  close(): Promise<void>;
}

const POLICY_HOST_IP = '127.0.0.1';

/**
 * Starts a world: a DNS server, a fresh CA, the HTTPS server for policy hosts, and a loopback /24 for MX hosts.
 * Takes a few milliseconds. Always `close()` it (e.g. in `afterAll`).
 *
 * @example
 * ```ts
 * const world = await createTestWorld();
 * await world.addMx('example.com', 'mx1.example.com');
 * world.publishPolicy('example.com', { id: '1', mode: 'enforce', mx: ['mx1.example.com'] });
 * // ... run the library with world.mtaStsOptions(), deliver to port world.smtpPort ...
 * expect(world.messages[0]?.tlsVersion).toBe('TLSv1.3');
 * await world.close();
 * ```
 */
export async function createTestWorld(options: TestWorldOptions = {}): Promise<TestWorld> {
  // The world's servers are built on optional peers: say which one to install before starting anything.
  assertPeers(['node-forge', 'dns-packet', 'smtp-server'], 'createTestWorld() (mta-sts-sender/testing)');
  const logger = options.logger ?? silentLogger;
  const ca = createTestCa();
  const { dns, https, addresses, smtpPort } = await startServers(ca, logger);
  const messages: ReceivedMessage[] = [];
  let closing: Promise<void> | undefined;
  const policies = createPolicyPublisher(dns, https);
  const mx = createMxFleet({ dns, ca, logger, addresses, smtpPort, messages, closing: () => closing !== undefined });

  return {
    dns,
    ca,
    httpsPort: https.port,
    smtpPort,
    httpsRequests: https.requests,
    messages,
    mtaStsOptions: () => ({ dnsServers: [...dns.servers], ca: [ca.rootPem], httpsPort: https.port }),
    ...policies,
    addHttpsHost(hostname, setup) {
      dns.addRecords(hostname, { a: [POLICY_HOST_IP] });
      https.setHost(hostname, setup);
    },
    removeHttpsHost(hostname) {
      https.removeHost(hostname);
    },
    addMx: (domainName, hostName, mxOptions) => mx.add(domainName, hostName, mxOptions),
    close() {
      closing ??= Promise.all([mx.close(), https.close(), dns.close()]).then(() => undefined);
      return closing;
    },
  };
}

/** Starts the DNS and HTTPS servers and finds the SMTP port; on a failure, closes what started. */
async function startServers(ca: TestCa, logger: TestWorldLogger): Promise<{ dns: TestDnsServer; https: TestHttpsServer; addresses: LoopbackAddressPool; smtpPort: number }> {
  const dns = await startTestDnsServer({ logger });
  const https = await startTestHttpsServer({ ca, logger }).catch(async (error: unknown) => {
    await dns.close();
    throw error;
  });
  const addresses = new LoopbackAddressPool();
  const smtpPort = await findFreePort(addresses.take()).catch(async (error: unknown) => {
    await Promise.all([dns.close(), https.close()]);
    throw error;
  });
  return { dns, https, addresses, smtpPort };
}

/** The MTA-STS side of the world: `_mta-sts` TXT records (RFC 8461 §3.1) and the policy hosts serving them (§3.2). */
function createPolicyPublisher(dns: TestDnsServer, https: TestHttpsServer): Pick<TestWorld, 'publishPolicy' | 'setPolicyHost' | 'unpublishPolicy'> {
  const policies = new Map<string, { body: string; behaviour: PolicyHostBehaviour }>();

  const replaceTxt = (name: string, txt: string[]): void => {
    const next = dns.getRecords(name) ?? {};
    delete next.txt;
    if (txt.length > 0) next.txt = txt;
    if (Object.keys(next).length > 0) dns.setRecords(name, next);
    else dns.removeName(name);
  };

  const setPolicyHost = (domain: string, behaviour: PolicyHostBehaviour): void => {
    const state = policies.get(domain);
    if (!state) throw new Error(`no MTA-STS policy published for ${domain}`);
    state.behaviour = behaviour;
    https.setHost(`mta-sts.${domain}`, {
      cert: behaviourCert(behaviour),
      handler: (req, res) => answerPolicyRequest(req, res, { ...state, port: https.port }),
    });
  };

  return {
    publishPolicy(domainName, policy) {
      const domain = normalizeDnsName(domainName);
      const txt = policy.txt === undefined ? [`v=STSv1; id=${policy.id};`] : policy.txt === null ? [] : [policy.txt].flat();
      replaceTxt(`_mta-sts.${domain}`, txt);
      dns.addRecords(`mta-sts.${domain}`, { a: [POLICY_HOST_IP] });
      policies.set(domain, { body: policy.body ?? formatPolicy(policy), behaviour: { kind: 'ok' } });
      setPolicyHost(domain, policy.host ?? { kind: 'ok' });
    },
    setPolicyHost(domainName, behaviour) {
      setPolicyHost(normalizeDnsName(domainName), behaviour);
    },
    unpublishPolicy(domainName) {
      const domain = normalizeDnsName(domainName);
      policies.delete(domain);
      replaceTxt(`_mta-sts.${domain}`, []);
      https.removeHost(`mta-sts.${domain}`);
      dns.removeName(`mta-sts.${domain}`);
    },
  };
}
