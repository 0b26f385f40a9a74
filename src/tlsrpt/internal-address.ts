/**
 * Where report POSTs may connect. RFC 8460 §3 and §5.4 leave the `https:` endpoint to the policy domain, and §7
 * ("Reports as DDoS") notes that whoever controls the domain's DNS chooses where reports go. Without a check a
 * domain could make the reporter POST into the sender's own network:
 * `https://127.0.0.1:8443/`, `https://169.254.169.254/` (cloud metadata), or a public name whose A record says
 * `10.0.0.5`.
 *
 * The check is made on the address the socket actually connects to, at connect time: the `lookup` of the socket
 * drops internal addresses from the DNS answer (so a DNS answer cannot smuggle one in after any earlier check), an
 * IP-literal host is checked before connecting, and the connected socket's `remoteAddress` is checked once more
 * before the request is written. The ranges are in a `net.BlockList` (no hand-written CIDR arithmetic); it also
 * matches IPv4-mapped IPv6 forms (`::ffff:127.0.0.1`) against the IPv4 ranges.
 */
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { BlockList, isIP, type Socket } from 'node:net';
import { buildConnector, type Agent } from 'undici';
import { createResolverLookup } from '../discovery/lookup.js';
import type { DnsResolver } from '../discovery/resolver.js';
import { TlsRptError } from './errors.js';

/** Address ranges that are never a report endpoint unless `allowInternalDestinations` is set. */
const INTERNAL_RANGES: ReadonlyArray<readonly [network: string, prefix: number, family: 'ipv4' | 'ipv6', what: string]> = [
  ['0.0.0.0', 8, 'ipv4', 'unspecified ("this network", RFC 1122 §3.2.1.3)'],
  ['10.0.0.0', 8, 'ipv4', 'private (RFC 1918)'],
  ['100.64.0.0', 10, 'ipv4', 'shared address space / CGNAT (RFC 6598)'],
  ['127.0.0.0', 8, 'ipv4', 'loopback (RFC 1122)'],
  ['169.254.0.0', 16, 'ipv4', 'link-local (RFC 3927)'],
  ['172.16.0.0', 12, 'ipv4', 'private (RFC 1918)'],
  ['192.168.0.0', 16, 'ipv4', 'private (RFC 1918)'],
  ['224.0.0.0', 4, 'ipv4', 'multicast (RFC 5771)'],
  ['240.0.0.0', 4, 'ipv4', 'reserved, and the limited broadcast 255.255.255.255 (RFC 1112, RFC 919)'],
  ['::', 96, 'ipv6', 'unspecified, loopback and IPv4-compatible (RFC 4291 §2.5.2, §2.5.3, §2.5.5.1)'],
  ['fc00::', 7, 'ipv6', 'unique local (RFC 4193)'],
  ['fe80::', 10, 'ipv6', 'link-local (RFC 4291 §2.5.6)'],
  ['fec0::', 10, 'ipv6', 'site-local, deprecated (RFC 3879)'],
  ['ff00::', 8, 'ipv6', 'multicast (RFC 4291 §2.7)'],
];

const INTERNAL: BlockList = (() => {
  const list = new BlockList();
  for (const [network, prefix, family] of INTERNAL_RANGES) list.addSubnet(network, prefix, family);
  return list;
})();

/**
 * True when `address` (an IP address, IPv6 with or without brackets) is in an internal range: loopback, private,
 * link-local, unspecified, CGNAT, multicast, broadcast/reserved, or an IPv4-mapped IPv6 form of one of them. A
 * string that is not an IP address is not internal (names are checked by {@link publicNameProblem}).
 */
export function isInternalAddress(address: string): boolean {
  const bare = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  // A zone index (fe80::1%eth0) only exists on link-local addresses.
  const ip = bare.includes('%') ? bare.slice(0, bare.indexOf('%')) : bare;
  const family = isIP(ip);
  if (family === 0) return false;
  return INTERNAL.check(ip, family === 4 ? 'ipv4' : 'ipv6');
}

/** The refusal of a destination because of the address it resolved or connected to. */
export function internalAddressRefusal(host: string, address: string): TlsRptError {
  return new TlsRptError('TLSRPT_DESTINATION_REFUSED', `report endpoint ${host} is at the internal address ${address}: refused (set allowInternalDestinations only for test worlds)`, {
    details: { reason: 'internal-address', host, address },
  });
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;
type LookupFunction = (hostname: string, options: LookupOptions, callback: LookupCallback) => void;

/**
 * A socket `lookup` that answers only with the public addresses of `hostname`: internal ones are dropped, and when
 * none is left the lookup fails with `TLSRPT_DESTINATION_REFUSED`, so the socket never connects to them.
 */
export function publicAddressLookup(resolver: DnsResolver | undefined, dnsTimeoutMs: number) {
  const base = (resolver ? createResolverLookup(resolver, dnsTimeoutMs) : dnsLookup) as LookupFunction;
  return function lookup(hostname: string, options: LookupOptions | number | LookupCallback, callback?: LookupCallback): void {
    const cb = (typeof options === 'function' ? options : callback) as LookupCallback;
    const opts: LookupOptions = typeof options === 'object' && options !== null ? options : typeof options === 'number' ? { family: options } : {};
    base(hostname, { ...opts, all: true }, (error, addresses) => {
      if (error) return cb(error, opts.all ? [] : '');
      const all = addresses as LookupAddress[];
      const usable = all.filter((a) => !isInternalAddress(a.address));
      if (usable.length === 0) {
        const refused = internalAddressRefusal(hostname, all[0]?.address ?? '?') as TlsRptError & NodeJS.ErrnoException;
        return cb(refused, opts.all ? [] : '');
      }
      if (opts.all) return cb(null, usable);
      cb(null, usable[0]!.address, usable[0]!.family);
    });
  };
}

/** Options of {@link guardedConnector}: those of undici's `buildConnector`. */
export type GuardedConnectorOptions = buildConnector.BuildOptions;

/**
 * An undici `connect` function that refuses internal addresses: an IP-literal host is checked before connecting,
 * names go through `options.lookup` (use {@link publicAddressLookup}), and the connected socket's `remoteAddress`
 * is checked before undici writes the request.
 */
export function guardedConnector(options: GuardedConnectorOptions): NonNullable<Agent.Options['connect']> {
  const connect = buildConnector(options);
  return (opts, callback) => {
    const host = opts.hostname;
    if (isInternalAddress(host)) {
      callback(internalAddressRefusal(host, host), null);
      return;
    }
    connect(opts, (error, socket) => {
      if (error || !socket) return callback(error ?? new Error('no socket'), null);
      const remote = (socket as Socket).remoteAddress;
      // The address actually connected to, whatever the lookup said; unknown counts as refused.
      if (remote === undefined || isInternalAddress(remote)) {
        socket.destroy();
        return callback(internalAddressRefusal(host, remote ?? 'unknown'), null);
      }
      callback(null, socket);
    });
  };
}
