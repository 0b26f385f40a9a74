#!/usr/bin/env node
// CI check for docs/conformance.md: every code reference (`src/file.ts:functionName`) names a file that defines or
// mentions that function, and every test reference (`test/file.test.ts › test name`) names a test file that contains
// a test with that exact title. A requirement whose proof was renamed or deleted fails CI instead of rotting.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const doc = readFileSync(join(root, 'docs/conformance.md'), 'utf8');
const problems = [];
let codeRefs = 0;
let testRefs = 0;

for (const match of doc.matchAll(/`(src\/[\w./-]+\.ts):([\w$.]+)`/g)) {
  codeRefs++;
  const [, file, name] = match;
  const path = join(root, file);
  if (!existsSync(path)) problems.push(`missing file ${file}`);
  else if (!readFileSync(path, 'utf8').includes(name.split('.').pop())) problems.push(`${file} has no ${name}`);
}

for (const match of doc.matchAll(/`(test\/[\w./-]+\.test\.ts) › ([^`]+)`/g)) {
  testRefs++;
  const [, file, title] = match;
  const path = join(root, file);
  if (!existsSync(path)) {
    problems.push(`missing test file ${file}`);
    continue;
  }
  const text = readFileSync(path, 'utf8');
  // The title as written in an it()/test() call, with any quote style.
  const quoted = [`'${title}'`, `"${title}"`, `\`${title}\``, `'${title.replace(/'/g, "\\'")}'`];
  if (!quoted.some((q) => text.includes(q))) problems.push(`${file} has no test titled ${JSON.stringify(title)}`);
}

for (const problem of problems) console.error(`docs/conformance.md: ${problem}`);
console.log(`docs/conformance.md: ${codeRefs} code references, ${testRefs} test references, ${problems.length} broken`);
if (codeRefs === 0 || testRefs === 0) {
  console.error('docs/conformance.md: no references found');
  process.exit(1);
}
process.exit(problems.length === 0 ? 0 : 1);
