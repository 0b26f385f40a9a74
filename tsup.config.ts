import { defineConfig } from 'tsup';

// One entry per public subpath export (see package.json "exports").
export default defineConfig({
  entry: {
    index: 'src/index.ts',
    'testing/index': 'src/testing/index.ts',
    'tlsrpt/index': 'src/tlsrpt/index.ts',
    'nodemailer/index': 'src/integrations/nodemailer/index.ts',
    'hooks/index': 'src/integrations/hooks.ts',
    'haraka/index': 'src/integrations/haraka/index.ts',
    'redis/index': 'src/redis/index.ts',
    'cli/main': 'src/cli/main.ts',
  },
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
  splitting: false,
  shims: true,
});
