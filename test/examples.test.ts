/**
 * The runnable examples run as processes against the test world, as a user would run them (`npx tsx examples/...`):
 * each exits 0 and prints what happened.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

function runExample(name: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', `examples/${name}.ts`], { cwd: root, timeout: 60_000, env: { ...process.env, NO_COLOR: '1' } }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

describe.concurrent('examples', () => {
  it('policy-lookup: an enforce policy refuses the unlisted MX and validates the listed one', async () => {
    const r = await runExample('policy-lookup');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/mail\.attacker\.test: REFUSED/);
    expect(r.stdout).toMatch(/certificate valid for the MX name/);
  });

  it('nodemailer-direct: delivered over validated TLS, refusals and TLS-RPT outcomes printed', async () => {
    const r = await runExample('nodemailer-direct');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/secure=true TLSv1\.[23] sni=/);
    expect(r.stdout).toMatch(/certificate-expired/);
  });

  it('guard-existing-transport: MX enforced, smart host warned about, then its own policy applied (§3.4)', async () => {
    const r = await runExample('guard-existing-transport');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/EMTASTS/);
    expect(r.stdout).toMatch(/smtp\.isp\.example is the policy domain of this hop \(RFC 8461 §3\.4\); it publishes no usable MTA-STS policy/);
    expect(r.stdout).toMatch(/policy domain smtp\.isp\.example, mode enforce, validated=true; the smart host got it with SNI smtp\.isp\.example/);
  });

  it('custom-client: the hooks drive a raw SMTP client', async () => {
    const r = await runExample('custom-client');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/session:proceed/);
    expect(r.stdout).toMatch(/starttls-not-supported/);
  });

  it('tlsrpt: prints the RFC 8460 report it sent', async () => {
    const r = await runExample('tlsrpt');
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(report).toHaveProperty('organization-name');
    expect(report).toHaveProperty('policies');
  });
});
