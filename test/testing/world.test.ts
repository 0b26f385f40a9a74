import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import nodemailer from 'nodemailer';
import { describe, expect, it } from 'vitest';
import { createTestWorld } from '../../src/testing/index.js';
import { httpsGet, policyUrl } from './helpers.js';

describe('test world', () => {
  it('gives the engine its DNS server, CA and policy port', async () => {
    const world = await createTestWorld();
    try {
      expect(world.mtaStsOptions()).toEqual({ dnsServers: [`127.0.0.1:${world.dns.port}`], ca: [world.ca.rootPem], httpsPort: world.httpsPort });
      expect(world.ca.rootPem).toMatch(/^-----BEGIN CERTIFICATE-----\n/);
      expect(world.smtpPort).toBeGreaterThan(0);
    } finally {
      await world.close();
    }
  });

  it('runs two worlds side by side without collisions', async () => {
    const [a, b] = await Promise.all([createTestWorld(), createTestWorld()]);
    try {
      const [mxA, mxB] = await Promise.all([a.addMx('same.test', 'mx.same.test'), b.addMx('same.test', 'mx.same.test')]);
      expect(mxA.ip.split('.').slice(0, 3)).not.toEqual(mxB.ip.split('.').slice(0, 3));
      expect(a.dns.port).not.toBe(b.dns.port);
      expect(a.httpsPort).not.toBe(b.httpsPort);

      a.publishPolicy('same.test', { id: 'a', mode: 'enforce', mx: ['mx.same.test'] });
      b.publishPolicy('same.test', { id: 'b', mode: 'testing', mx: ['mx.same.test'] });
      expect((await httpsGet(a, policyUrl(a, 'same.test'))).body.toString()).toContain('mode: enforce');
      expect((await httpsGet(b, policyUrl(b, 'same.test'))).body.toString()).toContain('mode: testing');
      // world A's CA means nothing to world B's hosts
      await expect(httpsGet({ ...b, ca: a.ca }, policyUrl(b, 'same.test'))).rejects.toThrow();

      const transport = nodemailer.createTransport({ host: mxA.ip, port: a.smtpPort, requireTLS: true, tls: { ca: a.ca.rootPem, servername: mxA.host } });
      await transport.sendMail({ from: 'x@sender.test', to: 'y@same.test', text: 'to A' });
      expect(a.messages).toHaveLength(1);
      expect(b.messages).toHaveLength(0);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('close() is idempotent and later addMx calls are refused', async () => {
    const world = await createTestWorld();
    await world.addMx('c.test', 'mx.c.test');
    await Promise.all([world.close(), world.close()]);
    await world.close();
    await expect(world.addMx('c.test', 'mx2.c.test')).rejects.toThrow(/closed/);
  });

  it('leaves nothing running after close(): a process with hanging connections exits at once', async () => {
    const fixture = fileURLToPath(new URL('./fixtures/close-world.ts', import.meta.url));
    const started = Date.now();
    const { stdout } = await new Promise<{ stdout: string }>((resolve, reject) => {
      execFile(process.execPath, ['--import', 'tsx', fixture], { timeout: 15_000 }, (error, out, err) =>
        error ? reject(Object.assign(error, { stderr: err })) : resolve({ stdout: out }),
      );
    });
    const { exitMsAfterClose } = JSON.parse(stdout.trim().split('\n').at(-1)!) as { exitMsAfterClose: number };
    expect(exitMsAfterClose).toBeLessThan(1000); // the hang/trickle hosts and idle sessions would hold on for 30-60 s
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
