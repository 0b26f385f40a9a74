import { defineConfig } from 'tsup';

// One entry per public subpath export (see package.json "exports").
export default defineConfig({
  entry: {
    index: 'src/index.ts',
    'testing/index': 'src/testing/index.ts',
    'tlsrpt/index': 'src/tlsrpt/index.ts',
  },
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
  splitting: false,
  shims: true,
});
