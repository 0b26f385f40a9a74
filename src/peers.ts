/**
 * Optional peer dependencies, loaded when a feature that needs them is created.
 *
 * `nodemailer` (the Nodemailer transport, the guard, TLS-RPT reports by mail) and `smtp-server`, `node-forge`,
 * `dns-packet` (the `mta-sts-sender/testing` world) are optional peers: an application installs only what it uses.
 * A missing one must not surface as a raw `ERR_MODULE_NOT_FOUND` at import time or, worse, a day later when the
 * first report is due: the factory that needs it checks at creation and throws an `MtaStsError` with code
 * `MTASTS_MISSING_PEER` that names the package to install.
 */
import { createRequire } from 'node:module';
import { MtaStsError } from './errors.js';

/** The optional peer dependencies, with the versions this package works with (package.json `peerDependencies`). */
export const OPTIONAL_PEERS = Object.freeze({
  nodemailer: '^6.0.0 || ^7.0.0 || ^8.0.0 || ^9.0.0 || ^10.0.0',
  'smtp-server': '^3.13.0',
  'node-forge': '^1.3.0',
  'dns-packet': '^5.6.0',
  'better-sqlite3': '^12.0.0',
} as const);

export type OptionalPeer = keyof typeof OPTIONAL_PEERS;

const localRequire = createRequire(import.meta.url);

function isMissing(error: unknown, peer: OptionalPeer): boolean {
  const e = error as { code?: unknown; message?: unknown } | null;
  if (typeof e !== 'object' || e === null) return false;
  if (e.code !== 'MODULE_NOT_FOUND' && e.code !== 'ERR_MODULE_NOT_FOUND') return false;
  // Only the peer itself: a module missing *inside* an installed peer is a broken installation, reported as is.
  return typeof e.message === 'string' && (e.message.includes(`'${peer}'`) || e.message.includes(`'${peer}/`) || e.message.includes(`"${peer}"`) || e.message.includes(`"${peer}/`));
}

/** The error for a missing peer: what to install, and for which feature. */
export function missingPeerError(peer: OptionalPeer, feature: string, cause?: unknown): MtaStsError {
  return new MtaStsError('MTASTS_MISSING_PEER', `${feature} needs the optional peer dependency ${peer} (${OPTIONAL_PEERS[peer]}), which is not installed: run npm install ${peer}`, {
    details: { package: peer, range: OPTIONAL_PEERS[peer] },
    ...(cause !== undefined ? { cause } : {}),
  });
}

/**
 * Loads a CommonJS module of an optional peer (`specifier` is the peer or a file in it, e.g.
 * `nodemailer/lib/smtp-connection`). Throws `MTASTS_MISSING_PEER` when the peer is not installed.
 */
export function requirePeer<T>(peer: OptionalPeer, feature: string, specifier: string = peer): T {
  try {
    return localRequire(specifier) as T;
  } catch (error) {
    if (isMissing(error, peer)) throw missingPeerError(peer, feature, error);
    throw error;
  }
}

/** Checks that a peer can be found, without loading it. Throws `MTASTS_MISSING_PEER` when it cannot. */
export function assertPeer(peer: OptionalPeer, feature: string): void {
  try {
    localRequire.resolve(peer);
  } catch (error) {
    if (isMissing(error, peer)) throw missingPeerError(peer, feature, error);
    throw error;
  }
}

/**
 * Checks several peers at once and names every missing one in one `MTASTS_MISSING_PEER` error (one
 * `npm install a b c` line), rather than one per attempt.
 */
export function assertPeers(peers: readonly OptionalPeer[], feature: string): void {
  const missing: OptionalPeer[] = [];
  for (const peer of peers) {
    try {
      assertPeer(peer, feature);
    } catch (error) {
      if ((error as { code?: unknown }).code !== 'MTASTS_MISSING_PEER') throw error;
      missing.push(peer);
    }
  }
  if (missing.length <= 1) {
    if (missing.length === 1) assertPeer(missing[0]!, feature);
    return;
  }
  const list = missing.map((peer) => `${peer} (${OPTIONAL_PEERS[peer]})`).join(', ');
  throw new MtaStsError('MTASTS_MISSING_PEER', `${feature} needs the optional peer dependencies ${list}, which are not installed: run npm install ${missing.join(' ')}`, {
    details: { package: missing.join(' ') },
  });
}
