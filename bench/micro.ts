/** Tight loops over the pure functions (parsing, matching): microseconds each, none on the critical path. */
import { X509Certificate } from 'node:crypto';
import { parsePolicy } from '../src/policy/policy-file.js';
import { parseStsTxtRecord } from '../src/policy/txt-record.js';
import { mxMatchesPolicy } from '../src/mx/match.js';
import { certificateMatchesHost } from '../src/tls/host-identity.js';
import type { TestCa } from '../src/testing/index.js';

export interface MicroRow {
  name: string;
  opsPerS: number;
  perOpUs: number;
}

function loop(name: string, iterations: number, fn: (i: number) => unknown): MicroRow {
  for (let i = 0; i < Math.min(1000, iterations); i++) fn(i); // warm-up
  const started = process.hrtime.bigint();
  let sink = 0;
  for (let i = 0; i < iterations; i++) if (fn(i)) sink++;
  const ns = Number(process.hrtime.bigint() - started);
  if (sink < 0) console.log(sink);
  return { name, opsPerS: Math.round((iterations / ns) * 1e9), perOpUs: ns / iterations / 1000 };
}

const POLICY = 'version: STSv1\nmode: enforce\nmx: mx1.example.com\nmx: mx2.example.com\nmx: *.backup.example.net\nmax_age: 604800\n';
const PATTERNS = ['mx1.example.com', 'mx2.example.com', '*.backup.example.net'];

export function runMicro(ca: TestCa, scale: number): MicroRow[] {
  const { certPem } = ca.issue({ names: ['mx1.example.com', '*.backup.example.net'] });
  const x509 = new X509Certificate(certPem);
  return [
    loop('parseStsTxtRecord', 200_000 * scale, () => parseStsTxtRecord('v=STSv1; id=20240101T000000')),
    loop('parsePolicy (3 mx)', 100_000 * scale, () => parsePolicy(POLICY)),
    loop('mxMatchesPolicy (wildcard hit)', 2_000_000 * scale, () => mxMatchesPolicy('b7.backup.example.net', PATTERNS)),
    loop('mxMatchesPolicy (miss)', 2_000_000 * scale, () => mxMatchesPolicy('evil.attacker.example', PATTERNS)),
    loop('certificateMatchesHost (parsed cert)', 200_000 * scale, () => certificateMatchesHost(x509, 'b7.backup.example.net')),
  ];
}
