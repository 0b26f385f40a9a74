#!/usr/bin/env node
// CI check for the documentation: every relative link in README.md, SECURITY.md, CHANGELOG.md and docs/*.md points
// to a file that exists, and every #anchor to a heading of that file (GitHub's slug rule: lower case, punctuation
// dropped, spaces to hyphens, duplicates numbered). External links (http:, https:, mailto:) are not fetched.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const files = ['README.md', 'SECURITY.md', 'CHANGELOG.md', ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)].filter((f) => existsSync(join(root, f)));

/** Markdown without fenced code blocks and inline code (links there are examples, not links). */
function prose(text) {
  return text.replace(/^```[\s\S]*?^```/gm, '').replace(/`[^`\n]*`/g, '');
}

/** GitHub's heading anchors of a Markdown file. */
function anchors(text) {
  const seen = new Map();
  const out = new Set();
  for (const match of text.replace(/^```[\s\S]*?^```/gm, '').matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const slug = match[1]
      .toLowerCase()
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    out.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return out;
}

const problems = [];
let checked = 0;
for (const file of files) {
  const text = readFileSync(join(root, file), 'utf8');
  for (const match of prose(text).matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
    const target = match[1];
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue;
    checked++;
    const [path, anchor] = target.split('#');
    const resolved = path === '' ? join(root, file) : join(root, dirname(file), decodeURIComponent(path));
    if (!existsSync(resolved)) {
      problems.push(`${file}: ${target}: no such file ${relative(root, resolved)}`);
      continue;
    }
    if (anchor !== undefined && statSync(resolved).isFile() && resolved.endsWith('.md') && !anchors(readFileSync(resolved, 'utf8')).has(anchor)) {
      problems.push(`${file}: ${target}: no heading #${anchor} in ${relative(root, resolved)}`);
    }
  }
}

for (const problem of problems) console.error(problem);
console.log(`documentation links: ${files.length} files, ${checked} relative links, ${problems.length} broken`);
process.exit(problems.length > 0 ? 1 : 0);
