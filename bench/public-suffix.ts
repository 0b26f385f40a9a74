/**
 * What the public-suffix checks of `mta-sts check` cost (src/mx/public-suffix.ts, on `tldts`): loading the module
 * (the list is compiled into it) and each check, side by side with the MX matcher they accompany.
 * Run: `node --import tsx bench/public-suffix.ts`. Figures: bench/README.md.
 */
const loadStarted = process.hrtime.bigint();
const { unknownTopLevelDomain, wildcardPublicSuffix, isIpLiteral } = await import('../src/mx/public-suffix.js');
const loadMs = Number(process.hrtime.bigint() - loadStarted) / 1e6;
const { mxMatchesPolicy } = await import('../src/mx/match.js');

function perOpUs(iterations: number, fn: (i: number) => unknown): number {
  for (let i = 0; i < 1000; i++) fn(i);
  const started = process.hrtime.bigint();
  let sink = 0;
  for (let i = 0; i < iterations; i++) if (fn(i)) sink++;
  const ns = Number(process.hrtime.bigint() - started);
  if (sink < 0) console.log(sink);
  return ns / iterations / 1000;
}

const hosts = ['mx1.example.com', 'mx.example.co.uk', 'mx2.example.con', 'aspmx.l.google.com', 'mx.example.test'];
const patterns = ['*.example.com', '*.co.uk', 'mx.example.com', '*.github.io', '*.mail.protection.outlook.com'];
const n = 200_000;
const rows: Array<[string, number]> = [
  ['mxMatchesPolicy (wildcard hit), for comparison', perOpUs(n, (i) => mxMatchesPolicy(hosts[i % 5]!, ['*.example.com', 'mx.example.co.uk']))],
  ['unknownTopLevelDomain (host)', perOpUs(n, (i) => unknownTopLevelDomain(hosts[i % 5]!))],
  ['wildcardPublicSuffix (pattern)', perOpUs(n, (i) => wildcardPublicSuffix(patterns[i % 5]!))],
  ['isIpLiteral', perOpUs(n, (i) => isIpLiteral(i % 2 ? '192.0.2.1' : hosts[i % 5]!))],
];
const base = rows[0]![1];
console.log(`| what | per op | vs. MX match |\n| --- | ---: | ---: |`);
for (const [name, us] of rows) console.log(`| ${name} | ${us.toFixed(2)} µs | ${(us / base).toFixed(1)}× |`);
console.log(`\nimport of src/mx/public-suffix.js (tldts and its list, first load): ${loadMs.toFixed(1)} ms`);
