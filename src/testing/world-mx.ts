/**
 * The test world's SMTP MX hosts: one server per MX name, each on its own loopback address (127.x.y.z) and the
 * world's SMTP port, its A record published in the world's DNS, shared by every domain that names it in an MX record.
 */
import type { TestCa } from './ca.js';
import { normalizeDnsName, type TestDnsServer } from './dns-server.js';
import type { TestWorldLogger } from './logger.js';
import { LoopbackAddressPool, startMxHost, type MxHostOptions, type ReceivedMessage, type TestMxHost } from './smtp-hosts.js';

const MX_BIND_ATTEMPTS = 5;

/** What the MX hosts share with the rest of the world. */
export interface MxFleetContext {
  dns: TestDnsServer;
  ca: TestCa;
  logger: TestWorldLogger;
  addresses: LoopbackAddressPool;
  smtpPort: number;
  /** Every accepted message is appended here. */
  messages: ReceivedMessage[];
  /** True once the world is closing: no new MX host starts. */
  closing: () => boolean;
}

/** The running MX hosts of a world. */
export interface MxFleet {
  /** Starts `hostName` (once) and publishes it as an MX of `domainName`; see `TestWorld.addMx`. */
  add(domainName: string, hostName: string, mxOptions?: MxHostOptions): Promise<TestMxHost>;
  /** Closes every MX host that started. */
  close(): Promise<void>;
}

/** Creates the (empty) set of MX hosts of a world. */
export function createMxFleet(world: MxFleetContext): MxFleet {
  const mxHosts = new Map<string, Promise<TestMxHost>>();

  const start = async (host: string, mxOptions: MxHostOptions): Promise<TestMxHost> => {
    const starting = listenMx(world, host, mxOptions, () => {
      if (mxHosts.get(host) === starting) mxHosts.delete(host);
    });
    mxHosts.set(host, starting);
    starting.catch(() => mxHosts.delete(host));
    world.dns.addRecords(host, { a: [(await starting).ip] });
    return starting;
  };

  return {
    async add(domainName, hostName, mxOptions = {}) {
      if (world.closing()) throw new Error('the test world is closed');
      const domain = normalizeDnsName(domainName);
      const host = normalizeDnsName(hostName);
      const priority = mxOptions.priority ?? 10;
      if (!Number.isInteger(priority) || priority < 0 || priority > 0xffff) throw new RangeError(`bad MX priority: ${priority}`);
      const mx = mxHosts.get(host);
      if (mx && Object.keys(mxOptions).some((key) => key !== 'priority')) {
        throw new Error(`MX host ${host} is already running; only 'priority' may be given when adding it to another domain`);
      }
      const running = await (mx ?? start(host, mxOptions));
      world.dns.addRecords(domain, { mx: [{ exchange: host, priority }] });
      return running;
    },
    async close() {
      const mx = await Promise.allSettled(mxHosts.values());
      await Promise.all(mx.flatMap((result) => (result.status === 'fulfilled' ? [result.value.close()] : [])));
    },
  };
}

/** Listens on a fresh loopback address, moving to another /24 when the address and port are taken. */
async function listenMx(world: MxFleetContext, host: string, mxOptions: MxHostOptions, onClose: () => void): Promise<TestMxHost> {
  let lastError: unknown;
  for (let attempt = 0; attempt < MX_BIND_ATTEMPTS; attempt++) {
    const ip = world.addresses.take();
    try {
      return await startMxHost({ ...mxOptions, host, ip, port: world.smtpPort, ca: world.ca, logger: world.logger, onMessage: (m) => world.messages.push(m), onClose });
    } catch (error) {
      lastError = error;
      if ((error as { code?: unknown }).code === 'EADDRNOTAVAIL') {
        throw new Error(`cannot listen on ${ip}: this system does not route 127.0.0.0/8 to loopback (Linux does; elsewhere add loopback aliases)`, { cause: error });
      }
      world.addresses.switchSubnet();
    }
  }
  throw new Error(`could not start MX host ${host} after ${MX_BIND_ATTEMPTS} attempts`, { cause: lastError });
}
