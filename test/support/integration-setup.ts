/**
 * Global setup of the integration and soak projects: build dist/ (the tests run the deployable
 * bundle) and start one real memcached on a random loopback port for the run.
 */
import { execFileSync } from 'node:child_process';
import type { TestProject } from 'vitest/node';
import { findMemcachedBinary, type MemcachedProcess, startMemcached } from '../../local/memcached-server.ts';
import { memcachedMissingLine } from './memcached-missing.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    memcachedAddress: string;
  }
}

let memcached: MemcachedProcess | undefined;

export async function setup(project: TestProject): Promise<void> {
  if (!findMemcachedBinary()) {
    // Only the line: a stack trace into the test runner says nothing about what to do.
    const line = memcachedMissingLine([project.name]);
    const missing = new Error(line);
    missing.stack = `Error: ${line}`;
    throw missing;
  }
  execFileSync(process.execPath, ['scripts/build.mjs'], { stdio: 'pipe' });
  memcached = await startMemcached();
  project.provide('memcachedAddress', memcached.address);
}

export async function teardown(): Promise<void> {
  await memcached?.stop();
}
