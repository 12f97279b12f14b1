import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Tests run against the packages' sources, so `@ckpt/x` resolves to
// packages/x/src; the build is checked separately by `turbo run build`.
const packages = ['core', 'mm', 'fs', 'ipc', 'ns', 'creds', 'arch-x86', 'arch-s390'];
const alias = Object.fromEntries(
  packages.map((p) => [
    `@ckpt/${p}`,
    fileURLToPath(new URL(`./packages/${p}/src/index.ts`, import.meta.url)),
  ]),
);

// Two projects: `unit` tests pure code and needs no privileges; `live` drives
// real processes and the real kernel as root, one file at a time.
export default defineConfig({
  resolve: { alias },
  test: {
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['packages/*/test/unit/**/*.test.ts', 'apps/*/test/unit/**/*.test.ts'],
          // Some unit tests spawn the CLI; live tests may load the machine.
          testTimeout: 30_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'live',
          include: [
            'packages/*/test/live/**/*.test.ts',
            'apps/*/test/live/**/*.test.ts',
            'test/live/**/*.test.ts',
          ],
          pool: 'forks',
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
