#!/usr/bin/env node
// CI check: every class is defined once per module format in dist (tsup splitting puts shared modules in chunks),
// so `instanceof` holds across subpaths. esbuild emits a class as `var Name = class …` or `class Name …`.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('../dist/', import.meta.url).pathname;
const files = [];
(function walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (/\.(c?js)$/.test(name)) files.push(path);
  }
})(root);

const definition = /(?:\bvar|\blet|\bconst)\s+([A-Za-z_$][\w$]*)\s*=\s*(?:\(\s*[\w$]+\s*=\s*)?class\b|^\s*(?:export\s+)?class\s+([A-Za-z_$][\w$]*)/gm;
let failures = 0;
for (const format of ['js', 'cjs']) {
  const seen = new Map();
  for (const file of files.filter((f) => f.endsWith(`.${format}`))) {
    for (const match of readFileSync(file, 'utf8').matchAll(definition)) {
      const name = match[1] ?? match[2];
      seen.set(name, [...(seen.get(name) ?? []), file.slice(root.length)]);
    }
  }
  const duplicated = [...seen].filter(([, where]) => where.length > 1);
  for (const [name, where] of duplicated) console.error(`dist (${format}): class ${name} is defined ${where.length} times: ${where.join(', ')}`);
  failures += duplicated.length;
  console.log(`dist (${format}): ${seen.size} classes, ${duplicated.length} defined more than once`);
}
process.exit(failures === 0 ? 0 : 1);
