/**
 * RFC 8461 §3.3: the policy size limit is the engine's `maxPolicyBytes`, end to end (fetch and parse alike), so a
 * larger limit really admits larger policies.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMtaSts } from '../../src/engine.js';
import { createTestWorld, formatPolicy, type TestWorld } from '../../src/testing/index.js';

let world: TestWorld;
beforeAll(async () => {
  world = await createTestWorld();
});
afterAll(async () => {
  await world?.close();
});

/** A valid enforce policy of about 70 KB: 3500 mx lines. */
function bigPolicy(domain: string): { body: string; mx: string[] } {
  const mx = Array.from({ length: 3500 }, (_, i) => `mx${i}.${domain}`);
  return { body: formatPolicy({ mode: 'enforce', mx, maxAge: 86400 }), mx };
}

describe('RFC 8461 §3.3 maxPolicyBytes', () => {
  it('§3.3 a valid 70 KB policy is accepted end to end with maxPolicyBytes: 1 MiB', async () => {
    const { body, mx } = bigPolicy('big.test');
    expect(Buffer.byteLength(body)).toBeGreaterThan(70_000);
    world.publishPolicy('big.test', { id: 'big1', mode: 'enforce', mx, body });
    const mta = createMtaSts({ ...world.mtaStsOptions(), maxPolicyBytes: 1024 * 1024 });
    try {
      const lookup = await mta.getPolicy('big.test');
      expect(lookup.error).toBeUndefined();
      expect(lookup).toMatchObject({ status: 'policy', source: 'fetched', policy: { mode: 'enforce' } });
      expect(lookup.policy?.mx).toHaveLength(3500);
      const plan = await mta.plan('big.test', ['mx3499.big.test', 'mx.attacker.test']);
      expect(plan.candidates.map((c) => [c.host, c.allowed])).toEqual([
        ['mx3499.big.test', true],
        ['mx.attacker.test', false],
      ]);
    } finally {
      await mta.close();
    }
  });

  it('§3.3 the same policy is refused with the default 64 KiB limit', async () => {
    const { body, mx } = bigPolicy('big2.test');
    world.publishPolicy('big2.test', { id: 'big1', mode: 'enforce', mx, body });
    const mta = createMtaSts(world.mtaStsOptions());
    try {
      const lookup = await mta.getPolicy('big2.test');
      expect(lookup.status).not.toBe('policy');
      expect(lookup.error?.code).toBe('MTASTS_BODY_TOO_LARGE');
    } finally {
      await mta.close();
    }
  });
});
