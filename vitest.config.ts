/**
 * Four test projects, one command each (see package.json):
 *
 * - unit: test/unit; fakes and an injected clock; no memcached, no build of dist/.
 * - integration: test/integration; builds dist/ and starts one real memcached for the run.
 * - soak: test/soak; the long real-time runs (tens of seconds each) against the same setup.
 * - deploy: test/deploy; `osls package` offline and the template and zip it writes.
 *
 * Every project runs the log check: each line a test prints, and each line of the processes it
 * spawns, is scanned for secrets and tokens after the run (test/support/log-check.ts).
 */
import { defineConfig } from 'vitest/config';

const logCheck = 'test/support/log-check.ts';
const captureOutput = 'test/support/capture-output.ts';
const memcachedAndBundle = 'test/support/integration-setup.ts';

export default defineConfig({
  test: {
    pool: 'forks',
    // Integration files share one memcached and spawn processes: keep parallelism modest on 2 cores.
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          // Nothing here spawns processes or shares a server: worker threads start faster than forks.
          pool: 'threads',
          include: ['test/unit/**/*.test.ts'],
          globalSetup: [logCheck],
          setupFiles: [captureOutput],
          testTimeout: 10_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          globalSetup: [logCheck, memcachedAndBundle],
          setupFiles: [captureOutput],
          testTimeout: 30_000,
          hookTimeout: 30_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'soak',
          include: ['test/soak/**/*.test.ts'],
          globalSetup: [logCheck, memcachedAndBundle],
          setupFiles: [captureOutput],
          testTimeout: 90_000,
          hookTimeout: 30_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'deploy',
          include: ['test/deploy/**/*.test.ts'],
          globalSetup: [logCheck],
          setupFiles: [captureOutput],
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
