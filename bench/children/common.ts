/** What every benchmark child shares: its parameters (argv[2], JSON), measurement and reporting. */
import { readFileSync } from 'node:fs';

/** Where the parent's test world is and what to do. */
export interface ChildParams {
  dnsServer: string;
  httpsPort: number;
  smtpPort: number;
  caFile: string;
  [key: string]: unknown;
}

export function params<T extends ChildParams>(): T & { caPem: string } {
  const p = JSON.parse(process.argv[2] ?? '{}') as T;
  return { ...p, caPem: readFileSync(p.caFile, 'utf8') };
}

/** CPU (user + system) in ms since process start. */
export function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** Peak resident set size of this process so far, in MB. */
export function peakRssMb(): number {
  return process.resourceUsage().maxRSS / 1024;
}

/** Runs `task(i)` for i in [0, total) with at most `concurrency` at a time. */
export async function pool(total: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, total) }, async () => {
      while (next < total) await task(next++);
    }),
  );
}

/** Prints the result for the parent (the last stdout line is JSON). */
export function report(result: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

/** The bench domains: `d<i>.bench.test`, each with its own policy host `mta-sts.d<i>.bench.test`. */
export function benchDomain(i: number): string {
  return `d${i}.bench.test`;
}
