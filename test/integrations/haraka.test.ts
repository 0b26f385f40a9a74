/**
 * The Haraka get_mx plugin, with Haraka's hook calling convention (next(code, value)) against the loopback world's
 * DNS and policy hosts (Haraka itself is not installed).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MtaSts } from '../../src/engine.js';
import { createHarakaPlugin, HARAKA } from '../../src/integrations/haraka/index.js';
import { createMtaStsHooks } from '../../src/integrations/hooks.js';
import type { TestWorld } from '../../src/testing/index.js';
import { startWorld, stopWorld } from './helpers.js';

let world: TestWorld;
let engine: MtaSts;

beforeAll(async () => {
  ({ world, engine } = await startWorld());
});
afterAll(async () => {
  await stopWorld(world, engine);
});

function getMx(domain: string): Promise<{ code: number | undefined; value: unknown }> {
  const plugin = createHarakaPlugin({ hooks: createMtaStsHooks({ mtaSts: engine }) });
  return new Promise((resolve) => plugin.hook_get_mx.call({}, (code, value) => resolve({ code, value }), {}, domain));
}

describe('Haraka get_mx plugin', () => {
  it('RFC 8461 §4.1 enforce: only the MX hosts the policy lists, in preference order', async () => {
    await world.addMx('hk.test', 'mx0.evil.test', { priority: 1 });
    await world.addMx('hk.test', 'mx1.hk.test', { priority: 10 });
    await world.addMx('hk.test', 'mx2.hk.test', { priority: 20 });
    world.publishPolicy('hk.test', { id: '1', mode: 'enforce', mx: ['*.hk.test'], maxAge: 86400 });
    expect(await getMx('hk.test')).toEqual({ code: HARAKA.OK, value: [{ priority: 10, exchange: 'mx1.hk.test' }, { priority: 20, exchange: 'mx2.hk.test' }] });
  });

  it('RFC 8461 §5.1 enforce with no permitted MX: DENYSOFT (defer, never bounce)', async () => {
    await world.addMx('hk-none.test', 'mx.elsewhere-hk.test');
    world.publishPolicy('hk-none.test', { id: '1', mode: 'enforce', mx: ['mx1.hk-none.test'], maxAge: 86400 });
    const { code, value } = await getMx('hk-none.test');
    expect(code).toBe(HARAKA.DENYSOFT);
    expect(String(value)).toMatch(/MTA-STS/);
  });

  it('RFC 8461 §5 testing and no policy: steps aside (CONT) so Haraka looks the MX up itself', async () => {
    await world.addMx('hk-testing.test', 'mx1.hk-testing.test');
    world.publishPolicy('hk-testing.test', { id: '1', mode: 'testing', mx: ['mx1.hk-testing.test'], maxAge: 86400 });
    await world.addMx('hk-plain.test', 'mx1.hk-plain.test');
    expect((await getMx('hk-testing.test')).code).toBeUndefined();
    expect((await getMx('hk-plain.test')).code).toBeUndefined();
  });
});
