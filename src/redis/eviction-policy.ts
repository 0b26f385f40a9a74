/**
 * Reads a Redis server's `maxmemory-policy`: a store whose counts must not vanish (the TLS-RPT store) needs
 * `noeviction`, where a full Redis refuses writes (the store then fails loudly and the recorder keeps its counts)
 * instead of silently evicting keys.
 *
 * `CONFIG GET maxmemory-policy` first; where CONFIG is disabled or renamed (managed Redis services do that), the
 * `maxmemory_policy` line of `INFO memory`. When neither answers, the policy is unknown and the caller warns so.
 */

/** The policy, or why it could not be read. */
export type EvictionPolicyReading = { policy: string } | { unknown: string };

type Call = (command: string, args: Array<string | number>) => Promise<unknown>;

const message = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/** `CONFIG GET maxmemory-policy`, then `INFO memory`. Never rejects. */
export async function readEvictionPolicy(call: Call): Promise<EvictionPolicyReading> {
  let configError: string;
  try {
    const reply = await call('CONFIG', ['GET', 'maxmemory-policy']);
    // RESP2: ['maxmemory-policy', 'noeviction']; an empty array when the parameter is unknown.
    if (Array.isArray(reply) && typeof reply[1] === 'string') return { policy: reply[1] };
    configError = `unexpected CONFIG GET reply ${JSON.stringify(reply)?.slice(0, 100)}`;
  } catch (error) {
    configError = /unknown command|renamed|NOPERM|no permissions/i.test(message(error)) ? `CONFIG is disabled (${message(error)})` : message(error);
  }
  try {
    const info = await call('INFO', ['memory']);
    const m = typeof info === 'string' ? /^maxmemory_policy:(\S+)/m.exec(info) : null;
    if (m) return { policy: m[1]! };
    return { unknown: `${configError}; INFO memory has no maxmemory_policy` };
  } catch (error) {
    return { unknown: `${configError}; INFO memory failed (${message(error)})` };
  }
}

/** The warning for a reading, or undefined when the policy is `noeviction`. */
export function evictionWarning(reading: EvictionPolicyReading, what: string): string | undefined {
  if ('policy' in reading) {
    if (reading.policy === 'noeviction') return undefined;
    return `Redis maxmemory-policy is ${reading.policy}, not noeviction: when Redis is full it evicts keys and ${what} can vanish (they are reported as lost when detected); set maxmemory-policy noeviction`;
  }
  return `cannot read the Redis maxmemory-policy (${reading.unknown}): make sure it is noeviction, or ${what} can vanish when Redis is full`;
}
