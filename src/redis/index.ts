/**
 * `mta-sts-sender/redis`: policy caching and TLS reporting shared by a fleet of MTAs through Redis.
 *
 * - {@link createRedisPolicyStore}: the MTA-STS policy store (RFC 8461 §3.3) for `createMtaSts({ store })`: one
 *   fetch per domain for the fleet, fleet leases for fetch and refresh, the shared failure backoff. The engine
 *   keeps its own in-memory copy in front of it, so a Redis outage never turns a known policy off.
 * - {@link createRedisTlsRptStore}: the TLS-RPT store (RFC 8460) for `createTlsRptReporter({ store })`: every
 *   member's counts in one report per policy domain per UTC day, sent once.
 *
 * `ioredis` is an optional peer dependency: install it and pass a client (`new Redis(url)`); this module never
 * imports it.
 *
 * @packageDocumentation
 */
export { createRedisPolicyStore, RedisPolicyStore } from './policy-store.js';
export type { RedisPolicyStoreOptions, RedisPolicyStoreEvent } from './policy-store.js';
export { createRedisTlsRptStore, RedisTlsRptStore } from './tlsrpt-store.js';
export type { RedisTlsRptStoreOptions } from './tlsrpt-store.js';
export type { RedisClientLike } from './client.js';
