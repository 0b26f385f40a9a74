/** `examples/tlsrpt-failures.ts` (whose output the README shows) runs as a user would run it and reports every failure with its reason. */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));

it('examples/tlsrpt-failures: four reports with sending-mta-ip, reason codes, the invalid policy text and the fallback mark', async () => {
  const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, ['--import', 'tsx', 'examples/tlsrpt-failures.ts'], { cwd: root, timeout: 60_000 }, (error, out, err) => resolve({ code: error ? 1 : 0, stdout: out, stderr: err })),
  );
  expect(code, stderr).toBe(0);
  const reports = stdout.trim().split('\n').map((line) => JSON.parse(line) as Array<{ policy: Record<string, unknown>; 'failure-details': Array<Record<string, unknown>> }>);
  expect(reports.map((p) => p[0]!['failure-details'][0]!['failure-reason-code'])).toEqual(['policy syntax error', 'CERT_HAS_EXPIRED', 'http status 404 +fallback-to-cached-policy', 'mx not in policy']);
  expect(reports[0]![0]!.policy['policy-string']).toContain('max_age: one week');
  expect(reports[1]![0]!['failure-details'][0]!['sending-mta-ip']).toMatch(/^127\./);
});
