import { defineConfig } from 'tsup';

// One entry per public subpath export (see package.json "exports"). `splitting: true` puts every module shared by
// two entries into one chunk, for ESM and for CJS alike, so each class (MtaStsError, the hooks, the TLS context
// cache, …) exists once per format in `dist` and `instanceof` holds across subpaths. The CLI is part of the ESM
// build, so it shares those chunks instead of bundling copies. `scripts/check-dist.mjs` verifies all of this.
// `npm run build` empties dist first (the two builds run concurrently, so neither may clean).
const library = {
  index: 'src/index.ts',
  'testing/index': 'src/testing/index.ts',
  'tlsrpt/index': 'src/tlsrpt/index.ts',
  'nodemailer/index': 'src/integrations/nodemailer/index.ts',
  'hooks/index': 'src/integrations/hooks.ts',
  'haraka/index': 'src/integrations/haraka/index.ts',
  'redis/index': 'src/redis/index.ts',
};

const common = { target: 'node22', splitting: true, shims: true, sourcemap: false, clean: false } as const;

export default defineConfig([
  { ...common, entry: { ...library, 'cli/main': 'src/cli/main.ts' }, format: ['esm'], dts: { entry: library } },
  { ...common, entry: library, format: ['cjs'], dts: { entry: library } },
]);
