/** `npm run demo` (examples/demo.ts) runs to the end, shows each scenario and exits 0. */
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, runMtaStsFromSource } from './helpers.js';

describe('the demo', () => {
  it('delivers, refuses, reports, checks; exit 0', { timeout: 90_000 }, async () => {
    // runMtaStsFromSource runs a TS entry through tsx; here the entry is the demo instead of the CLI.
    const r = await runMtaStsFromSource([], { timeoutMs: 80_000, entry: `${REPO_ROOT}examples/demo.ts` });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = r.stdout;
    expect(out).toMatch(/1\. enforce domain[\s\S]*✓ delivered to mx1\.secure\.example .*mode enforce[\s\S]*certificate validated for the MX name/);
    expect(out).toMatch(/2\. [\s\S]*✗ refused \(EMTASTS[\s\S]*starttls-not-supported/);
    expect(out).toMatch(/3\. [\s\S]*✗ refused \(EMTASTS[\s\S]*certificate-host-mismatch/);
    expect(out).toMatch(/4\. [\s\S]*✓ delivered to mx\.trial\.example .*mode testing[\s\S]*✓ TLS report sent for trial\.example[\s\S]*"result-type": "certificate-expired"/);
    expect(out).toMatch(/5\. mta-sts check[\s\S]*secure\.example {2}enforce[\s\S]*badcert\.example {2}broken/);
    expect(out).toMatch(/Done in [\d.]+ s\./);
  });
});
