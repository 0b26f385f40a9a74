/**
 * RFC 8461 §3.1 through the engine and the world's DNS: the TXT grammar decides whether a domain has a policy.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMtaSts, type MtaSts } from '../../src/engine.js';
import { createTestWorld, type TestWorld } from '../../src/testing/index.js';

let world: TestWorld;
let mta: MtaSts;
beforeAll(async () => {
  world = await createTestWorld();
  mta = createMtaSts(world.mtaStsOptions());
});
afterAll(async () => {
  await mta?.close();
  await world?.close();
});

describe('RFC 8461 §3.1 TXT records in DNS', () => {
  it('§3.1 "v=STSv1 ; id=1" (whitespace before ";") announces a policy', async () => {
    world.publishPolicy('ws.txt.test', { id: '1', mode: 'enforce', mx: ['mx.ws.txt.test'], txt: 'v=STSv1 ; id=1' });
    expect(await mta.getPolicy('ws.txt.test')).toMatchObject({ status: 'policy', txtId: '1', policy: { mode: 'enforce' } });
  });

  it('§3.1 "v=STSv1; id=1" + "v=STSv1 ; id=2" are two records: no usable record', async () => {
    world.publishPolicy('two.txt.test', { id: '1', mode: 'enforce', mx: ['mx.two.txt.test'], txt: ['v=STSv1; id=1', 'v=STSv1 ; id=2'] });
    const lookup = await mta.getPolicy('two.txt.test');
    expect(lookup.status).toBe('invalid');
    expect(lookup.error?.code).toBe('MTASTS_TXT_MULTIPLE');
  });

  it('§3.1 "v=STSv1; id = abc" is not a valid record', async () => {
    world.publishPolicy('eq.txt.test', { id: 'abc', mode: 'enforce', mx: ['mx.eq.txt.test'], txt: 'v=STSv1; id = abc' });
    const lookup = await mta.getPolicy('eq.txt.test');
    expect(lookup.status).toBe('invalid');
    expect(lookup.error?.code).toBe('MTASTS_TXT_INVALID');
  });
});
