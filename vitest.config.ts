import swc from 'unplugin-swc';
import { defineConfig } from 'vitest/config';

// Nest injects by constructor type, so tests need emitted decorator metadata: SWC with legacy
// decorators, as MikroORM's own Nest example does (Vitest's default transformer emits none).
export default defineConfig({
  oxc: false,
  plugins: [
    swc.vite({
      tsconfigFile: false,
      jsc: {
        target: 'es2023',
        parser: { syntax: 'typescript', decorators: true },
        transform: { legacyDecorator: true, decoratorMetadata: true, useDefineForClassFields: false },
      },
    }),
  ],
  test: {
    globals: true,
    setupFiles: ['./test/support/setup.ts'],
    projects: [
      { extends: true, test: { name: 'unit', include: ['src/**/*.spec.ts'] } },
      {
        extends: true,
        test: {
          name: 'e2e',
          include: ['test/**/*.e2e-spec.ts'],
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
